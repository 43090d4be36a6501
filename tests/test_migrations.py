"""Migrations create the whole schema from empty, idempotently, on both backends."""

import sqlalchemy as sa

from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import current_revision, upgrade
from tt_resources.db.schema import TABLES


def test_upgrade_from_empty_is_idempotent(db_url):
    engine = create_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == "0001"
    assert set(TABLES) <= set(sa.inspect(engine).get_table_names())


def test_migrated_schema_matches_metadata(engine):
    """Autogenerate finds no difference between the migrations and the SQLAlchemy schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tt_resources.db.schema import metadata

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
