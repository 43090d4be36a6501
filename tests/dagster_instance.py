"""Temporary Dagster instances for tests, without compute-log capture."""

from __future__ import annotations

from contextlib import AbstractContextManager

import dagster as dg

# Dagster's default compute-log manager mirrors a step's stdout and stderr through two `tail -F` processes,
# each watched by a `watch_orphans.py` interpreter: four processes per step (~0.1 s CPU, up to 0.5 s wall
# each). Tests read events, never captured output. Dagster 1.13 exports no public name for its no-op
# manager, so configuration names its module (never imported here).
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


def instance_for_test(temp_dir: str | None = None) -> AbstractContextManager[dg.DagsterInstance]:
    """`dg.instance_for_test` (storage under `temp_dir`, default a new temporary directory) without
    compute-log capture; its steps' processes read the same configuration."""
    return dg.instance_for_test(overrides=NO_COMPUTE_LOGS, temp_dir=temp_dir)


def freshness_state(instance: dg.DagsterInstance, defs: dg.Definitions, asset: str) -> str:
    """The freshness state (PASS, WARN, FAIL, UNKNOWN) Dagster's freshness daemon records for `asset` of
    `defs` on `instance` now: the daemon's own evaluator for the asset's policy. `now` is Dagster's clock
    (`dagster._core.test_utils.freeze_time` sets it)."""
    import asyncio

    from dagster._core.definitions.freshness_evaluator import FRESHNESS_EVALUATORS_BY_POLICY_TYPE
    from dagster._core.loader import LoadingContextForTest

    node = defs.resolve_asset_graph().get(dg.AssetKey(asset))
    evaluator = FRESHNESS_EVALUATORS_BY_POLICY_TYPE[type(node.freshness_policy)]()
    return asyncio.run(evaluator.evaluate_freshness(LoadingContextForTest(instance), node)).value
