"""Launching the platform's jobs in-process against the persistent Dagster instance (used by the `tt` CLI).

Runs launched here are recorded in DAGSTER_HOME exactly like runs from the UI, so `dagster dev` shows their
lineage, metadata and check results afterwards.

Concurrency-pool slots (the `ibkr` pool, limit 1) never outlive the run that took them: a run launched here
frees its slots however it ends (failed, its steps not submitted, interrupted), and `reclaim_pool_slots`, run
at the next start, frees the slots of finished runs and of runs whose launching process on this host is gone
(killed), marking such a run failed. Each run carries its launch and launching process in its tags
(LAUNCH_TAG, HOST_TAG, PID_TAG).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import dagster as dg
from filelock import FileLock

from tt_assets.dagster_fence import (
    free_pool_slots,
    open_instance_with_pooled_event_log,
    pool_claims,
    reconstructable_job,
)
from tt_assets.partitions import (
    SYMBOL_DIM,
    range_tags,
    register_training_timeframe,
    symbol_ranges,
    training_partitions,
)
from tt_resources import config
from tt_resources.dagster_storage import check_instance_settings

# What the default (SQLite) instance storage creates under DAGSTER_HOME: run, event-log index and schedule
# storage. Once all exist, concurrent `DagsterInstance.get()` calls on the home are safe.
SQLITE_STORAGE = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (set to `<data dir>/dagster_home` when unset), holding the project's dagster.yaml and an
    initialised instance storage.

    The first start initialises the home under the file lock `<home>/.tt-init.lock`: dagster.yaml is copied
    when missing and the instance storage is created once, so processes starting together on a fresh home
    neither read a half-copied dagster.yaml nor race each other creating Dagster's storage schema. An
    initialised home is recognised without the lock; with non-SQLite storage (no files to recognise) the
    storage is opened under the lock at every start. DagsterStorageError (one line) when the home's
    dagster.yaml names an unset variable or storage that does not answer."""
    home = config.dagster_home()
    check_instance_settings(home)  # DAGSTER_PG_* set and the storage answering, before Dagster reads them
    os.environ["DAGSTER_HOME"] = str(home)
    if _dagster_home_ready(home):
        return home
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / ".tt-init.lock"):
        if not (home / "dagster.yaml").exists():
            shutil.copy(config.PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        if not _dagster_home_ready(home):
            dg.DagsterInstance.from_config(str(home)).dispose()
    return home


def open_instance() -> dg.DagsterInstance:
    """The persistent instance (DAGSTER_HOME, see ensure_dagster_home) for runs launched in this process.

    When the instance keeps its event log in Dagster's default SQLite storage, it is opened as
    tt_assets.dagster_fence.PooledSqliteEventLogStorage: the same files, written without reopening and
    flushing them for every event (a refresh stores ~9 events per partition)."""
    return open_instance_with_pooled_event_log(str(ensure_dagster_home()))


def _dagster_home_ready(home: Path) -> bool:
    """dagster.yaml and the SQLite instance storage exist."""
    return all((home / path).exists() for path in ("dagster.yaml", *SQLITE_STORAGE))


# Runs launched from the CLI show their own progress and print each failure's reason in one line, so
# Dagster's console logger stays silent (the full event log, stack traces included, is stored in the
# instance and shown by `dagster dev`).
# Symbols per market_data_job run the CLI launches (backfills and schedules keep MAX_PARTITIONS_PER_RUN): every
# run pays a fixed cost (a new event-log shard, planned events, executor start), so larger runs are faster;
# 75 still advances the CLI's progress twice per timeframe of the full watchlist.
CLI_PARTITIONS_PER_RUN = 75
CONSOLE_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

# tags of every run launched here: this launch (one run_job call), and the launching process
LAUNCH_TAG, HOST_TAG, PID_TAG = "tt/launch", "tt/host", "tt/pid"
FINISHED = {
    dg.DagsterRunStatus.SUCCESS: "it succeeded",
    dg.DagsterRunStatus.FAILURE: "it failed",
    dg.DagsterRunStatus.CANCELED: "it was canceled",
}
JOIN_S = 0.2  # how often the main thread looks whether the orchestrating thread has ended
STEP_WORKER_STARTED = b" - STEP_WORKER_STARTED - "  # the multiprocess executor's step-process start line
FORWARD_S = 5.0  # how long a run's end waits for its step processes' last stderr lines
# step processes forked from one server that has loaded these once: a training step starts in about a second
# instead of ~10 s of imports (Dagster's multiprocess executor, start method `forkserver`)
FORKSERVER = {"forkserver": {"preload_modules": ["tt_assets.definitions", "tt_rl.warmup"]}}
_forkserver_environ: dict[str, str] | None = None  # os.environ when this process's forkserver started


class RunInterrupted(RuntimeError):
    """SIGINT/SIGTERM while a run was under way; the run is marked canceled and holds no pool slot."""


def run_job(
    instance: dg.DagsterInstance,
    name: str,
    *,
    run_config: dict | None = None,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
    raise_on_error: bool = True,
    step_processes: bool = False,
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """Execute the code location's job `name` against `instance`: in-process, or through the code location's
    executor, this process orchestrating: with TT_EXECUTOR=celery, Celery workers run the steps; else, with
    `step_processes`, Dagster's multiprocess executor (a process per step, as many at once as there are
    cores: a training job's (fold, seed) steps use every core, each worth its process start-up).

    The run is tagged with LAUNCH_TAG, HOST_TAG and PID_TAG and frees its pool slots however it ends. With Celery:
    NoWorkers / BrokerUnreachable (tt_assets.executors) before the run is created when no worker reads the
    queue within TT_CELERY_WAIT_S; RunInterrupted on SIGINT/SIGTERM. A training job's timeframe is added to
    the training partitions first (register_training_timeframe)."""
    from tt_assets.definitions import defs
    from tt_assets.executors import uses_celery, wait_for_workers

    run_config = {**CONSOLE_QUIET, **(run_config or {})}
    job = defs.resolve_job_def(name)
    if partition_key is not None and job.partitions_def == training_partitions:
        register_training_timeframe(instance, partition_key)
    launch = uuid.uuid4().hex
    tags = {**(tags or {}), LAUNCH_TAG: launch, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    try:
        if not uses_celery() and not step_processes:
            return job.execute_in_process(
                instance=instance,
                run_config=run_config,
                partition_key=partition_key,
                tags=tags,
                asset_selection=asset_selection,
                raise_on_error=raise_on_error,
            )
        if uses_celery():
            wait_for_workers()  # NoWorkers / BrokerUnreachable: one line, before a run exists
        else:
            start = {"multiprocess": {"start_method": _start_method()}}
            run_config = {**run_config, "execution": {"config": start}}
        if partition_key is not None:
            tags = {**tags, **job.get_tags_for_partition_key(partition_key, asset_selection)}
        recon = reconstructable_job("tt_assets.definitions", "defs", name, str(config.PROJECT_ROOT))
        with nullcontext() if uses_celery() else _without_step_worker_lines():
            return _orchestrate(instance, launch, recon, run_config, tags, asset_selection, raise_on_error)
    finally:
        for run in _launched(instance, launch):
            free_pool_slots(instance, run.run_id)


def _start_method() -> dict:
    """How the multiprocess executor starts this run's step processes: FORKSERVER while this process's
    environment is the one its forkserver started with (the first such run starts it), else `spawn`. A forked
    step inherits the server's environment, not this process's: a later run under other settings (another
    DATABASE_URL, say) would run its steps under the first run's."""
    global _forkserver_environ
    if _forkserver_environ is None:
        _forkserver_environ = dict(os.environ)
    return FORKSERVER if dict(os.environ) == _forkserver_environ else {"spawn": {}}


@contextmanager
def _without_step_worker_lines() -> Iterator[None]:
    """This process's stderr (fd 2, inherited by the step processes) without the STEP_WORKER_STARTED lines
    that Dagster's multiprocess executor has each step process print at DEBUG level, whatever the run's
    logger config says (it logs them before the run config is read); every other byte passes unchanged."""
    sys.stderr.flush()
    saved, (read, write) = os.dup(2), os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def forward() -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if STEP_WORKER_STARTED not in line:
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="tt-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes this process's write end: forward() ends when the step processes have
        thread.join(FORWARD_S)  # (a run interrupted may leave some running: forward() goes on for them)


def _orchestrate(instance, launch, recon, run_config, tags, asset_selection, raise_on_error):
    """dg.execute_job in a thread of its own, so that this (main) thread keeps the signals: SIGINT or
    SIGTERM marks the run canceled and raises RunInterrupted at once, even while the run's steps wait in a
    queue that no worker reads (dagster-celery waits for a revoked step's answer from a worker)."""
    outcome: dict = {}

    def execute() -> None:
        try:
            with dg.execute_job(
                recon,
                instance,
                run_config=run_config,
                tags=tags,
                asset_selection=asset_selection,
                raise_on_error=raise_on_error,
            ) as result:
                outcome["result"] = result
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        execute()
    else:
        _execute_in_thread(execute, instance, launch)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _execute_in_thread(execute: Callable[[], None], instance: dg.DagsterInstance, launch: str) -> None:
    """Run `execute` in a daemon thread while this (main) thread waits; on SIGINT/SIGTERM, mark the
    launch's unfinished runs canceled and raise RunInterrupted without waiting for the thread."""
    thread = threading.Thread(target=execute, name="tt-run-orchestrator", daemon=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(JOIN_S)
    except KeyboardInterrupt:
        runs = [run for run in _launched(instance, launch) if run.status not in FINISHED]
        for run in runs:
            instance.report_run_canceled(run, message="interrupted (SIGINT/SIGTERM) in the launching process")
        shown = ", ".join(run.run_id for run in runs) or "not created yet"
        raise RunInterrupted(f"interrupted: run {shown} marked canceled") from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _launched(instance: dg.DagsterInstance, launch: str) -> list[dg.DagsterRun]:
    """The runs of one run_job call (its LAUNCH_TAG)."""
    return list(instance.get_runs(dg.RunsFilter(tags={LAUNCH_TAG: launch})))


def reclaim_pool_slots(instance: dg.DagsterInstance) -> list[str]:
    """Free the concurrency-pool slots of runs that are no longer alive: finished runs, runs no longer
    recorded, and runs launched by a process of this host that is gone (those are marked failed). One line
    per freed run, naming its pools, its id and why. Runs of live processes or other hosts are left alone."""
    freed = []
    host = socket.gethostname()
    for run_id, pools in pool_claims(instance).items():
        run = instance.get_run_by_id(run_id)
        if run is None:
            why = "no longer recorded"
        elif run.status in FINISHED:
            why = FINISHED[run.status]
        elif run.tags.get(HOST_TAG) == host and not _alive(run.tags.get(PID_TAG)):
            why = f"its process {run.tags[PID_TAG]} on {host} is gone; marked failed"
            instance.report_run_failed(run, message=f"its launching process {run.tags[PID_TAG]} is gone")
        else:
            continue
        free_pool_slots(instance, run_id)
        freed.append(f"freed pool slot(s) {', '.join(sorted(pools)) or '-'} of run {run_id} ({why})")
    return freed


def _alive(pid: str | None) -> bool:
    """Whether process `pid` (a PID_TAG value) exists; True when unknown (not ours to judge)."""
    if pid is None or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
) -> Iterator[tuple[dg.PartitionKeyRange, dg.ExecuteInProcessResult | dg.JobExecutionResult]]:
    """Run market_data_job (raw_bars + checks + features) over `symbols` x `timeframes`, a key range of up to
    CLI_PARTITIONS_PER_RUN symbols per run.

    Yields (range, result) as each run ends; a failed run does not stop the others. `status(text)` is
    entered as a context manager around each run (e.g. rich's `console.status`)."""
    from contextlib import nullcontext

    wanted = list(dict.fromkeys(symbols))  # the caller's (watchlist) order is the registration order
    registered = register_symbols(instance, wanted)
    for timeframe in timeframes:
        for key_range in symbol_ranges(registered, timeframe, CLI_PARTITIONS_PER_RUN, wanted=wanted):
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


def failure_reason(data) -> str:
    """One line for a step failure (StepFailureData): the Failure's description, else the first line of the
    innermost exception (the user code's, not Dagster's wrapper), with its type."""
    user = data.user_failure_data
    if user is not None and user.description:
        return user.description.strip().splitlines()[0]
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[0] if error is not None else "step failed"


def partition_reports(
    instance: dg.DagsterInstance,
    key_range: dg.PartitionKeyRange,
    result: dg.ExecuteInProcessResult | dg.JobExecutionResult,
) -> list:
    """One tt_pipeline.market.PartitionReport per partition of a market_data_job range run, read from the
    run's raw_bars materialisations and the failure it raised (which names each failed partition and its
    reason); a partition the run never reported is failed with the run's error."""
    from tt_assets.market import RAW_BARS
    from tt_assets.partitions import bar_partitions, split_key
    from tt_pipeline.market import PartitionReport

    reports: dict[str, PartitionReport] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == RAW_BARS:
            values = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            reports[materialization.partition] = PartitionReport.from_metadata(values)
    failed, run_error = {}, None
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and "failed_partitions" in user.metadata:
            failed.update(
                {
                    key: PartitionReport.from_metadata(values)
                    for key, values in user.metadata["failed_partitions"].value.items()
                }
            )
        else:
            run_error = failure_reason(data)
    keys = bar_partitions.get_partition_keys_in_range(key_range, dynamic_partitions_store=instance)
    out = []
    for key in map(str, keys):
        symbol, timeframe = split_key(key)
        if key in failed:
            out.append(failed[key])
        elif key in reports:
            out.append(reports[key])
        else:
            reason = run_error or f"run {result.run_id} failed"
            out.append(PartitionReport(symbol, timeframe, "failed", reason=reason, failed_in="run"))
    return out
