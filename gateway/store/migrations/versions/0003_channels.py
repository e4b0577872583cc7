"""Channel health, and the remote files a channel leaves in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channel_health",
        sa.Column("channel", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("last_attempt_at", TZ, nullable=True),
        sa.Column("last_success_at", TZ, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "remote_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime", sa.BigInteger, nullable=False),
        sa.Column("transmission_id", sa.String(32), nullable=True),
        sa.Column("seen_at", TZ, nullable=False),
    )
    op.create_index("ix_remote_files_key", "remote_files",
                    ["channel", "path", "size", "mtime"], unique=True)


def downgrade() -> None:
    op.drop_table("remote_files")
    op.drop_table("channel_health")
