"""The code location loads, stays light, and the instance config files are valid."""

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from tests.dagster_instance import freshness_state, instance_for_test
from tt_assets.automation import daily_bars_schedule, intraday_bars_schedule
from tt_assets.conventions import (
    BARS_DEADLINE_CRON,
    FRESHNESS_GRACE,
    INTRADAY_BARS_CRON,
    OWNERS,
    US_EASTERN,
    bars_freshness,
)
from tt_assets.definitions import defs
from tt_assets.partitions import (
    MAX_PARTITIONS_PER_RUN,
    TIMEFRAMES,
    TRAINING_DIM,
    register_training_timeframe,
)
from tt_pipeline.quality import RAW_BARS_RULES
from tt_resources.config import PROJECT_ROOT
from tt_resources.timeframes import TIMEFRAME_NAMES

HEAVY = (
    "tensortrade",
    "tensorflow",
    "torch",
    "stable_baselines3",
    "numba",
    "ib_async",
    "pandas",
    "sqlalchemy",
)


def test_definitions_validate_loadable():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "raw_bars",
        "features",
        "training_dataset",
        "ppo_model",
        "evaluation",
        "production_model",
        "target_portfolio",
        "orders",
        "fills",
        "positions",
        "live_performance",
    }
    assert {s.name for s in defs.sensors} == {
        "watchlist_sensor",
        "retraining_sensor",
        "live_performance_sensor",
    }
    assert {s.name for s in defs.schedules} == {
        "daily_bars_schedule",
        "intraday_bars_schedule",
        "trading_close_schedule",
        "trading_open_schedule",
    }


def test_loading_definitions_imports_no_heavy_module():
    probe = (
        "import json, sys, warnings; warnings.simplefilter('ignore'); import tt_assets.definitions; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_timeframe_partitions_match_the_timeframes_module():
    assert TIMEFRAMES == TIMEFRAME_NAMES


def test_every_bar_quality_rule_is_a_blocking_check_of_raw_bars():
    graph = defs.resolve_asset_graph()
    checks = [key for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("raw_bars")]
    assert {key.name for key in checks} == set(RAW_BARS_RULES)
    assert all(graph.get_check_spec(key).blocking for key in graph.asset_check_keys)


def test_a_raw_bars_backfill_run_covers_at_most_one_pacing_window_of_partitions():
    policy = defs.resolve_assets_def("raw_bars").backfill_policy
    assert policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)


def test_the_embedded_instance_queues_runs_and_lets_one_raw_bars_step_fetch_at_a_time(tmp_path, monkeypatch):
    """With dagster.yaml, runs wait in a bounded queue, and a raw_bars step that finds IBKR's pool taken waits
    until the step holding it is done (two steps would spend one pacing budget at once)."""
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    pool = defs.resolve_assets_def("raw_bars").op.pool
    with dg.DagsterInstance.get() as instance:
        assert instance.root_directory == str(tmp_path)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs >= 1
        slots = instance.event_log_storage
        slots.initialize_concurrency_limit_to_default(pool)  # what a step does before its first claim
        assert slots.claim_concurrency_slot(pool, "run-a", "raw_bars").is_claimed
        assert not slots.claim_concurrency_slot(pool, "run-b", "raw_bars").is_claimed
        slots.free_concurrency_slot_for_step("run-a", "raw_bars")
        assert slots.claim_concurrency_slot(pool, "run-b", "raw_bars").is_claimed


NEW_YORK = ZoneInfo(US_EASTERN)


