"""Client users bound to a partner, and password resets by an e-mailed one-time link.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as u:
        u.add_column(sa.Column("partner_id", sa.String(64), nullable=True))
        u.create_index("ix_users_partner", ["partner_id"])
    op.create_table(
        "password_resets",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remote", sa.String(128), nullable=True),
    )
    op.create_index("ix_password_resets_user", "password_resets", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_password_resets_user", table_name="password_resets")
    op.drop_table("password_resets")
    with op.batch_alter_table("users") as u:
        u.drop_index("ix_users_partner")
        u.drop_column("partner_id")
