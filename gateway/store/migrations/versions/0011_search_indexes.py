"""Indexes for "where is order X" and the one search: every lookup of a number, a file name,
an interchange reference or an AS2 Message-ID, and every piece of evidence explain reads,
is an index seek (no scan over transmissions or documents at a million rows).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: (index, table, columns or expressions): kept in step with ``gateway/store/schema.py``.
_INDEXES: list[tuple[str, str, list[str]]] = [
    # A number or file name in any case: one lookup (lower(x) = lower(q)), the partner beside.
    ("ix_documents_number_ci", "documents", ["lower(business_number)", "partner_id"]),
    ("ix_transmissions_filename_ci", "transmissions", ["lower(filename)", "partner_id"]),
    # "Never received": a partner's (or nobody's) failed files, and its last contact per
    # channel, newest first.
    ("ix_transmissions_partner_status", "transmissions", ["partner_id", "status",
                                                          "received_at"]),
    ("ix_transmissions_partner_channel", "transmissions", ["partner_id", "direction",
                                                           "channel", "received_at"]),
    # An interchange reference without a partner; a partner's references around a date.
    ("ix_interchanges_control_ref", "interchanges", ["control_ref"]),
    ("ix_interchanges_partner_received", "interchanges", ["partner_id", "received_at"]),
    # An AS2 Message-ID received; a document's delivery (outbound row by document).
    ("ix_as2_messages_message_id", "as2_messages", ["message_id"]),
    ("ix_outbound_document", "outbound", ["document_id"]),
    ("ix_outbound_control_ref_only", "outbound", ["control_ref"]),
]


#: Reprocess attempts and repeats of a transmission (every explanation tells them): partial
#: indexes of the few rows that are, so that statistics show them selective.
_PARTIAL = [("ix_transmissions_reprocess_of", "reprocess_of"),
            ("ix_transmissions_duplicate_of", "duplicate_of")]


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, [sa.text(c) if "(" in c else c for c in columns])
    for name, column in _PARTIAL:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "transmissions", [column], postgresql_where=where,
                        sqlite_where=where)


def downgrade() -> None:
    for name, _ in reversed(_PARTIAL):
        op.drop_index(name, table_name="transmissions")
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
