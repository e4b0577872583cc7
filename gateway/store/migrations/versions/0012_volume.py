"""The index the console's "last contact per partner and channel" seeks in: one probe per
partner and channel at the end of (partner, channel, direction, received_at), instead of
reading every transmission of the partner.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transmissions_partner_channel", "transmissions",
                    ["partner_id", "channel", "direction", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_transmissions_partner_channel", table_name="transmissions")
