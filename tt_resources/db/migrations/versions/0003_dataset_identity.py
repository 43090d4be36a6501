"""dataset identity: content + split + feature set

A tt_dataset row is one training dataset: the panel's content hash (`content_version`, which covers the
feature set) and the test split (`test_fraction`, `split_ts`). `dataset_version` hashes all of them, so
the same bars split differently are two datasets.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tt_dataset") as batch:
        batch.add_column(sa.Column("content_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("test_fraction", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tt_dataset") as batch:
        batch.drop_column("test_fraction")
        batch.drop_column("content_version")
