"""Read models for deployments, pods, nodes, the command record, and projection checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def resource_columns() -> list[sa.Column]:
    return [
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("uid", sa.Text, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("resource_version", sa.BigInteger, nullable=False),
        sa.Column("labels", JSONB, nullable=False),
        sa.Column("object", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("node_name", sa.Text, nullable=False, server_default=""),
        sa.Column("phase", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("namespace", "name"),
    ]


def upgrade() -> None:
    for table in ("deployments", "pods", "nodes"):
        op.create_table(table, *resource_columns())
        op.create_index(f"ix_{table}_labels", table, ["labels"], postgresql_using="gin")
    op.create_index("ix_pods_node_name", "pods", ["node_name"])
    op.create_index("ix_pods_phase", "pods", ["phase"])
    op.create_table(
        "commands",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("command_id", sa.Text, nullable=False),
        sa.Column("time", TS, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("verb", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
    )
    op.create_index("ix_commands_time", "commands", ["time"])
    op.create_index("ix_commands_actor", "commands", ["actor"])
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for table in ("projection_checkpoints", "commands", "nodes", "pods", "deployments"):
        op.drop_table(table)
