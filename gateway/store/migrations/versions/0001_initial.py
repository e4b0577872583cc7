"""Transmissions, their events, documents and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "transmissions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("channel_ref", sa.String(1024), nullable=True),
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("filename", sa.String(512), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("acknowledged_at", TZ, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("standard", sa.String(64), nullable=True),
        sa.Column("document_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("duplicate_of", sa.String(32), nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_transmissions_sha256", "transmissions", ["sha256"])
    op.create_index("ix_transmissions_received_at", "transmissions", ["received_at"])
    op.create_index("ix_transmissions_status", "transmissions", ["status"])
    op.create_index("ix_transmissions_partner", "transmissions", ["partner_id", "received_at"])

    op.create_table(
        "transmission_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_transmission_events_tid", "transmission_events", ["transmission_id", "id"])

    op.create_table(
        "documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("doc_type", sa.String(32), nullable=False),
        sa.Column("schema_version", sa.String(32), nullable=False),
        sa.Column("business_number", sa.String(128), nullable=True),
        sa.Column("interchange_ref", sa.String(64), nullable=True),
        sa.Column("message_ref", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("published_at", TZ, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_documents_business", "documents", ["partner_id", "doc_type", "business_number"])
    op.create_index("ix_documents_business_number", "documents", ["business_number"])
    op.create_index("ix_documents_interchange", "documents", ["interchange_ref"])
    op.create_index("ix_documents_message_ref", "documents", ["message_ref"])
    op.create_index("ix_documents_message_id", "documents", ["message_id"])
    op.create_index("ix_documents_transmission", "documents", ["transmission_id", "status"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(32), sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_outbox_document", "outbox", ["document_id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("documents")
    op.drop_table("transmission_events")
    op.drop_table("transmissions")
