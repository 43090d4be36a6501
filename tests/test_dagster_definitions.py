"""The code location loads, stays light, and the instance config files are valid."""

import json
import shutil
import subprocess
import sys

import dagster as dg

from tt_assets.definitions import defs
from tt_assets.partitions import TIMEFRAMES
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


def test_raw_bars_policies():
    raw_bars = defs.resolve_assets_def("raw_bars")
    assert raw_bars.backfill_policy == dg.BackfillPolicy.multi_run(25)
    assert raw_bars.op.pool == "ibkr"
    graph = defs.resolve_asset_graph()
    names = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("raw_bars")}
    assert names == {"coverage", "no_duplicates", "monotonic_timestamps", "ohlc_sanity"}
    assert all(graph.get_check_spec(key).blocking for key in graph.asset_check_keys)


def test_embedded_dagster_yaml_configures_run_queue_and_ibkr_pool(tmp_path, monkeypatch):
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.max_concurrent_runs == 2
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.root_directory == str(tmp_path)
