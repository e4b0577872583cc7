"""The statuses of the gateway's records, owned by the inner ring.

Each is a ``StrEnum``: a member equals its string (``TransmissionStatus.FAILED == "FAILED"``),
is stored as that string by SQLite and PostgreSQL alike, and prints as it. Every room uses
these names instead of copying the strings; ``gateway.store.schema`` keeps its historical
constants as aliases of these members.
"""

from __future__ import annotations

from enum import StrEnum


class TransmissionStatus(StrEnum):
    """Where one received payload stands, in the order it normally goes through them."""

    RECEIVED = "RECEIVED"  # raw bytes archived and recorded; nothing else done yet
    PROCESSED = "PROCESSED"  # parsed and mapped; documents and outbox rows committed
    PUBLISHED = "PUBLISHED"  # every document confirmed by the broker
    FAILED = "FAILED"  # a stage failed; see stage and reason; payload kept for reprocessing
    QUARANTINED = "QUARANTINED"  # sender unknown; kept until a partner profile matches
    DUPLICATE = "DUPLICATE"  # the same bytes were received before; see duplicate_of
    #: Nothing left in the outbox, but not every document went on: some failed, were
    #: unsupported or an operator rejected them (the others were published or are repeats).
    PARTIAL = "PARTIAL"
    #: Nothing left in the outbox, but a document is held as a CONFLICT for an operator.
    HELD = "HELD"
    # An outbound transmission (a document for a partner, ``direction = "out"``) goes
    # RECEIVED (archived as the ERP sent it) -> RENDERED (its payload archived, waiting
    # for delivery) -> SENT (handed over; a receipt is still to come) -> DELIVERED (an MDN,
    # a positive CONTRL, an SFTP rename done), or FAILED with stage and reason.
    RENDERED = "RENDERED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"


class DocumentStatus(StrEnum):
    """Where one canonical document (and its outbox row) stands."""

    PENDING = "PENDING"  # in the outbox, not yet confirmed by the broker
    PUBLISHED = "PUBLISHED"  # confirmed by the broker
    UNROUTABLE = "UNROUTABLE"  # the broker returned it: no queue is bound for its routing key
    DUPLICATE = "DUPLICATE"  # the same content was received before; not published again
    FAILED = "FAILED"  # this message failed (see stage, reason); the others went on
    UNSUPPORTED = "UNSUPPORTED"  # a message type edigw has no mapping for; kept, not published
    #: Stored while its streamed interchange (or its price list's UNT) is still open: released
    #: to the outbox only once the whole has checked out, FAILED otherwise.
    HELD = "HELD"
    #: The same partner, type and number as a document received before, with other content:
    #: held (no outbox row) until an operator releases it (PENDING) or rejects it; see
    #: conflict_of. Under the partner's ``on_conflict = "publish"`` it is published instead.
    CONFLICT = "CONFLICT"
    REJECTED = "REJECTED"  # a CONFLICT an operator rejected (see reason); never published
    #: A document edigw sends to a partner (not published): its delivery is on its
    #: outbound transmission.
    OUTBOUND = "OUTBOUND"


class InterchangeStatus(StrEnum):
    """One UNB..UNZ received from a partner."""

    ACCEPTED = "ACCEPTED"  # every message was read (some may have failed on their own)
    REJECTED = "REJECTED"  # the interchange as a whole was rejected (envelope, duplicate …)


class OutboundStatus(StrEnum):
    """A payload edigw sends to a partner (acknowledgements and other files)."""

    PENDING = "PENDING"
    SENT = "SENT"  # handed over; a receipt (async MDN, CONTRL) may still come
    DELIVERED = "DELIVERED"  # the partner's side confirmed it
    FAILED = "FAILED"  # attempts exhausted or refused by the partner; an operator must look


class ErpStatus(StrEnum):
    """What the ERP answered about a document (``documents.erp_status``)."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class AlertState(StrEnum):
    """An alert's lifecycle: one alert per condition while open or acknowledged; the tracker
    resolves it when the condition is gone (or an operator does)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Role(StrEnum):
    """What a console user may do; each staff role includes the ones before it. A client
    is bound to one partner and ranks below every staff role: it sees its partner's data
    through the routes open to it, never a staff route."""

    CLIENT = "client"  # a partner's own user: its transmissions, documents, uploads
    VIEWER = "viewer"  # support: read everything
    OPERATOR = "operator"  # + reprocess, acknowledge and resolve alerts
    ADMIN = "admin"  # + partners, users, tokens


TRANSMISSION_STATUSES: tuple[str, ...] = tuple(TransmissionStatus)
DOCUMENT_STATUSES: tuple[str, ...] = tuple(DocumentStatus)
INTERCHANGE_STATUSES: tuple[str, ...] = tuple(InterchangeStatus)
OUTBOUND_STATUSES: tuple[str, ...] = tuple(OutboundStatus)
ROLES: tuple[str, ...] = tuple(Role)
#: The canonical types the ERP sends out (``edi.outbound``) and the ones it receives
#: (``gateway.core.canonical`` has their models; kept here so that the search, which only
#: names them, loads no model).
OUTBOUND_TYPES: tuple[str, ...] = ("order-response", "despatch-advice", "invoice", "price-list")


def can_process_again(status: str, reason: str | None) -> bool:
    """Whether a transmission may be processed (again): one that failed, is quarantined or
    was left RECEIVED by a crash, or one processed with some of its messages failed (it then
    carries a reason). The pipeline, reprocessing and the console ask this one rule."""
    if status in (TransmissionStatus.FAILED, TransmissionStatus.QUARANTINED,
                  TransmissionStatus.RECEIVED):
        return True
    return status in (TransmissionStatus.PROCESSED, TransmissionStatus.PUBLISHED,
                      TransmissionStatus.PARTIAL) and bool(reason)


def can_send_again(status: str) -> bool:
    """Whether an outbound transmission may be sent again (``intake.resend``): one that
    failed, or went (SENT, DELIVERED) and the partner asks for it again. One RENDERED is
    still being delivered, one RECEIVED still being rendered: nothing to resend yet."""
    return status in (TransmissionStatus.FAILED, TransmissionStatus.SENT,
                      TransmissionStatus.DELIVERED)