def test_every_asset_has_the_owner_and_the_bars_follow_the_schedules_freshness_policy():
    graph = defs.resolve_asset_graph()
    trading = ("target_portfolio", "orders", "fills", "positions", "live_performance")
    assert {key.to_user_string(): list(graph.get(key).owners) for key in graph.get_all_asset_keys()} == {
        name: OWNERS
        for name in (
            "raw_bars",
            "features",
            "training_dataset",
            "ppo_model",
            "evaluation",
            "production_model",
            *trading,
        )
    }
    fresh = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).freshness_policy}
    assert fresh == {"raw_bars", "features", "target_portfolio"}  # tests/test_trading_dagster.py: the target
    assert graph.get(dg.AssetKey("raw_bars")).freshness_policy == bars_freshness
    # the deadline is the intraday tick plus the grace; the daily tick lies inside the day's last window
    minute, *rest = INTRADAY_BARS_CRON.split()
    assert BARS_DEADLINE_CRON.split() == [str(int(minute) + FRESHNESS_GRACE.seconds // 60), *rest]
    assert intraday_bars_schedule.cron_schedule == INTRADAY_BARS_CRON
    assert daily_bars_schedule.execution_timezone == intraday_bars_schedule.execution_timezone == US_EASTERN
    daily_minute, daily_hour, *_ = daily_bars_schedule.cron_schedule.split()
    last_deadline = datetime(2026, 12, 4, 16, int(minute) + FRESHNESS_GRACE.seconds // 60)
    assert last_deadline - FRESHNESS_GRACE <= datetime(2026, 12, 4, int(daily_hour), int(daily_minute))


@pytest.mark.parametrize("asset", ["raw_bars", "features"])
@pytest.mark.parametrize(
    ("materialised", "evaluated", "state"),
    [
        (None, (12, 1, 10, 40), "UNKNOWN"),  # never materialised
        ((12, 1, 10, 10), (12, 1, 10, 40), "PASS"),  # Tuesday: the 10:05 tick's run
        ((12, 1, 10, 10), (12, 1, 11, 40), "FAIL"),  # the 11:05 tick's run is missing
        ((12, 4, 16, 20), (12, 7, 9, 0), "PASS"),  # Friday's daily run is fresh until Monday's first deadline
        ((12, 4, 16, 20), (12, 7, 10, 40), "FAIL"),
    ],
)
def test_the_freshness_daemon_evaluates_the_bars_against_the_schedules(asset, materialised, evaluated, state):
    """The evaluation Dagster's freshness daemon makes (its evaluator for the asset's policy, on a real
    instance), at New York times of the week of 2026-11-30."""
    with instance_for_test() as instance:
        if materialised:
            with freeze_time(datetime(2026, *materialised, tzinfo=NEW_YORK)):
                instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition="AAPL|1h"))
        with freeze_time(datetime(2026, *evaluated, tzinfo=NEW_YORK)):
            assert freshness_state(instance, defs, asset) == state


def test_training_partitions_are_the_timeframes_registered_for_training():
    """Only a timeframe someone trains is a training partition (the UI counts no other as missing)."""
    with instance_for_test() as instance:
        assert list(instance.get_dynamic_partitions(TRAINING_DIM)) == []
        register_training_timeframe(instance, "1d")
        register_training_timeframe(instance, "1d")
        assert list(instance.get_dynamic_partitions(TRAINING_DIM)) == ["1d"]
        for asset in ("training_dataset", "ppo_model", "evaluation", "production_model"):
            partitions = defs.resolve_assets_def(asset).partitions_def
            assert partitions.get_partition_keys(dynamic_partitions_store=instance) == ["1d"]
        with pytest.raises(ValueError, match=r"^training timeframe '2h': not one of 1d, 1h, 15m$"):
            register_training_timeframe(instance, "2h")
        # a partition added by hand in the UI that is no timeframe fails the dataset in one line
        instance.add_dynamic_partitions(TRAINING_DIM, ["2h"])
        result = defs.resolve_job_def("training_job").execute_in_process(
            instance=instance,
            partition_key="2h",
            asset_selection=[dg.AssetKey("training_dataset")],
            raise_on_error=False,
        )
        [failure] = result.get_step_failure_events()
        assert failure.step_failure_data.user_failure_data.description == (
            "training partition '2h' is not a bar timeframe (1d, 1h, 15m): delete it"
        )


def test_the_dashboard_link_is_the_loaded_code_locations_setting():
    """The training assets' `dashboard` link is definition metadata, built from TT_DASHBOARD_URL when the code
    location loads (materialisations store only `?model=<id>`), so a changed setting shows after a reload."""
    probe = (
        "import json, warnings; warnings.simplefilter('ignore'); from tt_assets.definitions import defs; "
        "print(json.dumps({a: defs.resolve_assets_def(a).specs_by_key[defs.resolve_assets_def(a).key]"
        ".metadata['dashboard'].url for a in ('ppo_model', 'evaluation', 'production_model')}))"
    )
    env = {**os.environ, "TT_DASHBOARD_URL": "http://dash.example:9000/"}
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env
    )
    links = json.loads(out.stdout.strip().splitlines()[-1])
    assert links == dict.fromkeys(
        ("ppo_model", "evaluation", "production_model"), "http://dash.example:9000/"
    )
