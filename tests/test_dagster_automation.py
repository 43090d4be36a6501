"""Schedules, the watchlist sensor and the retraining sensor against real instances and a real database."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.dagster_instance import instance_for_test
from tests.serving import stop
from tt_assets.automation import (
    RetrainPolicy,
    daily_bars_schedule,
    intraday_bars_schedule,
    retraining_sensor,
    watchlist_sensor,
)
from tt_assets.definitions import defs
from tt_assets.models import rl_config
from tt_assets.partitions import bar_partitions, register_training_timeframe
from tt_assets.resources import DatabaseResource, WatchlistResource
from tt_pipeline.retraining import config_key
from tt_resources.config import PROJECT_ROOT
from tt_resources.db.schema import evals, models
from tt_rl.train import code_version

WATCHLIST_CSV = str(PROJECT_ROOT / "data" / "tensorwatchlist.csv")  # the real watchlist: 150 symbols
TICK = datetime(2026, 12, 7, 21, 15, tzinfo=UTC)  # a Monday, 16:15 New York


def _watchlist(count: int) -> list[str]:
    """The first `count` symbols of the real watchlist."""
    symbols = WatchlistResource(path=WATCHLIST_CSV).symbols()[:count]
    assert len(symbols) == count
    return symbols


def _keys(instance, run_request: dg.RunRequest) -> list[str]:
    key_range = dg.PartitionKeyRange(
        run_request.tags["dagster/asset_partition_range_start"],
        run_request.tags["dagster/asset_partition_range_end"],
    )
    return [
        str(k)
        for k in bar_partitions.get_partition_keys_in_range(key_range, dynamic_partitions_store=instance)
    ]


def _assert_bar_runs(instance, requests, symbols: list[str], timeframes, run_key_prefix: str = "") -> None:
    """`requests` are valid market_data_job runs, at most 25 partitions each, covering each of `symbols` x
    `timeframes` once, each keyed by its range (so the keys are distinct)."""
    assert len(requests) == -(-len(symbols) // 25) * len(timeframes)
    job = defs.resolve_job_def("market_data_job")
    for request in requests:
        dg.validate_run_config(job, request.run_config)
        start, end = (request.tags[f"dagster/asset_partition_range_{side}"] for side in ("start", "end"))
        assert request.run_key == f"{run_key_prefix}{start}..{end}"
        assert request.tags["tt/timeframe"] == start.split("|")[1] == end.split("|")[1]
        assert 1 <= len(_keys(instance, request)) <= 25
    keys = [key for request in requests for key in _keys(instance, request)]
    assert sorted(keys) == sorted(f"{s}|{tf}" for s in symbols for tf in timeframes)


@pytest.mark.parametrize("count", [1, 150])
def test_schedule_ticks_request_every_registered_symbol_in_keyed_chunks(count):
    symbols = _watchlist(count)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", symbols)
        for schedule, timeframes in ((daily_bars_schedule, ["1d"]), (intraday_bars_schedule, ["1h", "15m"])):
            # evaluate_tick applies the checks the daemon and the UI's preview apply (a run_key per request)
            context = dg.build_schedule_context(instance, scheduled_execution_time=TICK)
            tick = schedule.evaluate_tick(context)
            _assert_bar_runs(instance, tick.run_requests, symbols, timeframes)
            again = schedule.evaluate_tick(dg.build_schedule_context(instance, scheduled_execution_time=TICK))
            assert again == tick  # a re-evaluated tick asks for the same runs under the same keys


def test_schedule_tick_skips_without_symbols():
    with instance_for_test() as instance:
        tick = daily_bars_schedule.evaluate_tick(
            dg.build_schedule_context(instance, scheduled_execution_time=TICK)
        )
        assert (tick.run_requests, tick.skip_message) == ([], "no symbols registered")


def _write_watchlist(path, symbols: list[str]) -> WatchlistResource:
    path.write_text("symbol,exchange,currency,sector\n" + "".join(f"{s},SMART,USD,Tech\n" for s in symbols))
    return WatchlistResource(path=str(path))


def _watchlist_tick(instance, watchlist: WatchlistResource, cursor: str | None = None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"watchlist": watchlist}, definitions=defs
    ) as context:
        return watchlist_sensor.evaluate_tick(context)


def _apply(instance, tick) -> None:
    """What the daemon does with a tick's partition requests before it launches the tick's runs."""
    for request in tick.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


@pytest.mark.parametrize("count", [1, 150])
def test_watchlist_tick_registers_and_fetches_new_symbols_once(count):
    symbols = _watchlist(count)
    watchlist = WatchlistResource(path=WATCHLIST_CSV, limit=count)
    with instance_for_test() as instance:
        tick = _watchlist_tick(instance, watchlist)
        [add] = tick.dynamic_partitions_requests
        assert add.partition_keys == symbols and tick.cursor == "1"
        assert tick == _watchlist_tick(instance, watchlist)  # a re-evaluated tick asks for the same runs
        _apply(instance, tick)
        _assert_bar_runs(instance, tick.run_requests, symbols, ["1d", "1h", "15m"], "watchlist 1: ")

        tick = _watchlist_tick(instance, watchlist, cursor="1")
        assert (tick.run_requests, tick.dynamic_partitions_requests, tick.cursor) == ([], [], "1")
        assert tick.skip_message == f"symbol partitions already match the watchlist ({count} symbols)"


def test_watchlist_tick_drops_removed_symbols_and_fetches_readded_ones_again(tmp_path):
    csv = tmp_path / "watchlist.csv"
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbol", ["MSFT", "GONE"])
        tick = _watchlist_tick(instance, _write_watchlist(csv, ["AAPL", "MSFT"]), cursor="4")
        [add, delete] = tick.dynamic_partitions_requests
        assert add.partition_keys == ["AAPL"] and delete.partition_keys == ["GONE"]
        assert [r.run_key for r in tick.run_requests] == [
            f"watchlist 5: AAPL|{tf}..AAPL|{tf}" for tf in ("1d", "1h", "15m")
        ]
        _apply(instance, tick)

        tick = _watchlist_tick(instance, _write_watchlist(csv, ["MSFT"]), cursor="5")
        assert tick.run_requests == [] and tick.cursor == "5"
        [delete] = tick.dynamic_partitions_requests
        assert delete.partition_keys == ["AAPL"]
        assert tick.skip_message == "removed from the symbol partitions: AAPL (their stored bars stay)"
        _apply(instance, tick)

        tick = _watchlist_tick(instance, _write_watchlist(csv, ["MSFT", "AAPL"]), cursor="5")
        assert tick.run_requests[0].run_key == "watchlist 6: AAPL|1d..AAPL|1d"


@pytest.mark.slow
def test_daemon_records_the_watchlist_tick_that_acted_as_a_success(tmp_path):
    """The daemon's own path (`dagster sensor start`, `dagster-daemon run`) on 2 symbols (the chunking is
    tested above through evaluate_tick): one tick adds the partitions and queues a run per timeframe, and is recorded as SUCCESS with its run keys."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # runs stay queued: the tick is under test, not market_data_job
    (home / "dagster.yaml").write_text("run_queue:\n  max_concurrent_runs: 0\ntelemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "TT_WATCHLIST": WATCHLIST_CSV, "TT_WATCHLIST_LIMIT": "2"}
    bin_dir = Path(sys.executable).parent
    workspace = ["-w", str(PROJECT_ROOT / "workspace.yaml")]
    log = tmp_path / "daemon.log"
    # the storage exists before the two processes open it (both creating it at once fails one of them)
    with dg.DagsterInstance.from_config(str(home)) as instance, log.open("w") as out:
        daemon = subprocess.Popen(
            [bin_dir / "dagster-daemon", "run", *workspace], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out
        )
        try:
            started = subprocess.run(
                [bin_dir / "dagster", "sensor", "start", "watchlist_sensor", *workspace],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            assert started.returncode == 0, started.stderr[-3000:]
            tick = _first_finished_tick(instance, "watchlist_sensor", daemon, log)
            symbols = _watchlist(2)
            assert list(instance.get_dynamic_partitions("symbol")) == symbols
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "watchlist_sensor"}))
        finally:
            stop(daemon, grace=30)
    assert tick.status.value == "SUCCESS", (tick.skip_reason, tick.error)
    assert sorted(tick.run_ids) == sorted(run.run_id for run in runs)
    assert {run.status for run in runs} == {dg.DagsterRunStatus.QUEUED}
    assert sorted(tick.run_keys) == sorted(run.tags["dagster/run_key"] for run in runs)
    first, last = symbols
    assert sorted(tick.run_keys) == sorted(
        f"watchlist 1: {first}|{tf}..{last}|{tf}" for tf in ("1d", "1h", "15m")
    )


