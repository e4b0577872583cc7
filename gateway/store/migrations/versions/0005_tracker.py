"""The tracker: ERP acknowledgements, alerts, the event outbox, reprocessing links, retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("documents") as b:
        b.add_column(sa.Column("erp_status", sa.String(16), nullable=True))
        b.add_column(sa.Column("erp_at", TZ, nullable=True))
        b.add_column(sa.Column("erp_reason", sa.Text, nullable=True))
    op.create_index("ix_documents_status_published", "documents", ["status", "published_at"])
    with op.batch_alter_table("transmissions") as b:
        b.add_column(sa.Column("reprocess_of", sa.String(32), nullable=True))
        b.add_column(sa.Column("requested_by", sa.String(128), nullable=True))
        b.add_column(sa.Column("request_reason", sa.Text, nullable=True))
        b.add_column(sa.Column("purged_at", TZ, nullable=True))
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("opened_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
        sa.Column("acknowledged_at", TZ, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("mailed_at", TZ, nullable=True),
    )
    op.create_index("ix_alerts_key_status", "alerts", ["key", "status"])
    op.create_index("ix_alerts_status", "alerts", ["status", "opened_at"])
    op.create_index("ix_alerts_partner", "alerts", ["partner_id", "opened_at"])
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("published_at", TZ, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_event_outbox_pending", "event_outbox", ["published_at", "id"])
    op.create_table(
        "erp_acks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("document_id", sa.String(32), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("acked_at", TZ, nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_erp_acks_document", "erp_acks", ["document_id"])


def downgrade() -> None:
    op.drop_table("erp_acks")
    op.drop_table("event_outbox")
    op.drop_table("alerts")
    op.drop_index("ix_documents_status_published", "documents")
    with op.batch_alter_table("transmissions") as b:
        for c in ("purged_at", "request_reason", "requested_by", "reprocess_of"):
            b.drop_column(c)
    with op.batch_alter_table("documents") as b:
        for c in ("erp_reason", "erp_at", "erp_status"):
            b.drop_column(c)
