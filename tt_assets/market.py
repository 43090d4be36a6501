"""Market-data assets: raw_bars (incremental fetch + upsert) and features (incremental tail)."""

import dagster as dg

from tt_assets.partitions import backfill_policy, bar_partitions, split_key
from tt_assets.quality import assess_bars, combined_version, content_version, iso
from tt_resources.resources import DatabaseResource, MarketDataResource


class BarsConfig(dg.Config):
    """raw_bars settings: how far back a first fetch reaches (days; None = the timeframe's default history)."""

    history_days: int | None = None
    as_of: str | None = None  # ISO-8601 instant treated as "now" (reproducible runs); None: the clock


IBKR_POOL = "ibkr"  # concurrency pool shared by everything that spends IBKR's pacing budget
MARKET_GROUP = "market_data"


@dg.asset(
    partitions_def=bar_partitions,
    backfill_policy=backfill_policy,
    pool=IBKR_POOL,
    group_name=MARKET_GROUP,
    kinds={"sql"},
    code_version="1",
    description="OHLCV bars per symbol and timeframe in tt_prices; fetches only the tail after the stored bars.",
)
def raw_bars(
    context: dg.AssetExecutionContext,
    config: BarsConfig,
    database: DatabaseResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    from datetime import UTC, datetime, timedelta

    from tt_resources.db.prices import read_bars
    from tt_resources.ingest import ingest_partition

    engine = database.get_engine()
    source = market_data.make_source()
    now = datetime.fromisoformat(config.as_of).astimezone(UTC) if config.as_of else datetime.now(UTC)
    start = None if config.history_days is None else now - timedelta(days=config.history_days)
    versions, failures = {}, []
    try:
        for key in context.partition_keys:
            symbol, timeframe = split_key(key)
            result = ingest_partition(engine, source, symbol, timeframe, start=start, now=now)
            stored = read_bars(engine, [symbol], timeframe)
            quality = assess_bars(stored, timeframe, now)
            versions[key] = content_version(stored)
            if result.status == "failed":
                failures.append(f"{key}: {result.error}")
            context.add_asset_metadata(
                {
                    "status": result.status,
                    "fresh": result.status == "fresh",
                    "requests": result.requests,
                    "bars_fetched": result.bars_fetched,
                    "bars_written": result.bars_written,
                    "pacing_waits": result.pacing_waits,
                    "bars_stored": len(stored),
                    "first_ts": iso(stored["ts"].min()) if len(stored) else None,
                    "last_ts": iso(stored["ts"].max()) if len(stored) else None,
                    "coverage": round(quality.coverage, 4),
                    "source": source.name,
                    "content_version": versions[key],
                },
                partition_key=key,
            )
            context.log.info(
                f"{key}: {result.status}, {result.requests} request(s), {result.bars_written} bar(s) written"
            )
    finally:
        source.close()
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} partition(s) failed to ingest", metadata={"errors": failures}
        )
    return dg.MaterializeResult(data_version=dg.DataVersion(combined_version(versions.values())))


@dg.asset(
    partitions_def=bar_partitions,
    backfill_policy=backfill_policy,
    deps=[raw_bars],
    group_name=MARKET_GROUP,
    kinds={"sql", "pandas"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description="Per-bar features in tt_features; recomputes only the new tail plus LOOKBACK_BARS of history.",
)
def features(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    from tt_assets.lineage import last_feature_ts
    from tt_resources.db.features import upsert_features
    from tt_resources.db.prices import read_bars
    from tt_rl.features import LOOKBACK_BARS, compute_features

    engine = database.get_engine()
    for key in context.partition_keys:
        symbol, timeframe = split_key(key)
        bars = read_bars(engine, [symbol], timeframe)
        done = last_feature_ts(engine, symbol, timeframe)
        first_new = 0 if done is None else int(bars["ts"].searchsorted(done, side="right"))
        n_new = len(bars) - first_new
        tail = bars.iloc[max(0, first_new - LOOKBACK_BARS) :] if n_new else bars.iloc[:0]
        if n_new:
            upsert_features(
                engine, compute_features(tail).tail(n_new).assign(symbol=symbol, timeframe=timeframe)
            )
        context.add_asset_metadata(
            {
                "rows_written": n_new,
                "bars_used": len(tail),
                "last_ts": iso(bars["ts"].max()) if len(bars) else None,
            },
            partition_key=key,
        )
    return dg.MaterializeResult()
