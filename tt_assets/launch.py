"""Launching the platform's jobs in-process against the persistent Dagster instance (used by the `tt` CLI).

Runs launched here are recorded in DAGSTER_HOME exactly like runs from the UI, so `dagster dev` shows their
lineage, metadata and check results afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg

from tt_assets.partitions import SYMBOL_DIM, range_tags, symbol_ranges
from tt_resources import config


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (set to `<data dir>/dagster_home` when unset), holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        shutil.copy(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


# Runs launched from the CLI show their own progress; Dagster's console logger only adds warnings and errors
# (the full event log is still stored in the instance and shown by `dagster dev`).
CONSOLE_WARNINGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_job(
    instance: dg.DagsterInstance, name: str, *, run_config: dict | None = None, **kwargs
) -> dg.ExecuteInProcessResult:
    """Execute the code location's job `name` in-process against `instance` (kwargs: partition_key, tags,
    asset_selection, raise_on_error)."""
    from tt_assets.definitions import defs

    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, run_config={**CONSOLE_WARNINGS, **(run_config or {})}, **kwargs
    )


def register_symbols(instance: dg.DagsterInstance, symbols: Iterable[str]) -> list[str]:
    """Add the symbols missing from the `symbol` partitions; return every registered symbol in order."""
    registered = set(instance.get_dynamic_partitions(SYMBOL_DIM))
    instance.add_dynamic_partitions(SYMBOL_DIM, [s for s in dict.fromkeys(symbols) if s not in registered])
    return list(instance.get_dynamic_partitions(SYMBOL_DIM))


def materialize_market_data(
    instance: dg.DagsterInstance,
    symbols: Iterable[str],
    timeframes: Iterable[str],
    *,
    run_config: dict | None = None,
    status: Callable[[str], object] | None = None,
) -> Iterator[tuple[dg.PartitionKeyRange, dg.ExecuteInProcessResult]]:
    """Run market_data_job (raw_bars + checks + features) over `symbols` x `timeframes`, a key range per run.

    Yields (range, result) as each run ends; a failed run does not stop the others. `status(text)` is
    entered as a context manager around each run (e.g. rich's `console.status`)."""
    from contextlib import nullcontext

    wanted = set(symbols)
    registered = register_symbols(instance, wanted)
    for timeframe in timeframes:
        for key_range in symbol_ranges(registered, timeframe, wanted=wanted):
            label = f"raw_bars + checks + features {key_range.start} .. {key_range.end}"
            with status(label) if status else nullcontext():
                result = run_job(
                    instance,
                    "market_data_job",
                    tags=range_tags(key_range),
                    run_config=run_config,
                    raise_on_error=False,
                )
            yield key_range, result


def partition_results(result: dg.ExecuteInProcessResult) -> list[SimpleNamespace]:
    """Per-partition outcome of a market_data_job run, read from raw_bars' materialization metadata
    (symbol, timeframe, status, requests, bars_written, pacing_waits, error), like `ingest_many`'s results."""
    from tt_assets.partitions import split_key

    rows = []
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key != dg.AssetKey("raw_bars"):
            continue
        meta = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        symbol, timeframe = split_key(materialization.partition)
        rows.append(
            SimpleNamespace(
                symbol=symbol,
                timeframe=timeframe,
                status=meta["status"],
                requests=meta["requests"],
                bars_written=meta["bars_written"],
                pacing_waits=meta["pacing_waits"],
                error=None,
            )
        )
    return rows
