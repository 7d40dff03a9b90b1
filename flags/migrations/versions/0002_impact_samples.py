"""impact metrics the SDKs send

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "impact_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("app_name", sa.String(length=200), nullable=True),
        sa.Column("instance_id", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("count", sa.Float(), nullable=True),
        sa.Column("sum", sa.Float(), nullable=True),
        sa.Column("buckets", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("impact_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_impact_samples_time"), ["time"], unique=False)
        batch_op.create_index(batch_op.f("ix_impact_samples_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("impact_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_impact_samples_name"))
        batch_op.drop_index(batch_op.f("ix_impact_samples_time"))
    op.drop_table("impact_samples")
