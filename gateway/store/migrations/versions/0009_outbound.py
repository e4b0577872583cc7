"""Outbound documents: the direction of a transmission, delivery receipts and retries,
interchange control references per partner, and the price lists partners hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transmissions") as t:
        t.add_column(sa.Column("direction", sa.String(3), nullable=False, server_default="in"))
        t.create_index("ix_transmissions_direction", ["direction", "received_at"])
    where = sa.text("direction = 'out' AND channel_ref IS NOT NULL AND reprocess_of IS NULL")
    op.create_index("ux_transmissions_outbound_ref", "transmissions", ["channel", "channel_ref"],
                    unique=True, postgresql_where=where, sqlite_where=where)
    with op.batch_alter_table("outbound") as o:
        o.add_column(sa.Column("document_id", sa.String(32), nullable=True))
        o.add_column(sa.Column("mapping", sa.String(64), nullable=True))
        o.add_column(sa.Column("control_ref", sa.String(14), nullable=True))
        o.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        o.add_column(sa.Column("remote_id", sa.String(998), nullable=True))
        o.add_column(sa.Column("receipt", sa.Text, nullable=True))
        o.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        o.create_index("ix_outbound_control_ref", ["partner_id", "control_ref"])
        o.create_index("ix_outbound_remote_id", ["remote_id"])
    op.create_table(
        "control_refs",
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "price_list_holdings",
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("list_id", sa.String(128), primary_key=True),
        sa.Column("sent_number", sa.String(128), nullable=True),
        sa.Column("sent_sha", sa.String(64), nullable=True),
        sa.Column("sent_transmission", sa.String(32), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held_number", sa.String(128), nullable=True),
        sa.Column("held_sha", sa.String(64), nullable=True),
        sa.Column("held_transmission", sa.String(32), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("price_list_holdings")
    op.drop_table("control_refs")
    with op.batch_alter_table("outbound") as o:
        o.drop_index("ix_outbound_remote_id")
        o.drop_index("ix_outbound_control_ref")
        for name in ("delivered_at", "receipt", "remote_id", "next_attempt_at", "control_ref",
                     "mapping", "document_id"):
            o.drop_column(name)
    op.drop_index("ux_transmissions_outbound_ref", "transmissions")
    with op.batch_alter_table("transmissions") as t:
        t.drop_index("ix_transmissions_direction")
        t.drop_column("direction")
