"""The manager page: forecasts per partner, month and currency; the rollup of document
values (orders and invoices), its sums per day and its coverage; documents indexed by type
and time.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_documents_type_created", "documents", ["doc_type", "created_at"])
    op.create_table(
        "forecasts",
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("amount", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_forecasts_month", "forecasts", ["month"])
    op.create_table(
        "document_values",
        sa.Column("document_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("week", sa.Date, nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("doc_type", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("currency", sa.String(16), nullable=True),
        sa.Column("amount_e4", sa.BigInteger, nullable=False),
        sa.Column("counted", sa.Boolean, nullable=False),
        sa.Column("settled", sa.Boolean, nullable=False),
    )
    op.create_index("ix_document_values_day", "document_values", ["day", "partner_id"])
    op.create_index("ix_document_values_settled", "document_values", ["settled"])
    op.create_table(
        "document_value_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("doc_type", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(3), primary_key=True),
        sa.Column("format", sa.String(16), primary_key=True),
        sa.Column("currency", sa.String(16), primary_key=True),
        sa.Column("week", sa.Date, nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("amount_e4", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "document_values_coverage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("covered_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("covered_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("document_values_coverage")
    op.drop_table("document_value_days")
    op.drop_index("ix_document_values_settled", table_name="document_values")
    op.drop_index("ix_document_values_day", table_name="document_values")
    op.drop_table("document_values")
    op.drop_index("ix_forecasts_month", table_name="forecasts")
    op.drop_table("forecasts")
    op.drop_index("ix_documents_type_created", table_name="documents")
