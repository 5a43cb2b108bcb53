"""The command record becomes an audit trail: a summary of each change and a hash chained over the previous entry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("commands", sa.Column("summary", sa.Text, nullable=False, server_default=""))
    op.add_column("commands", sa.Column("hash", sa.Text, nullable=False, server_default=""))
    op.add_column("commands", sa.Column("prev_hash", sa.Text, nullable=False, server_default=""))
    # seq is the log's sequence, never generated here; 0001 left it a bigserial, and the shared
    # sequence made a rebuild's `CREATE TABLE ... (LIKE commands INCLUDING ALL)` undroppable.
    op.alter_column("commands", "seq", server_default=None)
    op.execute("DROP SEQUENCE IF EXISTS commands_seq_seq")


def downgrade() -> None:
    for column in ("prev_hash", "hash", "summary"):
        op.drop_column("commands", column)
