"""Blocking asset checks on raw_bars (per partition) and the training_dataset check spec.

The rules themselves live in tt_assets.quality, shared with training_dataset's symbol selection.
"""

from dataclasses import asdict

import dagster as dg

from tt_assets.partitions import bar_partitions, split_key
from tt_assets.quality import MIN_SYMBOLS, RAW_BARS_RULES, BarQuality, assess_bars
from tt_resources.resources import DatabaseResource


def partition_quality(database: DatabaseResource, key: str) -> BarQuality:
    """BarQuality of the stored bars of one `SYMBOL|tf` partition."""
    from tt_resources.db.prices import read_bars

    symbol, timeframe = split_key(key)
    return assess_bars(read_bars(database.get_engine(), [symbol], timeframe), timeframe)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name, asset="raw_bars", description=description, blocking=True, partitions_def=bar_partitions
        )
        for name, (description, _) in RAW_BARS_RULES.items()
    ],
    name="raw_bars_quality",
)
def raw_bars_quality(context: dg.AssetCheckExecutionContext, database: DatabaseResource):
    """Assess every partition of the run (one, or a backfill range); each rule fails if any partition fails."""
    keys = list(context.partition_keys)
    qualities = {key: partition_quality(database, key) for key in keys}
    for rule, (_, passes) in RAW_BARS_RULES.items():
        failed = sorted(key for key, quality in qualities.items() if not passes(quality))
        metadata: dict[str, object] = {"partitions": len(keys), "failed_partitions": failed}
        if len(keys) == 1:
            metadata.update(asdict(qualities[keys[0]]))
        else:
            metadata["min_coverage"] = min(q.coverage for q in qualities.values())
        yield dg.AssetCheckResult(
            asset_key="raw_bars",
            check_name=rule,
            passed=not failed,
            metadata=metadata,
            description=None if not failed else f"{rule} failed for {', '.join(failed[:10])}",
        )


def panel_check(panel) -> dg.AssetCheckResult:
    """training_dataset's check: no NaN prices or features and at least MIN_SYMBOLS symbols."""
    import numpy as np

    nan_prices = int(np.isnan(panel.prices).sum())
    nan_features = int(np.isnan(panel.features).sum())
    n_symbols = len(panel.symbols)
    return dg.AssetCheckResult(
        check_name=PANEL_CHECK,
        passed=nan_prices == 0 and nan_features == 0 and n_symbols >= MIN_SYMBOLS,
        metadata={"symbols": n_symbols, "nan_prices": nan_prices, "nan_features": nan_features},
    )


PANEL_CHECK = "panel_sane"
panel_check_spec = dg.AssetCheckSpec(
    PANEL_CHECK,
    asset="training_dataset",
    blocking=True,
    description=f"no NaN prices/features and at least {MIN_SYMBOLS} symbols",
)
