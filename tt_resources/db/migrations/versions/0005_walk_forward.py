"""walk-forward folds, seeds and significance

tt_model: a walk-forward model (config x dataset, the row tt_eval scores) has no group_id; its folds' models
name it in group_id and carry fold, seed and their test window (test_start, test_end) beside the training
span. tt_eval: `window` becomes `fold` (-1 = stitched over the folds); rows carry the PPO seed (-1 = none, or
the mean over seeds), the fold's model, and the significance columns (probabilistic and deflated Sharpe
ratios, the Sharpe ratio's confidence interval across seeds, the number of configurations tried).
Existing evaluation rows keep their numbers under seed -1.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import tt_resources.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SIGNIFICANCE = ("psr", "dsr", "sharpe_ci_low", "sharpe_ci_high")


def upgrade() -> None:
    with op.batch_alter_table("tt_model") as batch:
        batch.add_column(sa.Column("group_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("fold", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("test_start", tt_resources.db.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("test_end", tt_resources.db.types.UTCDateTime(timezone=True), nullable=True))
        batch.create_index("ix_tt_model_group", ["group_id", "fold", "seed"], unique=False)
    op.drop_index("ix_tt_eval_model", table_name="tt_eval")
    with op.batch_alter_table("tt_eval") as batch:
        batch.alter_column("window", new_column_name="fold", existing_type=sa.Integer(), existing_nullable=False)
        batch.add_column(sa.Column("seed", sa.BigInteger(), nullable=False, server_default="-1"))
        batch.add_column(sa.Column("fold_model_id", sa.String(length=64), nullable=True))
        for name in SIGNIFICANCE:
            batch.add_column(sa.Column(name, sa.Float(precision=53), nullable=True))
        batch.add_column(sa.Column("n_trials", sa.Integer(), nullable=True))
    op.create_index("ix_tt_eval_model", "tt_eval", ["model_id", "policy", "fold", "seed"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tt_eval_model", table_name="tt_eval")
    with op.batch_alter_table("tt_eval") as batch:
        batch.drop_column("n_trials")
        for name in reversed(SIGNIFICANCE):
            batch.drop_column(name)
        batch.drop_column("fold_model_id")
        batch.drop_column("seed")
        batch.alter_column("fold", new_column_name="window", existing_type=sa.Integer(), existing_nullable=False)
    op.create_index("ix_tt_eval_model", "tt_eval", ["model_id", "policy", "window"], unique=False)
    with op.batch_alter_table("tt_model") as batch:
        batch.drop_index("ix_tt_model_group")
        batch.drop_column("test_end")
        batch.drop_column("test_start")
        batch.drop_column("seed")
        batch.drop_column("fold")
        batch.drop_column("group_id")
