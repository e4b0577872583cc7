"""What the pipeline hands the store: new documents, interchanges and outbound payloads,
and the outcome of each transmission (plain frozen dataclasses; the store turns them into
rows). ``gateway.store.records`` re-exports the first three under their old names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Required, TypedDict

from gateway.core.status import TransmissionStatus


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A canonical document ready to be stored with its outbox row.

    With ``status`` FAILED or UNSUPPORTED it is a message that did not become a document:
    it is stored with ``stage`` and ``reason`` (and the error as JSON in ``payload``) so that
    "where is order X" finds it, and gets no outbox row.
    """

    doc_type: str
    schema_version: str
    business_number: str | None
    interchange_ref: str | None
    message_ref: str | None
    message_id: str
    payload: bytes
    routing_key: str
    status: str | None = None
    stage: str | None = None
    reason: str | None = None
    #: SHA-256 of what the document says (``canonical.content_digest``); None for a
    #: failed message. Equal digests under one number: a DUPLICATE; others: a CONFLICT.
    content_sha: str | None = None
    #: Its part number when it is one part of a price list published in parts (parts of
    #: one list share its number: they are compared by content only, never in conflict).
    part: int | None = None
    #: The partner's ``on_conflict``: "hold" keeps a conflicting document for an operator,
    #: "publish" publishes it with a note of the conflict.
    on_conflict: str = "hold"


@dataclass(frozen=True, slots=True)
class NewInterchange:
    """An interchange (UNB..UNZ) received from a partner, recorded with its outcome."""

    control_ref: str
    sender_id: str | None
    sender_qualifier: str | None
    recipient_id: str | None
    prepared: str | None
    message_count: int
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewOutbound:
    """A payload to send to a partner (its bytes already archived under ``sha256``)."""

    kind: str
    channel: str
    filename: str
    sha256: str
    size: int
    detail: str | None = None


class NewTransmission(TypedDict, total=False):
    """A payload just archived, as ``record_received_many`` records it (RECEIVED, or
    DUPLICATE with ``duplicate_of``); without ``id`` the store makes one."""

    id: str
    channel: Required[str]
    channel_ref: str | None
    filename: str | None
    size: Required[int]
    sha256: Required[str]
    partner_id: str | None
    duplicate_of: str | None


#: A (kind, detail) line of a transmission's timeline, written with its outcome.
Event = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Note:
    """Stage and reason of a transmission some of whose messages (or interchanges) failed;
    ``failed`` when nothing of it went on (the transmission is then FAILED)."""

    stage: str | None = None
    reason: str | None = None
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Processed:
    """A transmission read and mapped: its documents (failed messages included), with the
    interchanges, the replies to send and the note of what failed. Written in one commit
    (or in chunks of ``docs``, the rest with the last)."""

    tid: str
    partner_id: str
    fmt: str
    standard: str | None
    docs: Sequence[NewDocument] = ()
    events: Sequence[Event] = ()
    interchanges: Sequence[NewInterchange] = ()
    outbound: Sequence[NewOutbound] = ()
    note: Note = Note()
    #: Receipts for what edigw sent (CONTRL, APERAK) recorded from it: a transmission of
    #: receipts alone is PROCESSED with no document, not FAILED as "nothing read".
    receipts: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """A transmission that failed (or is QUARANTINED) as a whole at ``stage``."""

    tid: str
    stage: str
    reason: str
    status: str = TransmissionStatus.FAILED
    partner_id: str | None = None
    fmt: str | None = None
    standard: str | None = None
    events: Sequence[Event] = ()


#: What the pipeline asks the store to record for one transmission.
Recorded = Processed | Failed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing a transmission gave."""

    transmission_id: str
    status: str
    partner_id: str | None = None
    documents: int = 0
    queued: int = 0
    stage: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Work:
    """What working on one transmission gave: its outcome, and what to record for it
    (None when there is nothing to record: done already, or recorded as it went)."""

    outcome: Outcome
    record: Recorded | None = None


@dataclass(frozen=True, slots=True)
class NewOutboundDocument:
    """A canonical document the ERP sends out, as the store records it beside its
    rendering (status OUTBOUND: searchable by number, never published)."""

    schema_version: str
    business_number: str
    message_id: str
    payload: bytes  # the canonical JSON as validated
    content_sha: str | None = None
