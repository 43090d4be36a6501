"""Dagster's SQLite event-log storage with its files kept open, for the runs the CLI launches in-process.

Dagster's SqliteEventLogStorage creates an engine, opens a connection, commits with a disk flush and closes
it again for every event it stores; a market_data run stores ~9 events per partition (planned events,
materialisations, check evaluations), so the flushes, the checkpoint on every close and the statement
compilation of every new engine made the event log the slowest part of a refresh (~17 ms per write on this
project's disks). This subclass keeps one pooled engine per database file (the index and the latest run
shards) and commits without a flush (WAL with synchronous=NORMAL, as tt_resources.db.engine does for the
project's own SQLite file): a power loss may lose the last committed events, each file stays consistent.
Dagster also asks the schema before storing each event (does the index have the asset-check table, the asset key
table its index columns?), each time over a new connection; a table or column, once there, stays (Dagster's
migrations only add them), so positive answers are kept.
The files and their contents are Dagster's own, so `dagster dev` (Dagster's class) reads them as usual;
tt_assets.launch.open_instance swaps it in for the instance's default SQLite event log.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

OPEN_FILES = 8  # engines kept: the index shard and the latest run shards


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage with an engine (and its pooled connection) kept per database file; same config
    (`base_dir`: the directory of the run shards and the index)."""

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