def _first_finished_tick(instance, sensor: str, daemon: subprocess.Popen, log: Path):
    """The sensor's first tick once it finished; AssertionError with the log's tail when the daemon exits
    first or 300 s pass (a hang)."""
    deadline = time.monotonic() + 300
    while daemon.poll() is None and time.monotonic() < deadline:
        for state in instance.all_instigator_state():
            if state.instigator_name == sensor:
                ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
                finished = [t for t in ticks if t.status.value != "STARTED"]
                if finished:
                    return finished[-1]
        time.sleep(0.5)
    raise AssertionError(f"no finished tick of {sensor}: {log.read_text()[-3000:]}")


def _now() -> datetime:
    return datetime.now(UTC)


def _dataset_built(instance, version: str) -> None:
    """training_dataset 1d materialised with `version` (what the sensor reads)."""
    register_training_timeframe(instance, "1d")
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


def _tick(instance, engine, min_sharpe: float = 0.0) -> list[dg.RunRequest]:
    """The run requests of one retraining_sensor tick (evaluated as the daemon does)."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),  # as the daemon's: it checks a request's dynamic partition with it
        definitions=defs,  # the daemon resolves a partitioned request against the code location
        resources={
            "database": DatabaseResource(url=engine.url.render_as_string(hide_password=False)),
            "retrain_policy": RetrainPolicy(min_sharpe=min_sharpe),
        },
    ) as context:
        tick = retraining_sensor.evaluate_tick(context)
    assert bool(tick.run_requests) != bool(tick.skip_message)
    return tick.run_requests


RETRAIN_CONFIG = rl_config({}).to_dict()  # what retrain_job trains with by default
OTHER_CONFIG = {**RETRAIN_CONFIG, "ppo": {**RETRAIN_CONFIG["ppo"], "seed": 7}}


def test_retraining_sensor_fires_once_per_new_dataset(sqlite_engine):
    with instance_for_test() as instance:
        assert _tick(instance, sqlite_engine) == []  # nothing built yet

        _dataset_built(instance, "v1")
        [request] = _tick(instance, sqlite_engine)
        assert (request.partition_key, request.run_key) == ("1d", "1d:dataset:v1")
        assert request.tags["tt/retrain_reason"] == "new dataset"
        # the run shows the whole config it trains with, and that config is valid for retrain_job
        assert request.run_config == {"ops": {"ppo_model": {"config": RETRAIN_CONFIG}}}
        dg.validate_run_config(defs.resolve_job_def("retrain_job"), request.run_config)

        _model(sqlite_engine, "m1", "v1", sharpe=0.8, config=RETRAIN_CONFIG)
        assert _tick(instance, sqlite_engine) == []

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
            assert _tick(instance, sqlite_engine) == []
        assert _tick(instance, sqlite_engine, min_sharpe=1.0) == []


def test_sharpe_rule_ignores_the_progress_bar_setting():
    shown = {**RETRAIN_CONFIG, "ppo": {**RETRAIN_CONFIG["ppo"], "progress_bar": True}}
    assert config_key(shown) == config_key(RETRAIN_CONFIG) != config_key(OTHER_CONFIG)


def test_sharpe_rule_ignores_the_logging_settings():
    logged = {**RETRAIN_CONFIG, "logging": {"log_training": True, "training_episodes": 2}}
    assert config_key(logged) == config_key(RETRAIN_CONFIG)
