"""Market-data assets raw_bars and features, and raw_bars' blocking quality checks, computed by one step.

The step runs tt_pipeline.market.refresh_partitions over its partitions (one, or a key range of a backfill
or a schedule tick) and reports each partition on its own: raw_bars is materialised for every partition
whose fetch succeeded, each check is evaluated per partition, and features are materialised for every
partition that passes the checks, even when another partition of the range failed. The step then fails
naming each failed partition and its reason. Either asset can be run alone (the step is subsettable):
features alone assesses and featurises what is stored, which is what the automation condition requests.
"""

from collections import Counter

import dagster as dg
import pydantic

from tt_assets.conventions import OWNERS, bars_freshness
from tt_assets.partitions import backfill_policy, bar_key, bar_partitions, split_key
from tt_assets.reporting import percent, typed
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_pipeline.quality import RAW_BARS_RULES

RAW_BARS = dg.AssetKey("raw_bars")
FEATURES = dg.AssetKey("features")
IBKR_POOL = "ibkr"  # concurrency pool shared by everything that spends IBKR's pacing budget
MARKET_GROUP = "market_data"


class BarsConfig(dg.Config):
    """Which bars a fetch asks for: `start` is the first bar for partitions with no data yet (ISO-8601;
    None = the timeframe's default history), `end` the instant bars must have closed by (None = now);
    `accept_holes` the spans to accept as empty first."""

    start: str | None = None
    end: str | None = None
    # spans accepted as empty before fetching, `SYMBOL:TF:FIRST..LAST[:NOTE]` (as `tt ingest --accept-hole`)
    accept_holes: list[str] = pydantic.Field(default_factory=list)


@dg.multi_asset(
    name="market_data",
    specs=[
        dg.AssetSpec(
            RAW_BARS,
            skippable=True,
            group_name=MARKET_GROUP,
            kinds={"sql"},
            code_version="2",
            owners=OWNERS,
            freshness_policy=bars_freshness,
            description="OHLCV bars per symbol and timeframe in tt_prices; fetches only the missing tail.",
        ),
        dg.AssetSpec(
            FEATURES,
            deps=[RAW_BARS],
            skippable=True,
            group_name=MARKET_GROUP,
            kinds={"sql", "pandas"},
            code_version="2",
            owners=OWNERS,
            freshness_policy=bars_freshness,
            automation_condition=dg.AutomationCondition.eager()
            & dg.AutomationCondition.all_deps_blocking_checks_passed(),
            description="Per-bar features in tt_features up to the last bar, for partitions whose bars pass "
            "the checks; computes the new tail over the whole stored series (one pass gives the same numbers).",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            name, asset=RAW_BARS, description=description, blocking=True, partitions_def=bar_partitions
        )
        for name, (description, _) in RAW_BARS_RULES.items()
    ],
    partitions_def=bar_partitions,
    backfill_policy=backfill_policy,
    pool=IBKR_POOL,
    can_subset=True,
)
def market_data(
    context: dg.AssetExecutionContext,
    config: BarsConfig,
    database: DatabaseResource,
    market_data: MarketDataResource,
    watchlist: WatchlistResource,
):
    from tt_pipeline.market import accept_holes, refresh_partitions
    from tt_resources.sources import make_source

    engine = database.get_engine()
    for line in accept_holes(engine, config.accept_holes):
        context.log.info(line)
    fetch = RAW_BARS in context.selected_asset_keys
    settings = market_data.source_settings()
    source = make_source(settings, engine) if fetch else None
    by_timeframe: dict[str, list[str]] = {}
    for key in context.partition_keys:
        symbol, timeframe = split_key(key)
        by_timeframe.setdefault(timeframe, []).append(symbol)
    failed: dict[str, dict] = {}  # partition key -> its PartitionReport (plain values)
    try:
        for timeframe, symbols in by_timeframe.items():
            outcomes = refresh_partitions(
                engine,
                source,
                watchlist.listings(symbols),
                timeframe,
                features=FEATURES in context.selected_asset_keys,
                start=config.start,
                end=config.end,
                hole_attempts=settings.hole_attempts,
            )
            yield from _timeframe_events(context.instance, outcomes, source.name if source else None)
            for outcome in outcomes:
                if outcome.reason:
                    failed[bar_key(outcome.symbol, outcome.timeframe)] = outcome.report().to_metadata()
            # one line per timeframe (an event per partition costs a storage write; each partition's report
            # is in its materialisation's metadata, each failure in the step's Failure)
            statuses = Counter(outcome.report().status for outcome in outcomes)
            context.log.info(
                f"{timeframe}: {len(outcomes)} partition(s): "
                + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
            )
    finally:
        if source is not None:
            source.close()
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(context.partition_keys)} partition(s) failed: "
            + "; ".join(f"{key}: {report['reason']}" for key, report in failed.items()),
            metadata={"failed_partitions": failed},
        )


