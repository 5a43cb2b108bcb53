"""Snapshots of the cluster's objects at a stream position, so time travel folds only the events after one.

A snapshot of one kind is several rows (chunks of objects), so a large cluster's snapshot
stays far below PostgreSQL's limit on one jsonb value.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False, server_default="0"),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("objects", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("kind", "position", "chunk"),
    )


def downgrade() -> None:
    op.drop_table("snapshots")
