"""The alerts read model: one row per alert (rule + labels, keyed by fingerprint), firing or resolved.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.Text, primary_key=True),
        sa.Column("alertname", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # 'firing' | 'resolved'
        sa.Column("labels", JSONB, nullable=False, server_default="{}"),
        sa.Column("annotations", JSONB, nullable=False, server_default="{}"),
        sa.Column("value", sa.Float(precision=53), nullable=False, server_default="0"),
        sa.Column("active_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("alerts_state", "alerts", ["state", "alertname"])


def downgrade() -> None:
    op.drop_table("alerts")
