"""Alembic environment: runs online on the connection handed in by tt_resources.db.migrate.upgrade (which
holds the migration lock and commits), else in a transaction of the engine it hands in (or the default one)."""

import sqlalchemy as sa
from alembic import context

from tt_resources.db.engine import create_engine
from tt_resources.db.schema import metadata


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    with (context.config.attributes.get("engine") or create_engine()).begin() as connection:
        run_migrations(connection)
