"""skill against the best baseline and the verdict

tt_eval gains the agent's excess returns over the best baseline of its folds (chosen on the training spans):
their annualised Sharpe ratio, PSR and DSR, and which baseline(s); the range of the seeds' Sharpe ratios; the
verdict line. `sharpe_ci_low/high` now hold the Sharpe ratio's sampling interval over time (Lo 2002 /
Mertens 2002), no longer an interval across seeds; existing rows keep their numbers.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NUMBERS = ("sharpe_vs_best", "psr_vs_best", "dsr_vs_best", "sharpe_seed_min", "sharpe_seed_max")


def upgrade() -> None:
    with op.batch_alter_table("tt_eval") as batch:
        for name in NUMBERS:
            batch.add_column(sa.Column(name, sa.Float(precision=53), nullable=True))
        batch.add_column(sa.Column("best_baseline", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("verdict", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tt_eval") as batch:
        batch.drop_column("verdict")
        batch.drop_column("best_baseline")
        for name in reversed(NUMBERS):
            batch.drop_column(name)
