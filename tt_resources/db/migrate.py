"""Alembic migrations, applied programmatically, idempotently and safely from concurrent processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from filelock import FileLock

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_lock key of the schema migration (a fixed bigint, "ttmigrat" in ASCII); advisory locks are
# scoped to one database, so it only serialises migrations of the same database
PG_MIGRATION_LOCK_KEY = 0x74746D6967726174


def alembic_config(engine: sa.Engine) -> Config:
    """Alembic Config bound to `engine` (passed to env.py through `attributes`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (no-op when already there).

    Any number of processes may call this at once on the same (even empty) database: the migration runs
    under `_migration_lock`, so the others wait and then find the schema current instead of racing to
    create alembic_version. A database already at head (every normal start) is detected without the lock.
    """
    cfg = alembic_config(engine)
    if revision == "head" and current_revision(engine) == ScriptDirectory.from_config(cfg).get_current_head():
        return
    with _migration_lock(engine) as conn, conn.begin():
        cfg.attributes["connection"] = conn  # env.py migrates on the connection that holds the lock
        command.upgrade(cfg, revision)


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection to `engine` held while no other process migrates the same database.

    PostgreSQL: a session-level advisory lock taken on that connection (released on exit, or by the server
    when the session dies). SQLite file: a file lock `<database file>.migrate.lock` (released on exit or
    when the process dies). In-memory SQLite and other backends: no lock (nothing else can share them, or
    no lock is known)."""
    backend, database = engine.url.get_backend_name(), engine.url.database
    if backend == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_lock(PG_MIGRATION_LOCK_KEY)))
            conn.commit()  # the lock is the session's: it outlives this transaction
            try:
                yield conn
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(PG_MIGRATION_LOCK_KEY)))
                conn.commit()
    elif backend == "sqlite" and database not in (None, "", ":memory:"):
        with FileLock(f"{database}.migrate.lock"), engine.connect() as conn:
            yield conn
    else:
        with engine.connect() as conn:
            yield conn


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
