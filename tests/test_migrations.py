"""Migrations create the whole schema from empty, idempotently, on both backends."""

import sqlalchemy as sa
from alembic import command

from tt_resources.db.engine import create_engine
from tt_resources.db.migrate import alembic_config, current_revision, upgrade
from tt_resources.db.schema import TABLES


def test_upgrade_from_empty_is_idempotent(db_url):
    engine = create_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == "0008"
    assert set(TABLES) <= set(sa.inspect(engine).get_table_names())


def test_0002_drops_step_log_foreign_keys_and_keeps_the_rows(db_url):
    engine = create_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tt_episode (episode_id, split, policy, status, started_at, steps) "
                "VALUES ('e1', 'train', 'ppo', 'running', '2026-01-02 00:00:00', 1)"
            )
        )
        conn.execute(sa.text("INSERT INTO tt_reward (episode_id, step, reward) VALUES ('e1', 0, 0.5)"))
    step_tables = ("tt_action", "tt_reward", "tt_portfolio", "tt_holdings")
    assert all(sa.inspect(engine).get_foreign_keys(t) for t in step_tables)
    upgrade(engine)
    assert not any(sa.inspect(engine).get_foreign_keys(t) for t in step_tables)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT episode_id, step, reward FROM tt_reward")).all() == [
            ("e1", 0, 0.5)
        ]
    command.downgrade(alembic_config(engine), "0001")
    assert all(sa.inspect(engine).get_foreign_keys(t) for t in step_tables)
    engine.dispose()


def test_migrated_schema_matches_metadata(engine):
    """Autogenerate finds no difference between the migrations and the SQLAlchemy schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tt_resources.db.schema import metadata

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_0005_renames_window_to_fold_and_keeps_the_rows(db_url):
    engine = create_engine(db_url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO tt_eval (model_id, timeframe, policy, "window", test_start, test_end, sharpe, '
                "created_at) VALUES ('m1', '1d', 'ppo', -1, '2026-01-02 00:00:00', '2026-02-02 00:00:00', 1.5, "
                "'2026-03-01 00:00:00')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT model_id, fold, seed, sharpe, psr FROM tt_eval")).all() == [
            ("m1", -1, -1, 1.5, None)
        ]
    command.downgrade(alembic_config(engine), "0003")
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT "window", sharpe FROM tt_eval')).all() == [(-1, 1.5)]
    engine.dispose()
