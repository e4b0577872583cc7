"""Per-message failures on documents, the interchanges received, the outbound payloads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("stage", sa.String(32), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text, nullable=True))
    op.create_table(
        "interchanges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"),
                  nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("sender_id", sa.String(64), nullable=True),
        sa.Column("sender_qualifier", sa.String(8), nullable=True),
        sa.Column("recipient_id", sa.String(64), nullable=True),
        sa.Column("control_ref", sa.String(64), nullable=False),
        sa.Column("prepared", sa.String(32), nullable=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_interchanges_partner_ref", "interchanges", ["partner_id", "control_ref"])
    op.create_index("ix_interchanges_transmission", "interchanges", ["transmission_id"])
    op.create_table(
        "outbound",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"),
                  nullable=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_outbound_status", "outbound", ["status", "created_at"])
    op.create_index("ix_outbound_transmission", "outbound", ["transmission_id"])


def downgrade() -> None:
    op.drop_table("outbound")
    op.drop_table("interchanges")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("reason")
        batch.drop_column("stage")
