"""The image index: tags with their digests and platforms, and each registry's reachability.

Repositories are the distinct `repository` values of `image_tags`; a digest is found by the tag
row naming it or by a platform entry in its `platforms` (the manifests an index lists).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_tags",
        sa.Column("registry", sa.Text, nullable=False),
        sa.Column("repository", sa.Text, nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, server_default=""),
        sa.Column("media_type", sa.Text, nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("platforms", JSONB, nullable=False, server_default="[]"),
        sa.Column("problem", sa.Text, nullable=False, server_default=""),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("registry", "repository", "tag"),
    )
    op.create_index("image_tags_repository", "image_tags", ["repository", "tag"])
    op.create_index("image_tags_digest", "image_tags", ["digest"])
    op.create_table(
        "registries",
        sa.Column("registry", sa.Text, primary_key=True),
        sa.Column("reachable", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registries")
    op.drop_table("image_tags")
