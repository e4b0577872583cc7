"""AS2 messages and their MDNs, webhook (SMS) messages, security events, certificates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "as2_messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(998), nullable=False),  # without the angle brackets
        sa.Column("partner_id", sa.String(64), nullable=True),  # None: refused before identified
        sa.Column("as2_from", sa.String(128), nullable=False),
        sa.Column("as2_to", sa.String(128), nullable=False),
        sa.Column("transmission_id", sa.String(32), nullable=True),  # None: refused, nothing kept
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("encrypted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("compressed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("algorithms", sa.String(128), nullable=True),  # e.g. "sha256, aes_256_cbc"
        sa.Column("mic", sa.String(256), nullable=True),  # "base64, sha256" as sent in the MDN
        # processed | processed/warning: duplicate-document | processed/error: decryption-failed …
        sa.Column("disposition", sa.String(256), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("mdn_mode", sa.String(8), nullable=False),  # sync | async | none
        sa.Column("mdn_signed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("mdn_url", sa.String(2048), nullable=True),  # Receipt-Delivery-Option
        sa.Column("mdn_archive_key", sa.String(64), nullable=True),  # the MDN as sent
        sa.Column("mdn_content_type", sa.String(256), nullable=True),
        # none (no MDN asked) | sent (sync answer, or async delivered) | pending | failed
        sa.Column("mdn_state", sa.String(16), nullable=False),
        sa.Column("mdn_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("mdn_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mdn_last_error", sa.Text, nullable=True),
        sa.Column("mdn_sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "webhook_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),  # twilio, vonage
        sa.Column("provider_message_id", sa.String(128), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),  # E.164 when it parses
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("transmission_id", sa.String(32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reply", sa.Text, nullable=True),  # what the sender was answered
    )
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),  # sms:twilio, as2 …
        sa.Column("kind", sa.String(64), nullable=False),  # bad-signature, unknown-partner …
        sa.Column("remote", sa.String(128), nullable=True),  # client address
        sa.Column("partner_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(160), primary_key=True),  # "as2:own:<as2 id>", "as2:<partner>:<n>"
        sa.Column("owner", sa.String(64), nullable=False),  # partner id, or "own"
        sa.Column("purpose", sa.String(32), nullable=False),  # as2-signing-encryption …
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("issuer", sa.Text, nullable=True),
        sa.Column("serial", sa.String(128), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),  # sha256 hex
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        # Why the certificate could not be read (then the columns above are empty).
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_as2_messages_key", "as2_messages", ["as2_from", "as2_to", "message_id"], unique=True)
    op.create_index("ix_as2_messages_mdn", "as2_messages", ["mdn_state", "mdn_next_at"])
    op.create_index("ix_webhook_messages_key", "webhook_messages", ["provider", "provider_message_id"], unique=True)
    op.create_index("ix_security_events_at", "security_events", ["at"])


def downgrade() -> None:
    op.drop_table("certificates")
    op.drop_table("security_events")
    op.drop_table("webhook_messages")
    op.drop_table("as2_messages")
