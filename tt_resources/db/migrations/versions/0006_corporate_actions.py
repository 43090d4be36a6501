"""corporate actions and accepted holes

- tt_corporate_action: splits (one exact price ratio, volume inverse) and revisions of stored bars, found by
  comparing the re-read overlap of each fetch with what the source serves now.
- tt_fetch_hole: accepted_at and note, a hole a user accepted as empty (a trading suspension): never
  retried, and coverage counts its bars as expected-empty.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import tt_resources.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = tt_resources.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tt_corporate_action",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=True),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("first_session", UTC, nullable=False),
        sa.Column("detected_at", UTC, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tt_corporate_action_symbol", "tt_corporate_action", ["symbol", "first_session"])
    with op.batch_alter_table("tt_fetch_hole") as batch:
        batch.add_column(sa.Column("accepted_at", UTC, nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tt_fetch_hole") as batch:
        batch.drop_column("note")
        batch.drop_column("accepted_at")
    op.drop_index("ix_tt_corporate_action_symbol", table_name="tt_corporate_action")
    op.drop_table("tt_corporate_action")
