"""The code location loads, stays light, and the instance config files are valid."""

import json
import shutil
import subprocess
import sys

import dagster as dg

from tt_assets.definitions import defs
from tt_assets.partitions import MAX_PARTITIONS_PER_RUN, TIMEFRAMES
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
    }
    assert {s.name for s in defs.sensors} == {"watchlist_sensor", "retraining_sensor"}
    assert {s.name for s in defs.schedules} == {"daily_bars_schedule", "intraday_bars_schedule"}


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
