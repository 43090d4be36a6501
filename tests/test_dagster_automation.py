"""Schedules, the watchlist sensor and the retraining sensor against real instances and a real database."""

from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.dagster_instance import instance_for_test
from tt_assets.automation import (
    RetrainPolicy,
    daily_bars_schedule,
    intraday_bars_schedule,
    retraining_sensor,
    watchlist_sensor,
)
from tt_assets.definitions import defs
from tt_assets.models import rl_config
from tt_assets.partitions import bar_partitions
from tt_assets.resources import DatabaseResource, WatchlistResource
from tt_pipeline.retraining import config_key
from tt_resources.db.schema import evals, models
from tt_rl.train import code_version

SYMBOLS = [f"S{i:02d}" for i in range(30)]


def _keys(instance, run_request: dg.RunRequest) -> list[str]:
    key_range = dg.PartitionKeyRange(
        run_request.tags["dagster/asset_partition_range_start"],
        run_request.tags["dagster/asset_partition_range_end"],
    )
    return [
        str(k)
        for k in bar_partitions.get_partition_keys_in_range(key_range, dynamic_partitions_store=instance)
    ]


@pytest.mark.parametrize(
    ("schedule", "timeframes"), [(daily_bars_schedule, ["1d"]), (intraday_bars_schedule, ["1h", "15m"])]
)
def test_schedules_request_every_registered_symbol_in_chunks(schedule, timeframes):
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", SYMBOLS)
        requests = schedule(dg.build_schedule_context(instance=instance))
        assert len(requests) == 2 * len(timeframes)  # 30 symbols in chunks of 25, per timeframe
        keys = [key for request in requests for key in _keys(instance, request)]
        assert sorted(keys) == sorted(f"{s}|{tf}" for s in SYMBOLS for tf in timeframes)
        assert all(len(_keys(instance, r)) <= 25 for r in requests)


def test_schedule_skips_without_symbols():
    with instance_for_test() as instance:
        result = daily_bars_schedule(dg.build_schedule_context(instance=instance))
        assert isinstance(result, dg.SkipReason)


def test_watchlist_sensor_adds_new_and_drops_removed_symbols(tmp_path):
    csv = tmp_path / "watchlist.csv"
    csv.write_text("symbol,exchange,currency,sector\nAAPL,SMART,USD,Tech\nMSFT,SMART,USD,Tech\n")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", ["MSFT", "GONE"])
        context = dg.build_sensor_context(
            instance=instance, resources={"watchlist": WatchlistResource(path=str(csv))}
        )
        result = watchlist_sensor(context)
        [add, delete] = result.dynamic_partitions_requests
        assert add.partition_keys == ["AAPL"] and delete.partition_keys == ["GONE"]
        instance.add_dynamic_partitions("symbol", ["AAPL"])
        instance.delete_dynamic_partition("symbol", "GONE")
        assert isinstance(watchlist_sensor(context), dg.SkipReason)


def _now() -> datetime:
    return datetime.now(UTC)


def _dataset_built(instance, version: str) -> None:
    """training_dataset 1d materialised with `version` (what the sensor reads)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization("training_dataset", partition="1d", metadata={"dataset_version": version})
    )


def _model(engine, model_id: str, version: str, sharpe: float, config: dict) -> None:
    """A tt_model row on dataset `version` trained with `config` by today's code, and its stitched Sharpe."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(models),
            [
                {
                    "model_id": model_id,
                    "timeframe": "1d",
                    "path": "/m",
                    "dataset_version": version,
                    "code_version": code_version(),
                    "config": config,
                    "created_at": _now(),
                }
            ],
        )
        conn.execute(
            sa.insert(evals),
            [
                {
                    "model_id": model_id,
                    "timeframe": "1d",
                    "policy": "ppo",
                    "fold": -1,
                    "seed": -1,
                    "test_start": _now(),
                    "test_end": _now(),
                    "sharpe": sharpe,
                    "created_at": _now(),
                }
            ],
        )


def _tick(instance, engine, min_sharpe: float = 0.0):
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "database": DatabaseResource(url=engine.url.render_as_string(hide_password=False)),
            "retrain_policy": RetrainPolicy(min_sharpe=min_sharpe),
        },
    ) as context:
        return retraining_sensor(context)


RETRAIN_CONFIG = rl_config({}).to_dict()  # what retrain_job trains with by default
OTHER_CONFIG = {**RETRAIN_CONFIG, "ppo": {**RETRAIN_CONFIG["ppo"], "seed": 7}}


def test_retraining_sensor_fires_once_per_new_dataset(sqlite_engine):
    with instance_for_test() as instance:
        assert isinstance(_tick(instance, sqlite_engine), dg.SkipReason)  # nothing built yet

        _dataset_built(instance, "v1")
        [request] = _tick(instance, sqlite_engine)
        assert (request.partition_key, request.run_key) == ("1d", "1d:dataset:v1")
        assert request.tags["tt/retrain_reason"] == "new dataset"
        # the run shows the whole config it trains with, and that config is valid for retrain_job
        assert request.run_config == {"ops": {"ppo_model": {"config": RETRAIN_CONFIG}}}
        dg.validate_run_config(defs.resolve_job_def("retrain_job"), request.run_config)

        _model(sqlite_engine, "m1", "v1", sharpe=0.8, config=RETRAIN_CONFIG)
        assert isinstance(_tick(instance, sqlite_engine), dg.SkipReason)

        _dataset_built(instance, "v2")
        [request] = _tick(instance, sqlite_engine)
        assert request.run_key == "1d:dataset:v2"


def test_sharpe_rule_fires_once_per_dataset_code_and_config(sqlite_engine):
    with instance_for_test() as instance:
        _dataset_built(instance, "v1")
        # the model on v1 came from another config and scores below the threshold: one retrain
        _model(sqlite_engine, "m1", "v1", sharpe=-0.5, config=OTHER_CONFIG)
        [request] = _tick(instance, sqlite_engine)
        assert request.run_key == f"1d:sharpe:v1:{code_version()}:{config_key(RETRAIN_CONFIG)}"
        assert request.tags["tt/retrain_reason"] == "Sharpe -0.50 < 0"

        # the retrained model (same data, code, config) is as bad: retraining again would reproduce it
        _model(sqlite_engine, "m2", "v1", sharpe=-0.5, config=RETRAIN_CONFIG)
        for _ in range(3):
            assert isinstance(_tick(instance, sqlite_engine), dg.SkipReason)
        assert isinstance(_tick(instance, sqlite_engine, min_sharpe=1.0), dg.SkipReason)


def test_sharpe_rule_ignores_the_progress_bar_setting():
    shown = {**RETRAIN_CONFIG, "ppo": {**RETRAIN_CONFIG["ppo"], "progress_bar": True}}
    assert config_key(shown) == config_key(RETRAIN_CONFIG) != config_key(OTHER_CONFIG)


def test_sharpe_rule_ignores_the_logging_settings():
    logged = {**RETRAIN_CONFIG, "logging": {"log_training": True, "training_episodes": 2}}
    assert config_key(logged) == config_key(RETRAIN_CONFIG)
