"""Tables of the store (SQLAlchemy Core), the same for SQLite and PostgreSQL.

Migrations under ``migrations/versions`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.core.status import (  # noqa: F401  (re-exported for the rooms that read them here)
    DOCUMENT_STATUSES,
    INTERCHANGE_STATUSES,
    OUTBOUND_STATUSES,
    ROLES,
    TRANSMISSION_STATUSES,
    AlertState,
    DocumentStatus,
    ErpStatus,
    InterchangeStatus,
    OutboundStatus,
    Role,
    TransmissionStatus,
)

metadata = sa.MetaData()

# Statuses are owned by the inner ring (gateway.core.status); these names are kept for the
# rooms and tests that read them from the schema.
RECEIVED = TransmissionStatus.RECEIVED
PROCESSED = TransmissionStatus.PROCESSED
PUBLISHED = TransmissionStatus.PUBLISHED
FAILED = TransmissionStatus.FAILED
QUARANTINED = TransmissionStatus.QUARANTINED
DUPLICATE = TransmissionStatus.DUPLICATE
PARTIAL = TransmissionStatus.PARTIAL
HELD = TransmissionStatus.HELD

PENDING = DocumentStatus.PENDING
DOC_PUBLISHED = DocumentStatus.PUBLISHED
UNROUTABLE = DocumentStatus.UNROUTABLE
DOC_DUPLICATE = DocumentStatus.DUPLICATE
DOC_FAILED = DocumentStatus.FAILED
DOC_UNSUPPORTED = DocumentStatus.UNSUPPORTED
DOC_HELD = DocumentStatus.HELD
DOC_CONFLICT = DocumentStatus.CONFLICT
DOC_REJECTED = DocumentStatus.REJECTED

IC_ACCEPTED = InterchangeStatus.ACCEPTED
IC_REJECTED = InterchangeStatus.REJECTED

OUT_PENDING = OutboundStatus.PENDING
OUT_SENT = OutboundStatus.SENT
OUT_FAILED = OutboundStatus.FAILED
OUT_DELIVERED = OutboundStatus.DELIVERED

transmissions = sa.Table(
    "transmissions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("channel_ref", sa.String(1024), nullable=True),  # e.g. inbox path of the file
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Column("filename", sa.String(512), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(32), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("format", sa.String(32), nullable=True),
    sa.Column("standard", sa.String(64), nullable=True),
    sa.Column("document_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("duplicate_of", sa.String(32), nullable=True),
    # A reprocessing attempt: the transmission it replays (same archived payload), and who
    # asked and why (also on both timelines).
    sa.Column("reprocess_of", sa.String(32), nullable=True),
    sa.Column("requested_by", sa.String(128), nullable=True),
    sa.Column("request_reason", sa.Text, nullable=True),
    # When the raw payload was purged from the archive (retention); metadata stays.
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # How many times processing started on it: one that keeps failing at start-up (a crash,
    # a hang killed by a restart) is marked FAILED after ``[processing] max_attempts``.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The instance (``instances.id``) working on it while RECEIVED: the one that received
    # it, or the one that took it over from an instance found dead. NULL: nobody yet.
    sa.Column("claimed_by", sa.String(64), nullable=True),
    # "in": received from a partner; "out": a document the ERP (or an operator) sends to a
    # partner, rendered and delivered by edigw (RECEIVED, RENDERED, SENT, DELIVERED, FAILED).
    sa.Column("direction", sa.String(3), nullable=False, server_default="in"),
    sa.Index("ix_transmissions_sha256", "sha256"),
    sa.Index("ix_transmissions_direction", "direction", "received_at"),
    sa.Index("ix_transmissions_received_at", "received_at"),
    sa.Index("ix_transmissions_status", "status"),
    sa.Index("ix_transmissions_partner", "partner_id", "received_at"),
    # What changed since a time: the traffic rollup's days to read again (migration 0016).
    sa.Index("ix_transmissions_updated_at", "updated_at"),
    # What "where is order X" and the one search read (migration 0011).
    # Partial: the few rows that are attempts or repeats (a planner judging by statistics
    # sees them as selective, not as a million NULLs).
    sa.Index("ix_transmissions_reprocess_of", "reprocess_of",
             postgresql_where=sa.text("reprocess_of IS NOT NULL"),
             sqlite_where=sa.text("reprocess_of IS NOT NULL")),
    sa.Index("ix_transmissions_duplicate_of", "duplicate_of",
             postgresql_where=sa.text("duplicate_of IS NOT NULL"),
             sqlite_where=sa.text("duplicate_of IS NOT NULL")),
    sa.Index("ix_transmissions_partner_status", "partner_id", "status", "received_at"),
    sa.Index("ix_transmissions_partner_channel", "partner_id", "direction", "channel",
             "received_at"),
    # The log's search field finds a file by its name; its status filter pages newest first.
    sa.Index("ix_transmissions_filename", "filename"),
    sa.Index("ix_transmissions_status_received", "status", "received_at"),
    # One outbound transmission per message of its source (the ERP's message id …): two
    # instances taking the same redelivered message cannot both record it.
    sa.Index("ux_transmissions_outbound_ref", "channel", "channel_ref", unique=True,
             postgresql_where=sa.text("direction = 'out' AND channel_ref IS NOT NULL "
                                      "AND reprocess_of IS NULL"),
             sqlite_where=sa.text("direction = 'out' AND channel_ref IS NOT NULL "
                                  "AND reprocess_of IS NULL")),
)

sa.Index("ix_transmissions_filename_ci", sa.func.lower(transmissions.c.filename),
         transmissions.c.partner_id)

transmission_events = sa.Table(
    "transmission_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_transmission_events_tid", "transmission_id", "id"),
    # The transmissions received while their partner was in test (the partner page's
    # go-live checklist): a few rows, whatever the volume.
    sa.Index("ix_transmission_events_test", "transmission_id",
             sqlite_where=sa.text("event = 'test'"), postgresql_where=sa.text("event = 'test'")),
)

documents = sa.Table(
    "documents",
    metadata,
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # canonical JSON, UTF-8
    # Why a FAILED or UNSUPPORTED document did not go on (the stage and reason of its message).
    sa.Column("stage", sa.String(32), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    # What the ERP said about a published document (``edi.acks``): ACCEPTED or REJECTED, when,
    # and its reason; NULL while it has said nothing.
    sa.Column("erp_status", sa.String(16), nullable=True),
    sa.Column("erp_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("erp_reason", sa.Text, nullable=True),
    # SHA-256 of the canonical JSON without ids, timestamps and source: two documents are
    # duplicates only when it is equal; the same number with another digest is a conflict.
    sa.Column("content_sha", sa.String(64), nullable=True),
    # A CONFLICT document: the earlier document (same partner, type, number) it differs from.
    sa.Column("conflict_of", sa.String(32), nullable=True),
    sa.Index("ix_documents_business", "partner_id", "doc_type", "business_number"),
    sa.Index("ix_documents_business_number", "business_number"),
    sa.Index("ix_documents_interchange", "interchange_ref"),
    sa.Index("ix_documents_message_ref", "message_ref"),
    sa.Index("ix_documents_message_id", "message_id"),
    sa.Index("ix_documents_transmission", "transmission_id", "status"),
    sa.Index("ix_documents_status_published", "status", "published_at"),
    # The few documents that may still change (the value rollup's unsettled rows, read at
    # each refresh without reading their rows; migration 0016).
    sa.Index("ix_documents_unsettled", "id", postgresql_where=sa.text(
        "status IN ('CONFLICT', 'HELD')"), sqlite_where=sa.text(
        "status IN ('CONFLICT', 'HELD')")),
)
# A number or a file name in any case is one index lookup (migration 0011).
sa.Index("ix_documents_number_ci", sa.func.lower(documents.c.business_number),
         documents.c.partner_id)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document_id", sa.String(32), sa.ForeignKey("documents.id"), nullable=False),
    sa.Column("routing_key", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    # The instance publishing it, until when: others skip it meanwhile (SKIP LOCKED on
    # PostgreSQL when they read; the claim outlives the transaction).
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_outbox_document", "document_id"),
)

# Every interchange received, by partner and control reference (UNB 0020): what the duplicate
# check of a partner's interchange references reads, and what the tracker's gap rules use.
interchanges = sa.Table(
    "interchanges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"), nullable=False),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("sender_id", sa.String(64), nullable=True),
    sa.Column("sender_qualifier", sa.String(8), nullable=True),
    sa.Column("recipient_id", sa.String(64), nullable=True),
    sa.Column("control_ref", sa.String(64), nullable=False),
    sa.Column("prepared", sa.String(32), nullable=True),  # UNB date:time as sent
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_interchanges_partner_ref", "partner_id", "control_ref"),
    sa.Index("ix_interchanges_transmission", "transmission_id"),
    sa.Index("ix_interchanges_control_ref", "control_ref"),
    sa.Index("ix_interchanges_partner_received", "partner_id", "received_at"),
)

# Payloads edigw sends to partners (a CONTRL today; MDNs and mails later): written in the same
# commit as the outcome they answer, delivered afterwards, retried until sent.
outbound = sa.Table(
    "outbound",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("transmission_id", sa.String(32), sa.ForeignKey("transmissions.id"), nullable=True),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # e.g. "contrl"
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # the bytes are in the archive
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),  # where it went (path, URL)
    # A document sent out: its documents row, the outbound mapping that rendered it and the
    # interchange control reference (UNB 0020) it carries, which a CONTRL names.
    sa.Column("document_id", sa.String(32), nullable=True),
    sa.Column("mapping", sa.String(64), nullable=True),
    sa.Column("control_ref", sa.String(14), nullable=True),
    # Retries back off: not tried again before this.
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    # What a later receipt names (the AS2 Message-ID, the mail's Message-ID), the receipt
    # (an MDN's disposition, a CONTRL's verdict) and when the delivery was confirmed.
    sa.Column("remote_id", sa.String(998), nullable=True),
    sa.Column("receipt", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_outbound_status", "status", "created_at"),
    sa.Index("ix_outbound_transmission", "transmission_id"),
    sa.Index("ix_outbound_control_ref", "partner_id", "control_ref"),
    sa.Index("ix_outbound_remote_id", "remote_id"),
    sa.Index("ix_outbound_document", "document_id"),
    sa.Index("ix_outbound_control_ref_only", "control_ref"),
)

# The last interchange control reference given to each partner: the next is last + 1,
# taken in the transaction that records the payload carrying it (gap-free).
control_refs = sa.Table(
    "control_refs",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("last", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Which version of each price list a partner was last sent, and which it holds (its
# delivery confirmed): what "changes only" compares with.
price_list_holdings = sa.Table(
    "price_list_holdings",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("list_id", sa.String(128), primary_key=True),
    sa.Column("sent_number", sa.String(128), nullable=True),
    sa.Column("sent_sha", sa.String(64), nullable=True),  # the full list's canonical JSON
    sa.Column("sent_transmission", sa.String(32), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("held_number", sa.String(128), nullable=True),
    sa.Column("held_sha", sa.String(64), nullable=True),
    sa.Column("held_transmission", sa.String(32), nullable=True),
    sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
)

# The health of each channel (an SFTP server, a mailbox, an inbox folder): what operators see
# in ``edigw channels`` and what the tracker alerts on.
channel_health = sa.Table(
    "channel_health",
    metadata,
    sa.Column("channel", sa.String(128), primary_key=True),  # e.g. "sftp:acme", "imap:mail"
    sa.Column("kind", sa.String(16), nullable=False),  # folder, sftp, imap, smtp, as2 …
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),  # e.g. "3 files taken", "IDLE"
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Remote files a channel leaves in place (SFTP ``after = "leave"``): taken once, remembered
# by name, size and modification time so that they are not taken again.
remote_files = sa.Table(
    "remote_files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(128), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime", sa.BigInteger, nullable=False),
    sa.Column("transmission_id", sa.String(32), nullable=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_remote_files_key", "channel", "path", "size", "mtime", unique=True),
)

# AS2 messages received (RFC 4130) and the MDN each was answered with. One row per
# (partner, Message-ID): a repeated Message-ID is answered as a duplicate from this row,
# without a second transmission. An asynchronous MDN is delivered by the MDN sender, which
# retries with back-off and records each attempt here.
as2_messages = sa.Table(
    "as2_messages",
    metadata,
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
sa.Index("ix_as2_messages_key", as2_messages.c.as2_from, as2_messages.c.as2_to,
         as2_messages.c.message_id, unique=True)
sa.Index("ix_as2_messages_mdn", as2_messages.c.mdn_state, as2_messages.c.mdn_next_at)
sa.Index("ix_as2_messages_message_id", as2_messages.c.message_id)

# Messages taken from webhooks (text-message providers): the provider's message id makes a repeated
# delivery a duplicate; the transmission holds the payload.
webhook_messages = sa.Table(
    "webhook_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(32), nullable=False),  # twilio, vonage
    sa.Column("provider_message_id", sa.String(128), nullable=False),
    sa.Column("sender", sa.String(64), nullable=False),  # E.164 when it parses
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Column("transmission_id", sa.String(32), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reply", sa.Text, nullable=True),  # what the sender was answered
)
sa.Index("ix_webhook_messages_key", webhook_messages.c.provider,
         webhook_messages.c.provider_message_id, unique=True)

# Refused requests worth an operator's eye: forged webhook signatures, AS2 messages that do
# not verify, unknown AS2 ids. Nothing of the request is kept but what identifies it.
security_events = sa.Table(
    "security_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),  # <channel>:<provider>, as2 …
    sa.Column("kind", sa.String(64), nullable=False),  # bad-signature, unknown-partner …
    sa.Column("remote", sa.String(128), nullable=True),  # client address
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
)
sa.Index("ix_security_events_at", security_events.c.at)

# Certificates the gateway holds (its own and its partners'), with their validity, checked at
# start and daily: `edigw channels` shows them, the tracker alerts on expiry.
certificates = sa.Table(
    "certificates",
    metadata,
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

ERP_ACCEPTED = ErpStatus.ACCEPTED
ERP_REJECTED = ErpStatus.REJECTED

ALERT_OPEN = AlertState.OPEN
ALERT_ACKNOWLEDGED = AlertState.ACKNOWLEDGED
ALERT_RESOLVED = AlertState.RESOLVED

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # failure, untransmitted, unroutable, erp-overdue, erp-rejected, gap, silence,
    # volume-drop, duplicate, channel, certificate
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Column("key", sa.String(255), nullable=False),  # the condition, e.g. "gap:acme:1043-1044"
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # one line for people
    sa.Column("detail", sa.Text, nullable=True),  # JSON: the evidence
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("acknowledged_by", sa.String(128), nullable=True),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolved_by", sa.String(128), nullable=True),  # "tracker" when it cleared
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_alerts_key_status", "key", "status"),
    sa.Index("ix_alerts_status", "status", "opened_at"),
    sa.Index("ix_alerts_partner", "partner_id", "opened_at"),
)

# Events for ``edi.events`` (alert opened, acknowledged, resolved …), written in the commit of
# the change they announce and published at least once with confirms by the event publisher.
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("routing_key", sa.String(255), nullable=False),  # alert.<kind>.<partner>
    sa.Column("message_id", sa.String(64), nullable=False),  # stable: redelivery is recognisable
    sa.Column("payload", sa.LargeBinary, nullable=False),  # JSON
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_event_outbox_pending", "published_at", "id"),
)

# Acknowledgements the ERP sent on ``edi.acks``, as received (also those naming no known
# document: the evidence of what the ERP said).
erp_acks = sa.Table(
    "erp_acks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("document_id", sa.String(32), nullable=True),  # the document it closed, if any
    sa.Column("message_id", sa.String(64), nullable=True),  # as the ERP named it
    sa.Column("status", sa.String(16), nullable=False),  # ACCEPTED, REJECTED, INVALID
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),  # the ERP's own time
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Index("ix_erp_acks_document", "document_id"),
)

# -- the operator console (users, sessions, API tokens, audit trail) ----------------------------

ROLE_VIEWER = Role.VIEWER
ROLE_OPERATOR = Role.OPERATOR
ROLE_ADMIN = Role.ADMIN

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(128), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),  # argon2id
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    # The partner a client user belongs to (role "client"); staff users have none.
    sa.Column("partner_id", sa.String(64), nullable=True),
    sa.Index("ix_users_partner", "partner_id"),
)

# Password resets by an e-mailed link: only the sha256 of the one-time token is stored.
password_resets = sa.Table(
    "password_resets",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("remote", sa.String(128), nullable=True),
    sa.Index("ix_password_resets_user", "user_id", "created_at"),
)

# Browser sessions: the cookie holds a random token; only its sha256 is stored.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("remote", sa.String(128), nullable=True),
)

# API tokens for integrations (``Authorization: Bearer``): only the sha256 is stored.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),  # shown to recognise it
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# Who changed what, when: partner administration, users, tokens, reprocessing, alerts.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),  # username, or "cli:<os user>"
    sa.Column("action", sa.String(64), nullable=False),  # partner.update, user.create …
    sa.Column("target", sa.String(160), nullable=True),  # "partner:acme", "user:marie" …
    sa.Column("before", sa.Text, nullable=True),  # JSON, secrets masked
    sa.Column("after", sa.Text, nullable=True),  # JSON, secrets masked
    sa.Column("remote", sa.String(128), nullable=True),
    sa.Index("ix_audit_log_target", "target", "at"),
    sa.Index("ix_audit_log_at", "at"),
)

# Every ``edigw serve`` that ran on this store: its heartbeat says whether it is alive.
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
)

# Work that must run on one instance at a time (a poller, the tracker …): held until
# ``expires_at`` by ``holder``, which renews it; anyone takes it once expired.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# -- the manager page (migration 0015) ---------------------------------------------------------

# Orders and invoices by type and time: the range the manager page's rollup fills from.
sa.Index("ix_documents_type_created", documents.c.doc_type, documents.c.created_at)

# What a partner is expected to order per month and currency (entered in the console, the
# API or imported from CSV), compared with what it ordered.
forecasts = sa.Table(
    "forecasts",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),  # YYYY-MM, in the console's zone
    sa.Column("currency", sa.String(3), primary_key=True),  # ISO 4217
    sa.Column("amount", sa.String(32), nullable=False),  # a decimal as text: exact everywhere
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
    sa.Index("ix_forecasts_month", "month"),
)

# The value of each order and invoice, read once from its canonical JSON (the manager page
# sums these instead of parsing payloads per request). Filled by gateway.store.values from
# the documents table for the range asked, kept while a document cannot change any more.
document_values = sa.Table(
    "document_values",
    metadata,
    sa.Column("document_id", sa.String(32), primary_key=True),
    sa.Column("day", sa.Date, nullable=False),  # its transmission's day in the zone below
    sa.Column("week", sa.Date, nullable=False),  # that day's Monday
    sa.Column("month", sa.Date, nullable=False),  # the first of that day's month
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("doc_type", sa.String(32), nullable=False),  # order, invoice
    sa.Column("direction", sa.String(3), nullable=False),  # in: from the partner, out: to it
    sa.Column("format", sa.String(16), nullable=True),  # the transmission's format
    sa.Column("currency", sa.String(16), nullable=True),
    # The amount × 10 000 as an integer (exact sums on SQLite too); a credit note negative.
    sa.Column("amount_e4", sa.BigInteger, nullable=False),
    # False for a document that does not count (failed, duplicate, rejected …).
    sa.Column("counted", sa.Boolean, nullable=False),
    # False while the document may still change (HELD, CONFLICT): read again each time.
    sa.Column("settled", sa.Boolean, nullable=False),
    sa.Index("ix_document_values_day", "day", "partner_id"),
    sa.Index("ix_document_values_settled", "settled"),
    sa.Index("ix_document_values_unsettled", "document_id",
             postgresql_where=sa.text("settled = false"), sqlite_where=sa.text("settled = 0")),
)

# The counted documents of document_values summed per day, partner, type, direction, format
# and currency: what the manager page's queries read (a day holds a few rows per partner,
# not one per document). Kept with document_values in the same transactions.
document_value_days = sa.Table(
    "document_value_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("doc_type", sa.String(32), primary_key=True),
    sa.Column("direction", sa.String(3), primary_key=True),
    sa.Column("format", sa.String(16), primary_key=True),  # '' for none
    sa.Column("currency", sa.String(16), primary_key=True),  # '' for none
    sa.Column("week", sa.Date, nullable=False),
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("documents", sa.Integer, nullable=False),
    sa.Column("amount_e4", sa.BigInteger, nullable=False),
)

# document_value_days summed per week (its Monday) and the same key: a range's whole weeks
# are read here (a seventh of the rows), its other days from document_value_days. Kept with
# them in the same transactions.
document_value_weeks = sa.Table(
    "document_value_weeks",
    metadata,
    sa.Column("week", sa.Date, primary_key=True),
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("doc_type", sa.String(32), primary_key=True),
    sa.Column("direction", sa.String(3), primary_key=True),
    sa.Column("format", sa.String(16), primary_key=True),  # '' for none
    sa.Column("currency", sa.String(16), primary_key=True),  # '' for none
    # The first of the Monday's month: a week is read by month only when it lies in one.
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("documents", sa.Integer, nullable=False),
    sa.Column("amount_e4", sa.BigInteger, nullable=False),
)

# Which documents' created_at range document_values holds, and the zone its days are in
# (one row; a change of zone empties the rollup).
document_values_coverage = sa.Table(
    "document_values_coverage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("zone", sa.String(64), nullable=False),
    sa.Column("covered_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("covered_until", sa.DateTime(timezone=True), nullable=False),
)

# Inbound traffic per day (in the zone of traffic_coverage) and partner: transmissions that
# are not duplicates, their documents, the last one's time. What the manager's dropped
# clients read (a few rows a day, not every transmission of five weeks). A cache of
# transmissions (``gateway.store.traffic``): a day is held whole or not at all.
traffic_days = sa.Table(
    "traffic_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("transmissions", sa.Integer, nullable=False),
    sa.Column("documents", sa.BigInteger, nullable=False),
    sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
)

# The days traffic_days holds (a day without traffic too).
traffic_days_held = sa.Table(
    "traffic_days_held",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
)

# The zone traffic_days' days are cut in, and until when the changes of transmissions
# (``updated_at``) were read (one row; a change of zone empties the rollup).
traffic_coverage = sa.Table(
    "traffic_coverage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("zone", sa.String(64), nullable=False),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
)
