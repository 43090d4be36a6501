"""Every use of Dagster's private API (`dagster._...`), checked against Dagster 1.13.

What the project relies on beyond `import dagster`:
- the check-evaluation target (AssetCheckEvaluationTargetMaterializationData: which materialisation a
  partition's check evaluated), which Dagster exports only privately;
- a reconstructable job of a code location's Definitions by module and attribute (ReconstructableRepository),
  what `dg.execute_job` needs to send steps to other processes (Celery workers);
- the SQLite event log's internals, for PooledSqliteEventLogStorage below, and the instance reference of a
  DAGSTER_HOME (InstanceRef, ConfigurableClassData), to open its default SQLite event log as the pooled one;
- the `dagster` command itself (dagster._cli, the script's entry point), which `tt dev` runs in-process;
- the instance's concurrency-slot storage (EventLogStorage's undocumented pool methods): which runs hold or
  wait for a pool slot, and freeing a run's slots, what Dagster's daemon does for finished runs
  (dagster._daemon.monitoring.concurrency) and what the CLI does for runs that died with their process.
tests/test_fences.py checks each of these (names, parameters, attributes). This module imports SQLAlchemy (the
event log's base), so the Dagster definitions import it only where a run is under way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

from tt_resources.fences import require_checked

require_checked("dagster", "1.13", "tt_assets/dagster_fence.py")

__all__ = [
    "AssetCheckEvaluationTargetMaterializationData",
    "PooledSqliteEventLogStorage",
    "SqliteEventLogStorage",
    "free_pool_slots",
    "open_instance_with_pooled_event_log",
    "pool_claims",
    "reconstructable_job",
    "run_dagster_cli",
]

# (module, class) of Dagster's default SQLite event log and unified storage as an instance reference names them
SQLITE_EVENT_LOG = ("dagster._core.storage.event_log", "SqliteEventLogStorage")
SQLITE_UNIFIED_STORAGE = ("dagster._core.storage.sqlite_storage", "DagsterSqliteStorage")
OPEN_FILES = 8  # engines the pooled event log keeps: the index shard and the latest run shards


def reconstructable_job(module: str, attribute: str, job: str, working_directory: str) -> ReconstructableJob:
    """Job `job` of the Definitions `module.attribute`, reconstructable in another process."""
    return ReconstructableRepository.for_module(
        module, attribute, working_directory=working_directory
    ).get_reconstructable_job(job)


def run_dagster_cli(args: list[str]) -> None:
    """Run the `dagster` command with `args` in this process, as its script does (DAGSTER_CLI_* environment
    variables fill options)."""
    from dagster._cli import ENV_PREFIX
    from dagster._cli import cli as dagster_cli

    dagster_cli.main(args=args, prog_name="dagster", auto_envvar_prefix=ENV_PREFIX)


def pool_claims(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """Run id -> the pools in which the run holds a slot or has a step waiting for one; empty when the
    instance's storage has no concurrency pools."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    claims: dict[str, set[str]] = {run_id: set() for run_id in storage.get_concurrency_run_ids()}
    if claims:
        for pool in storage.get_concurrency_keys():
            info = storage.get_concurrency_info(pool)
            for run_id in {s.run_id for s in info.claimed_slots} | {s.run_id for s in info.pending_steps}:
                claims.setdefault(run_id, set()).add(pool)
    return claims


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free every pool slot run `run_id` holds and drop its waiting steps (the next waiting step gets it)."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def open_instance_with_pooled_event_log(home: str) -> dg.DagsterInstance:
    """The instance of DAGSTER_HOME `home`; when its event log is Dagster's default SQLite storage, that event
    log is opened as PooledSqliteEventLogStorage (same files, same config)."""
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    ref = InstanceRef.from_dir(home)
    events, unified = ref.event_storage_data, ref.storage_data
    if _class(events) == SQLITE_EVENT_LOG and _class(unified) in (None, SQLITE_UNIFIED_STORAGE):
        pooled = ConfigurableClassData(__name__, PooledSqliteEventLogStorage.__name__, events.config_yaml)
        # the run and schedule storage stay the default's (InstanceRef names them beside the unified one)
        ref = ref._replace(storage_data=None, event_storage_data=pooled)
    return dg.DagsterInstance.from_ref(ref)


def _class(data) -> tuple[str, str] | None:
    return None if data is None else (data.module_name, data.class_name)


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with its files kept open, for the runs the CLI launches in-process; same
    config (`base_dir`: the directory of the run shards and the index).

    Dagster's class creates an engine, opens a connection, commits with a disk flush and closes it again for
    every event it stores (a market_data run stores ~9 per partition: planned events, materialisations, check
    evaluations), and asks the schema before each event over a new connection. This one keeps an engine (and
    its pooled connection) per database file, the index and the latest OPEN_FILES run shards, commits without
    a flush (WAL with synchronous=NORMAL, as tt_resources.db.engine does for the project's own SQLite file: a
    power loss may lose the last committed events, each file stays consistent), and keeps positive schema
    answers (Dagster's migrations only add tables and columns). The files stay Dagster's own, so `dagster dev`
    (Dagster's class) reads them as usual. bench/market_data.py event_log compares the two."""

    def __init__(self, base_dir: str, inst_data=None) -> None:
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._present: set[str] = set()  # tables and asset-key columns known to exist in the index
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def _engine(self, shard: str) -> sa.Engine:
        """The shard's engine (created and its database initialised on first use), most recent last."""
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = sa.create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            sa.event.listen(engine, "connect", _commit_without_flush)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_FILES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        parent = super().has_table
        return self._known(f"table {table_name}", lambda: parent(table_name))

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        parent = super()._has_asset_key_col_on_connection
        return self._known(f"asset_keys.{column_name}", lambda: parent(conn, column_name))

    def _known(self, name: str, ask) -> bool:
        """True if `name` was seen present before, else `ask()` (remembered when True)."""
        if name not in self._present:
            if not ask():
                return False
            self._present.add(name)
        return True

    def _close_files(self) -> None:
        while self._engines:
            self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        with self._db_lock:
            self._close_files()  # before the run shards are unlinked
            self._present.clear()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._close_files()
        super().dispose()


def _commit_without_flush(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
