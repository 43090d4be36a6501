"""Shared fixtures: real SQLite files and a real PostgreSQL database per test session.

PostgreSQL comes from TT_TEST_PG_URL (default: the local cluster as user postgres). Each pytest session
creates its own database and drops it at the end. When CI=true an unreachable server fails the
PostgreSQL tests instead of skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from tests.scratch import PG_ADMIN_URL, scratch_postgres
from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import upgrade

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


def _fresh_pg(url: str) -> sa.Engine:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    return engine


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a fresh SQLite file in the test's tmp dir (schema not yet created)."""
    return f"sqlite:///{tmp_path / 'tt.sqlite'}"


@pytest.fixture
def pg_url(pg_server_url) -> str:
    """URL of the session's PostgreSQL database, emptied (schema not yet created)."""
    _fresh_pg(pg_server_url).dispose()
    return pg_server_url


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """Fresh empty database URL, once per backend (SQLite file, PostgreSQL)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url) -> Iterator[sa.Engine]:
    """Migrated engine on a fresh database, once per backend."""
    eng = create_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url) -> Iterator[sa.Engine]:
    """Migrated engine on a fresh SQLite file (for tests that need just one backend)."""
    eng = create_engine(sqlite_url)
    upgrade(eng)
    yield eng
    eng.dispose()
