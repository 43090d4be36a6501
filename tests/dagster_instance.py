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
