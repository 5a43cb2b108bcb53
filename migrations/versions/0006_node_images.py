"""The images each node last reported holding (node.images_reported.v1), joined onto the nodes read model.

A table of its own because the reports are an aggregate of their own: a report read before its
node registers (or while it is deregistered) waits here, and a projection rebuild replaying old
reports never moves a row back (`seq` only grows).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_images",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("images", JSONB, nullable=False, server_default="[]"),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_images")
