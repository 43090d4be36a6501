"""market data trust: fetch holes, bar quarantine, the shared IBKR pacing ledger, unknown volume

- tt_fetch_hole: spans of a partition the source did not deliver (IBKR "no data" mid-history, a walk that
  failed part-way); later runs retry the open ones.
- tt_bar_quarantine: bars a source sent that break a bar rule (e.g. high < low), kept out of tt_prices.
- tt_ib_request / tt_ib_pacing: one IBKR pacing budget for every process sharing the database.
- tt_prices.volume becomes nullable: NULL is an unknown volume (IBKR sends -1).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import tt_resources.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = tt_resources.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tt_bar_quarantine",
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("ts", UTC, nullable=False),
        *(sa.Column(name, sa.Float(precision=53), nullable=True) for name in ("open", "high", "low", "close", "volume", "wap")),
        sa.Column("bar_count", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("quarantined_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts"),
    )
    op.create_table(
        "tt_fetch_hole",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("start_ts", UTC, nullable=False),
        sa.Column("end_ts", UTC, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("found_at", UTC, nullable=False),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tt_fetch_hole_partition", "tt_fetch_hole", ["symbol", "timeframe", "resolved_at"])
    op.create_table(
        "tt_ib_request",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tt_ib_request_sent", "tt_ib_request", ["sent_at"])
    op.create_table(
        "tt_ib_pacing",
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("concurrency", sa.Float(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("decreased_at", sa.Float(), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("mode"),
    )
    with op.batch_alter_table("tt_prices") as batch:
        batch.alter_column("volume", existing_type=sa.Float(precision=53), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM tt_prices WHERE volume IS NULL")
    with op.batch_alter_table("tt_prices") as batch:
        batch.alter_column("volume", existing_type=sa.Float(precision=53), nullable=False)
    op.drop_table("tt_ib_pacing")
    op.drop_index("ix_tt_ib_request_sent", table_name="tt_ib_request")
    op.drop_table("tt_ib_request")
    op.drop_index("ix_tt_fetch_hole_partition", table_name="tt_fetch_hole")
    op.drop_table("tt_fetch_hole")
    op.drop_table("tt_bar_quarantine")
