"""step logs without foreign keys

The per-step log tables (tt_action, tt_reward, tt_portfolio, tt_holdings) are append-only and written only
by the episode logger, in the same transaction as (or after) their tt_episode row. Checking the foreign key
per row cost PostgreSQL about as much as storing the row (an RI trigger per row), so it goes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STEP_TABLES = ("tt_action", "tt_reward", "tt_portfolio", "tt_holdings")
# names of the unnamed foreign keys: PostgreSQL's own, and the one given to SQLite's reflected ones
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    for table in STEP_TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch:
            batch.drop_constraint(f"{table}_episode_id_fkey", type_="foreignkey")


def downgrade() -> None:
    for table in STEP_TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch:
            batch.create_foreign_key(
                f"{table}_episode_id_fkey", "tt_episode", ["episode_id"], ["episode_id"], ondelete="CASCADE"
            )
