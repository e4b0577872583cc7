"""Indexes for the console at volume ("last contact per partner and channel" seeks at the
end of 0011's (partner, direction, channel, received_at) instead of reading every
transmission of the partner): the go-live checklist of a partner page reads the ``test`` events from a
partial index instead of every transmission and document of the partner.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transmission_events_test", "transmission_events", ["transmission_id"],
                    sqlite_where=sa.text("event = 'test'"),
                    postgresql_where=sa.text("event = 'test'"))


def downgrade() -> None:
    op.drop_index("ix_transmission_events_test", table_name="transmission_events")
