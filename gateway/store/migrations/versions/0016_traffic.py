"""The manager's rollups: document values per week (filled from the per-day sums held);
inbound transmissions and documents per day and partner, the days held and the coverage;
transmissions indexed by ``updated_at`` (what changed); the unsettled documents and rollup rows
indexed apart (partial indexes: a refresh reads their ids without reading their rows).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


UNSETTLED = "status IN ('CONFLICT', 'HELD')"


def upgrade() -> None:
    op.create_index("ix_documents_unsettled", "documents", ["id"],
                    postgresql_where=sa.text(UNSETTLED), sqlite_where=sa.text(UNSETTLED))
    op.create_index("ix_document_values_unsettled", "document_values", ["document_id"],
                    postgresql_where=sa.text("settled = false"),
                    sqlite_where=sa.text("settled = 0"))
    op.create_table(
        "document_value_weeks",
        sa.Column("week", sa.Date, primary_key=True),
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("doc_type", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(3), primary_key=True),
        sa.Column("format", sa.String(16), primary_key=True),
        sa.Column("currency", sa.String(16), primary_key=True),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("amount_e4", sa.BigInteger, nullable=False),
    )
    # The Monday's month is the least of its days' months.
    op.execute("INSERT INTO document_value_weeks (week, partner_id, doc_type, direction, "
               "format, currency, month, documents, amount_e4) SELECT week, partner_id, "
               "doc_type, direction, format, currency, MIN(month), SUM(documents), "
               "SUM(amount_e4) FROM document_value_days "
               "GROUP BY week, partner_id, doc_type, direction, format, currency")
    op.create_index("ix_transmissions_updated_at", "transmissions", ["updated_at"])
    op.create_table(
        "traffic_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("transmissions", sa.Integer, nullable=False),
        sa.Column("documents", sa.BigInteger, nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "traffic_days_held",
        sa.Column("day", sa.Date, primary_key=True),
    )
    op.create_table(
        "traffic_coverage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("traffic_coverage")
    op.drop_table("traffic_days_held")
    op.drop_table("traffic_days")
    op.drop_index("ix_transmissions_updated_at", table_name="transmissions")
    op.drop_table("document_value_weeks")
    op.drop_index("ix_document_values_unsettled", table_name="document_values")
    op.drop_index("ix_documents_unsettled", table_name="documents")
