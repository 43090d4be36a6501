"""Alembic environment: runs online against the engine handed in by tt_resources.db.migrate."""

from alembic import context

from tt_resources.db.engine import create_engine
from tt_resources.db.schema import metadata

engine = context.config.attributes.get("engine") or create_engine()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
