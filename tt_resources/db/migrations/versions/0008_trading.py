"""trading: production models, the champion, targets, orders, fills, positions, the kill switch, live vs shadow

- tt_model.production_of: a production model (trained on the whole history) names the walk-forward model
  whose evaluation justifies it.
- tt_promotion: every promotion and demotion of a timeframe's champion (who, when, why, previous, forced).
- tt_target: target weights decided after a session's close; tt_order: every order and its life at the
  broker; tt_fill: executions and commissions; tt_position: the reconciled account per session.
- tt_trading_halt: the kill switch's history; tt_live_performance: live against the shadow backtest.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tt_resources.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC = tt_resources.db.types.UTCDateTime(timezone=True)
PRICE = sa.Float(precision=53)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tt_model") as batch:
        batch.add_column(sa.Column("production_of", sa.String(length=64), nullable=True))
    op.create_table(
        "tt_promotion",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=True),
        sa.Column("previous_model_id", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.Text(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("who", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tt_promotion_timeframe", "tt_promotion", ["timeframe", "at"])
    op.create_table(
        "tt_target",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("decision_ts", UTC, nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("weight", PRICE, nullable=False),
        sa.Column("close", PRICE, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "decision_ts", "symbol"),
    )
    op.create_index("ix_tt_target_session", "tt_target", ["session", "model_id"])
    op.create_table(
        "tt_order",
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("decided_session", sa.Date(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reference_price", PRICE, nullable=False),
        sa.Column("notional", PRICE, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("broker_order_id", sa.BigInteger(), nullable=True),
        sa.Column("perm_id", sa.BigInteger(), nullable=True),
        sa.Column("filled", PRICE, nullable=False),
        sa.Column("avg_fill_price", PRICE, nullable=True),
        sa.Column("messages", JSON, nullable=False),
        sa.Column("limit_checks", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("submitted_at", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("order_ref"),
    )
    op.create_index("ix_tt_order_session", "tt_order", ["session", "model_id"])
    op.create_table(
        "tt_fill",
        sa.Column("exec_id", sa.String(length=64), nullable=False),
        sa.Column("order_ref", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("shares", PRICE, nullable=False),
        sa.Column("price", PRICE, nullable=False),
        sa.Column("commission", PRICE, nullable=True),
        sa.Column("time", UTC, nullable=False),
        sa.Column("recorded_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("exec_id"),
    )
    op.create_index("ix_tt_fill_order", "tt_fill", ["order_ref"])
    op.create_table(
        "tt_position",
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("shares", PRICE, nullable=False),
        sa.Column("price", PRICE, nullable=True),
        sa.Column("value", PRICE, nullable=False),
        sa.Column("as_of", UTC, nullable=False),
        sa.PrimaryKeyConstraint("account", "session", "symbol"),
    )
    op.create_table(
        "tt_trading_halt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("who", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tt_live_performance",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Date(), nullable=False),
        sa.Column("live_return", PRICE, nullable=True),
        sa.Column("shadow_return", PRICE, nullable=True),
        sa.Column("slippage_bps", PRICE, nullable=True),
        sa.Column("costs", PRICE, nullable=True),
        sa.Column("shadow_costs", PRICE, nullable=True),
        sa.Column("missed_fills", sa.Integer(), nullable=True),
        sa.Column("tracking_error", PRICE, nullable=True),
        sa.Column("live_equity", PRICE, nullable=True),
        sa.Column("shadow_equity", PRICE, nullable=True),
        sa.Column("details", JSON, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "session"),
    )


def downgrade() -> None:
    op.drop_table("tt_live_performance")
    op.drop_table("tt_trading_halt")
    op.drop_table("tt_position")
    op.drop_index("ix_tt_fill_order", table_name="tt_fill")
    op.drop_table("tt_fill")
    op.drop_index("ix_tt_order_session", table_name="tt_order")
    op.drop_table("tt_order")
    op.drop_index("ix_tt_target_session", table_name="tt_target")
    op.drop_table("tt_target")
    op.drop_index("ix_tt_promotion_timeframe", table_name="tt_promotion")
    op.drop_table("tt_promotion")
    with op.batch_alter_table("tt_model") as batch:
        batch.drop_column("production_of")
