"""Trust: start-up attempts of a transmission, content digests and conflicts of documents.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transmissions") as t:
        t.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("documents") as d:
        d.add_column(sa.Column("content_sha", sa.String(64), nullable=True))
        d.add_column(sa.Column("conflict_of", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as d:
        d.drop_column("conflict_of")
        d.drop_column("content_sha")
    with op.batch_alter_table("transmissions") as t:
        t.drop_column("attempts")
