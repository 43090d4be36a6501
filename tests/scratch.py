"""Throw-away PostgreSQL databases, for tests and benchmarks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from tt_resources.db.engine import create_engine

# the PostgreSQL server tests and benchmarks make databases on: TT_TEST_PG_URL, default the local cluster
PG_ADMIN_URL = os.environ.get("TT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def scratch_postgres(admin_url: str, prefix: str) -> Iterator[str]:
    """URL (password included) of a new, empty database `<prefix>_<random hex>` on `admin_url`'s server,
    dropped (connections forced off) on exit. sqlalchemy OperationalError when the server is unreachable."""
    admin = create_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # identifiers cannot be bound parameters
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