def _timeframe_events(instance: dg.DagsterInstance, outcomes: list, source_name: str | None):
    """The events of one timeframe's partitions (tt_pipeline.market.PartitionOutcome): raw_bars
    materialisations (of the partitions that were fetched), then their check evaluations, then the features
    materialisations (of the partitions whose features were brought up to date). The evaluations target the
    materialisations just stored (read back in one query), so the UI shows them as current."""
    fetched = [o for o in outcomes if o.fetched is not None and not o.fetch_failed]
    for outcome in fetched:
        report = outcome.report()
        yield dg.AssetMaterialization(
            RAW_BARS,
            partition=bar_key(outcome.symbol, outcome.timeframe),
            metadata=typed(
                {
                    **report.to_metadata(),
                    "fresh": report.status == "fresh",
                    "bars_fetched": outcome.fetched.bars_fetched,
                    "bars_stored": outcome.bars_stored,
                    "first_ts": outcome.first_ts,
                    "last_ts": outcome.last_ts,
                    "coverage_pct": percent(outcome.quality.coverage),
                    "source": source_name,
                    "content_version": outcome.content_version,
                }
            ),
            tags={"dagster/data_version": outcome.content_version},
        )
    targets = _latest_materializations(instance, [bar_key(o.symbol, o.timeframe) for o in fetched])
    for outcome in fetched:
        key = bar_key(outcome.symbol, outcome.timeframe)
        failed_rules = set(outcome.quality.failed_rules())
        for rule in RAW_BARS_RULES:
            yield dg.AssetCheckEvaluation(
                asset_key=RAW_BARS,
                check_name=rule,
                passed=rule not in failed_rules,
                partition=key,
                blocking=True,
                target_materialization_data=targets[key],
                metadata={"n_bars": outcome.bars_stored, **_quality_metadata(outcome.quality)},
                description=outcome.reason if rule in failed_rules else None,
            )
    for outcome in outcomes:
        if outcome.features_written is not None:
            yield dg.AssetMaterialization(
                FEATURES,
                partition=bar_key(outcome.symbol, outcome.timeframe),
                metadata=typed({"rows_written": outcome.features_written, "last_ts": outcome.last_ts}),
            )


def _latest_materializations(instance: dg.DagsterInstance, keys: list[str]) -> dict:
    """partition key -> run id, storage id and time of raw_bars' latest materialisation of that partition
    (the events just yielded: a step's events are stored as they are yielded). One query for all `keys`;
    a key whose latest record another run's newer events pushed out of it is read on its own."""
    # imported here: the fence imports SQLAlchemy, which stays out of loading the definitions
    from tt_assets.dagster_fence import AssetCheckEvaluationTargetMaterializationData

    def latest(wanted: list[str]) -> dict:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=RAW_BARS, asset_partitions=wanted), limit=len(wanted)
        ).records
        found: dict = {}
        for record in records:  # newest first
            found.setdefault(record.partition_key, record)
        return found

    records = latest(keys) if keys else {}
    for key in keys:
        if key not in records:
            records.update(latest([key]))
    return {
        key: AssetCheckEvaluationTargetMaterializationData(
            run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
        )
        for key, record in records.items()
    }


def _quality_metadata(quality) -> dict[str, float | int | str]:
    """BarQuality's counts (int), its coverage in percent (`coverage_pct`) and its text fields when set
    (`first_split_jump`; an empty one is left out)."""
    from dataclasses import asdict

    values = asdict(quality)
    coverage = values.pop("coverage")
    counts = {name: int(v) for name, v in values.items() if not isinstance(v, str)}
    texts = {name: v for name, v in values.items() if isinstance(v, str) and v}
    return {**counts, **texts, "coverage_pct": percent(coverage)}
