"""raw_bars + checks + features materialised through Dagster with real resources on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.dagster_instance import instance_for_test
from tt_assets.definitions import defs
from tt_assets.partitions import range_tags, symbol_ranges
from tt_assets.resources import DatabaseResource, MarketDataResource, WatchlistResource
from tt_resources.db.schema import prices

AS_OF = "2026-11-20T22:00:00+00:00"  # a Friday evening: the 1d bar of that day has closed
START = "2026-10-31T22:00:00+00:00"  # 20 days of history for the first fetch
RUN_CONFIG = {"ops": {"market_data": {"config": {"start": START, "end": AS_OF}}}}
SYMBOLS = ["AAPL", "MSFT", "NVDA"]


def _run(instance, engine, run_config=RUN_CONFIG, **kwargs) -> dg.ExecuteInProcessResult:
    resources = {
        "database": DatabaseResource(url=engine.url.render_as_string(hide_password=False)),
        "market_data": MarketDataResource(source="synthetic"),
        "watchlist": WatchlistResource(),
    }
    job = defs.resolve_job_def("market_data_job")
    return job.execute_in_process(
        instance=instance, run_config=run_config, resources=resources, raise_on_error=False, **kwargs
    )


def _materializations(result, asset: str) -> dict[str, dg.AssetMaterialization]:
    events = (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    return {m.partition: m for m in events if m.asset_key == dg.AssetKey(asset)}


def _value(materialization, name):
    return materialization.metadata[name].value


def test_bars_and_features_materialise_then_stay_fresh(engine):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        [key_range] = symbol_ranges(SYMBOLS, "1d")
        first = _run(instance, engine, tags=range_tags(key_range))
        assert first.success
        bars = _materializations(first, "raw_bars")
        assert sorted(bars) == ["AAPL|1d", "MSFT|1d", "NVDA|1d"]
        for m in bars.values():
            assert _value(m, "requests") >= 1 and _value(m, "bars_written") == _value(m, "bars_stored") > 10
            assert _value(m, "fresh") is False and _value(m, "coverage_pct") == 100.0
            assert isinstance(m.metadata["last_ts"], dg.TimestampMetadataValue)
            assert pd.Timestamp(_value(m, "last_ts"), unit="s", tz="UTC").date().isoformat() == "2026-11-20"
            assert _value(m, "first_ts") < _value(m, "last_ts")
            # counts are ints, an absent value is left out (the UI would print `null`)
            assert all(isinstance(_value(m, n), int) for n in ("requests", "bars_written", "bars_stored"))
            assert "reason" not in m.metadata and _value(m, "source") == "synthetic"
        assert sorted(_materializations(first, "features")) == sorted(bars)
        checks = first.get_asset_check_evaluations()
        assert sorted((c.partition, c.check_name) for c in checks) == sorted(
            (key, rule)
            for key in bars
            for rule in ("coverage", "no_duplicates", "monotonic_timestamps", "ohlc_sanity", "no_split_jumps")
        )
        assert all(c.passed for c in checks)
        for check in checks:
            assert check.metadata["coverage_pct"].value == 100.0
            assert isinstance(check.metadata["n_bars"].value, int)

        single = _run(instance, engine, partition_key="AAPL|1d")
        [again] = _materializations(single, "raw_bars").values()
        assert _value(again, "fresh") is True and _value(again, "requests") == 0
        assert _value(again, "bars_written") == 0
        assert _value(again, "content_version") == _value(bars["AAPL|1d"], "content_version")
        assert _value(_materializations(single, "features")["AAPL|1d"], "rows_written") == 0
        # the data version comes from the stored content, so features are not marked unsynced
        assert again.tags["dagster/data_version"] == _value(again, "content_version")

        with engine.connect() as conn:
            n_features = conn.execute(sa.text("SELECT count(*) FROM tt_features")).scalar()
        assert n_features == sum(_value(m, "bars_stored") for m in bars.values())


def test_bad_bars_fail_blocking_checks_and_block_features(engine):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", ["MSFT"])
        assert _run(instance, engine, partition_key="MSFT|1d").success
        with engine.begin() as conn:
            last = conn.execute(sa.select(sa.func.max(prices.c.ts)).where(prices.c.symbol == "MSFT")).scalar()
            first = conn.execute(
                sa.select(sa.func.min(prices.c.ts)).where(prices.c.symbol == "MSFT")
            ).scalar()
            # corrupt one bar (high below low) and add a second bar inside the first bar's session
            conn.execute(
                sa.update(prices)
                .where(prices.c.symbol == "MSFT", prices.c.ts == last)
                .values(high=prices.c.low * 0.5)
            )
            conn.execute(
                sa.insert(prices),
                [
                    {
                        "symbol": "MSFT",
                        "timeframe": "1d",
                        "ts": pd.Timestamp(first).tz_convert("UTC") + pd.Timedelta(hours=1),
                        "open": 10.0,
                        "high": 11.0,
                        "low": 9.0,
                        "close": 10.0,
                        "volume": 100.0,
                        "source": "test",
                        "ingested_at": datetime.now(UTC),
                    }
                ],
            )
        result = _run(instance, engine, partition_key="MSFT|1d")
        assert not result.success
        outcome = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert outcome == {
            "coverage": True,
            "no_duplicates": False,
            "monotonic_timestamps": False,
            "ohlc_sanity": False,
            "no_split_jumps": True,
        }
        assert "MSFT|1d" in _materializations(result, "raw_bars")
        assert _materializations(result, "features") == {}
        [failure] = result.get_step_failure_events()
        description = failure.step_failure_data.user_failure_data.description
        assert description.startswith("1 of 1 partition(s) failed: MSFT|1d: no_duplicates: 1 bar(s) share")


@pytest.mark.slow  # two Dagster runs (15-20 s)
def test_run_config_accepts_a_hole_and_the_partition_passes(sqlite_engine):
    """The Dagster path of `tt ingest --accept-hole`: `accept_holes` in the step's run config."""
    from tt_pipeline.market import assess_partition
    from tt_resources.db.prices import read_bars

    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", ["MSFT"])
        assert _run(instance, sqlite_engine, partition_key="MSFT|1d").success
        gap = (pd.Timestamp("2026-11-09", tz="UTC"), pd.Timestamp("2026-11-12", tz="UTC"))  # Mon .. Wed
        with sqlite_engine.begin() as conn:  # three sessions the source never had (a suspension)
            conn.execute(
                sa.delete(prices).where(
                    prices.c.symbol == "MSFT",
                    prices.c.ts >= gap[0].to_pydatetime(),
                    prices.c.ts < gap[1].to_pydatetime(),
                )
            )
        bars = read_bars(sqlite_engine, ["MSFT"], "1d")
        assert assess_partition(sqlite_engine, "MSFT", "1d", bars, pd.Timestamp(AS_OF)).failed_rules() == [
            "coverage"
        ]
        config = {
            **RUN_CONFIG["ops"]["market_data"]["config"],
            "accept_holes": ["MSFT:1d:2026-11-09..11-11:suspended"],
        }
        passed = _run(
            instance,
            sqlite_engine,
            partition_key="MSFT|1d",
            run_config={"ops": {"market_data": {"config": config}}},
        )
        assert passed.success
        assert {c.check_name: c.passed for c in passed.get_asset_check_evaluations()}["coverage"] is True
