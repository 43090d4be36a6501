"""Shared fixtures: real SQLite files and a real PostgreSQL database per test session.

PostgreSQL comes from TT_TEST_PG_URL (default: the local cluster as user postgres). Each pytest session
(each xdist worker) creates its own database and drops it at the end. When CI=true an unreachable server
fails the PostgreSQL tests instead of skipping them.

Alembic takes ~0.4 s per database, so it runs once per session and backend: a test's SQLite file is a copy
of a migrated template; the PostgreSQL database stays migrated between the tests that take it so, its rows
deleted before each (`CREATE DATABASE ... TEMPLATE` measured slower than Alembic on PostgreSQL 15). Every
test still starts on a database of its own or with no rows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.scratch import PG_ADMIN_URL, scratch_postgres
from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import upgrade
from tt_resources.db.schema import metadata

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database for this test session."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_postgres(PG_ADMIN_URL, "tt_test"))
        except sa.exc.OperationalError as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL unreachable at {PG_ADMIN_URL} (CI=true): {exc.orig}")
            pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
        yield url


class SessionDatabase:
    """The session's PostgreSQL database, handed to one test at a time either empty or at the schema head
    with no rows. Tests that change the schema take it empty (`pg_url`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._at_head = False  # migrated to head, schema untouched since

    def empty(self) -> str:
        """Drop every table (schema not yet created); the URL."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
        finally:
            engine.dispose()
        self._at_head = False
        return self.url

    def migrated(self) -> sa.Engine:
        """An engine on the database at the schema head with no rows. Migrated the first time (and after
        `empty`), later its rows deleted and its sequences restarted: ~20 ms instead of Alembic's ~0.45 s."""
        if not self._at_head:
            self.empty()
        engine = create_engine(self.url)
        if not self._at_head:
            upgrade(engine)
            self._at_head = True
            return engine
        with engine.begin() as conn:
            # metadata names every table: test_migrations checks the migrated schema against it
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            sequences = conn.execute(
                sa.text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
            ).scalars()
            for name in list(sequences):  # identifiers cannot be bound parameters
                conn.execute(sa.text(f'ALTER SEQUENCE "{name}" RESTART'))
        return engine


@pytest.fixture(scope="session")
def pg_database(pg_server_url) -> SessionDatabase:
    """The session's PostgreSQL database, emptied or migrated per test by `pg_url` and `pg_engine`."""
    return SessionDatabase(pg_server_url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per session (its engine disposed: the WAL is checkpointed)."""
    path = tmp_path_factory.mktemp("template") / "tt.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a fresh SQLite file in the test's tmp dir (schema not yet created)."""
    return f"sqlite:///{tmp_path / 'tt.sqlite'}"


@pytest.fixture
def pg_url(pg_database) -> str:
    """URL of the session's PostgreSQL database, emptied (schema not yet created)."""
    return pg_database.empty()


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """Fresh empty database URL, once per backend (SQLite file, PostgreSQL)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=BACKENDS)
def engine(request) -> Iterator[sa.Engine]:
    """Migrated engine on a fresh database, once per backend."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    yield request.getfixturevalue(name)


@pytest.fixture
def sqlite_engine(sqlite_url, sqlite_template, tmp_path) -> Iterator[sa.Engine]:
    """Migrated engine on a fresh SQLite file, sqlite_url's (for tests that need just one backend)."""
    shutil.copyfile(sqlite_template, tmp_path / "tt.sqlite")
    eng = create_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_database) -> Iterator[sa.Engine]:
    """Migrated engine on the session's PostgreSQL database, no rows."""
    eng = pg_database.migrated()
    yield eng
    eng.dispose()
