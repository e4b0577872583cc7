"""Ports: what the pipeline needs from format readers, partner profiles, the store and the
archive, and what channels need from the core.

Format readers (``gateway.formats``) implement ``Reader``; channels (``gateway.channels``)
call a ``Receiver``; ``gateway.config``'s partners satisfy ``PartnerProfile`` and
``Partners``, ``gateway.store``'s Store and Archive satisfy ``StorePort`` and
``ArchivePort``. All structurally: the core imports none of them, ``gateway.app`` wires them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from typing_extensions import TypeVar

from gateway.core.errors import PayloadError
from gateway.core.records import NewDocument, NewTransmission, Processed, Recorded

if TYPE_CHECKING:  # an annotation only: pydantic costs every command that reads the store
    from pydantic import BaseModel

# -- partner profiles ---------------------------------------------------------------------


class DuplicatePolicy(Protocol):
    """A partner's rule on a repeated interchange reference (``edifact`` of a profile)."""

    @property
    def duplicate_interchange(self) -> str:
        """"reject", "warn" or "accept"."""
        ...

    @property
    def duplicate_window_days(self) -> int: ...


class ReplyRoute(Protocol):
    """Where a partner's replies go (``outbound`` of a profile)."""

    @property
    def channel(self) -> str: ...


class PartnerProfile(Protocol):
    """What the pipeline reads from a partner profile (``gateway.config.Partner``)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def state(self) -> str:
        """"draft", "test", "live" or "suspended" (``core.lifecycle``)."""
        ...

    @property
    def on_conflict(self) -> str:
        """"hold" or "publish": what becomes of a document in conflict with an earlier one."""
        ...

    @property
    def edifact(self) -> DuplicatePolicy: ...

    @property
    def outbound(self) -> ReplyRoute: ...


P = TypeVar("P", bound=PartnerProfile)
P_co = TypeVar("P_co", bound=PartnerProfile, covariant=True)
#: The partner profile a reader maps with: ``gateway.config.Partner`` for the gateway's
#: readers (they read more of it than the pipeline does); unsaid, any.
R = TypeVar("R", contravariant=True, default=Any)


class Partners(Protocol[P_co]):
    """The partner directory as the pipeline looks partners up in it
    (``gateway.config.PartnerDirectory``)."""

    @property
    def SCHEMES(self) -> tuple[str, ...]:
        """Identifier schemes a sender may name as its qualifier (gln, vat …)."""
        ...

    def get(self, partner_id: str) -> P_co | None: ...

    def by_unb_sender(self, sender_id: str, qualifier: str | None) -> P_co | None: ...

    def by_identifier(self, scheme: str, value: str) -> P_co | None: ...


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a payload says it is from (UNB S002 for EDIFACT)."""

    id: str | None
    qualifier: str | None = None


@dataclass(slots=True)
class MappedDocument:
    """A canonical document produced by a reader, with what it noticed on the way."""

    doc_type: str
    document: BaseModel  # a gateway.core.canonical model
    message_id: str
    business_number: str | None
    interchange_ref: str | None
    message_ref: str | None
    schema_version: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PartnerReceipt:
    """A partner's receipt for something edigw sent it, read from a message of theirs: a
    CONTRL naming our interchange (``control_ref``, UCI 0020) or an APERAK naming our
    document (``numbers``: DOC and RFF numbers). ``ok`` positive or negative; ``text`` says
    what it said (action, errors) for the outbound row and the timeline."""

    kind: str  # "CONTRL", "APERAK"
    ok: bool
    text: str
    control_ref: str | None = None
    numbers: tuple[str, ...] = ()


@dataclass(slots=True)
class FailedMessage:
    """A message of a payload that did not become a document; the others go on without it.

    ``status`` is ``FAILED`` (bad content: envelope, structure, mapping) or ``UNSUPPORTED``
    (a message type or version edigw has no mapping for). It is stored as a document row
    with its stage and reason, so that a search by its business number finds why.
    """

    status: str
    stage: str
    reason: str
    message_id: str
    description: str  # e.g. "ORDERS D:96A:UN:EAN008 message 17"
    doc_type: str | None = None
    business_number: str | None = None
    interchange_ref: str | None = None
    message_ref: str | None = None
    code: str | None = None  # UN/EDIFACT 0085 syntax error code, when there is one
    #: A receipt for something edigw sent (an UNSUPPORTED CONTRL or APERAK): the pipeline
    #: records it on that outbound payload instead of keeping the message, when it names one.
    receipt: PartnerReceipt | None = None


@dataclass(frozen=True, slots=True)
class InterchangeSeen:
    """An interchange (or any numbered batch a partner sends) and whether it was taken."""

    control_ref: str
    sender_id: str | None
    sender_qualifier: str | None
    recipient_id: str | None
    prepared: str | None
    message_count: int
    rejected: str | None = None  # the reason, when the interchange as a whole was rejected


@dataclass(frozen=True, slots=True)
class Reply:
    """A payload to send back to the partner (a CONTRL …), made from the outcome."""

    kind: str
    filename: str
    data: bytes
    detail: str


class ParsedPayload(Protocol[R]):
    """A payload whose syntax has been read; mapping happens once the partner is known."""

    format: str
    standard: str | None
    senders: list[Sender]
    warnings: list[str]

    def summary(self) -> str:
        """One line for the transmission timeline (interchanges, messages, versions)."""
        ...

    def control_refs(self) -> list[str]:
        """The partner's control references in the payload (UNB 0020), for the duplicate check."""
        ...

    def documents(self, *, partner: R, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None
                  ) -> list[MappedDocument | FailedMessage]:
        """Map every message. A message that cannot be mapped is returned as a
        ``FailedMessage`` and the others go on; raises a ``PayloadError`` subclass only when
        nothing in the payload can be used. ``known_refs`` maps control references already
        received from this partner to a description of when (duplicate interchange check)."""
        ...

    def interchanges_seen(self) -> list[InterchangeSeen]:
        """After ``documents``: the interchanges read and whether each was taken."""
        ...

    def replies(self, *, partner: R, transmission_id: str) -> list[Reply]:
        """After ``documents``: what to send back to the partner (CONTRL), per its profile."""
        ...


class Reader(Protocol[R]):
    """Reads one format (EDIFACT, XML, CSV …)."""

    format: str

    def sniff(self, head: bytes) -> bool:
        """Whether the first bytes of a payload look like this format."""
        ...

    def parse(self, data: bytes, *, filename: str | None) -> ParsedPayload[R]:
        """Read the syntax; raises a ``PayloadError`` subclass for bad input."""
        ...


@runtime_checkable
class SetsMappingsAside(Protocol):
    """A reader whose mappings left some files out (a mapping that did not load): their
    ids and why (file, line, reason). A partner whose profile names one takes no files
    until it is fixed (``core.lifecycle.disabled_by``)."""

    def disabled_mappings(self) -> Mapping[str, str]:
        ...


@runtime_checkable
class NamesMappings(Protocol):
    """A partner profile that names the mappings its documents are read with."""

    def mappings_named(self) -> Sequence[str]:
        ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """A payload a channel has in hand and wants durably received.

    A large payload comes as ``path`` (a local file the channel owns until the receipt)
    with ``data`` empty: it is archived by streaming, never held in memory.
    """

    data: bytes
    channel: str
    channel_ref: str | None = None
    filename: str | None = None
    partner_hint: str | None = None
    path: Path | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of a durable receive: the channel may now acknowledge its transport."""

    transmission_id: str
    duplicate_of: str | None = None
    #: True when this exact payload from this exact place was received before but its
    #: transport was never acknowledged (a crash in between): acknowledge, do not process.
    resumed: bool = False

    @property
    def needs_processing(self) -> bool:
        return self.duplicate_of is None and not self.resumed


class Receiver(Protocol):
    """What a channel calls: durable receive first, then its own acknowledgement."""

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        """Archive and record every item durably; returns one receipt per item, in order."""
        ...

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        """Record that the channel acknowledged its transport for these receipts."""
        ...


@dataclass(frozen=True, slots=True)
class WebRequest:
    """An HTTP request as a channel endpoint sees it, whatever the web framework.

    ``headers`` keys are lower-case; ``url`` is the full URL the client called (as the
    gateway's public URL says, behind a proxy): webhook signatures cover it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class WebReply:
    """What a channel endpoint answers an HTTP request with."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# -- streamed payloads ----------------------------------------------------------------------


@dataclass(slots=True)
class Done:
    """A whole message's result: a document, or a message that failed or is unsupported."""

    result: MappedDocument | FailedMessage


@dataclass(slots=True)
class Slice:
    """A document holding the items of one slice of message ``key`` (published in parts)."""

    key: str
    result: MappedDocument


@dataclass(slots=True)
class SlicedEnd:
    """Message ``key``, handed over in slices, is complete: ``failed`` says why it failed
    (its slices' documents must then fail too), None when every check passed."""

    key: str
    failed: FailedMessage | None


@dataclass(slots=True)
class InterchangeEnd:
    """Interchange closed: hold nothing more for it. ``rejected`` rejects every document
    made from it (its UNZ count, a group, the partner's reject-interchange policy)."""

    control_ref: str | None
    rejected: PayloadError | None


#: What a streamed payload hands the pipeline as it reads (``StreamedPayload.events``).
StreamEvent = Done | Slice | SlicedEnd | InterchangeEnd


class StreamedPayload(ParsedPayload[R], Protocol[R]):
    """A payload read as a stream: its documents come as events, recorded as they come."""

    def open(self) -> None:
        """Read up to the first sender (for identification); raises a ``PayloadError``."""
        ...

    def events(self, *, partner: R, transmission_id: str | None,
               filename: str | None, known: Callable[[str], str | None]
               ) -> Iterator[StreamEvent]:
        """Map each message as it completes. ``known(ref)`` says where an interchange
        reference was received before (None when new)."""
        ...


@runtime_checkable
class StreamingReader(Reader[R], Protocol[R]):
    """A reader that can also read a payload block by block (EDIFACT)."""

    def stream(self, blocks: Iterable[bytes], *, filename: str | None,
               window: int | None = None, slice_segments: int | None = None
               ) -> StreamedPayload[R]:
        ...


# -- sharing the work on a large payload ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shared:
    """A large payload that another process may judge in part while it is read here."""

    transmission_id: str
    format: str
    data: bytes
    archived: Path
    sha256: str
    filename: str | None


class Offload(Protocol[P]):
    """Another process sharing the judging of large payloads of one format
    (``gateway.formats.edifact.parallel.Workers``); the pipeline holds at most one.

    ``share`` is called once the payload is read from the archive, ``documents`` once the
    partner is known, ``end`` when the transmission is done (whatever happened)."""

    def share(self, payload: Shared, *, min_messages: int) -> bool:
        """Start reading ``payload`` in the other process; False when not worth it or not
        possible (another format, too few messages, the worker busy or gone)."""
        ...

    def documents(self, parsed: ParsedPayload[P], *, partner: P,
                  transmission_id: str, filename: str | None, known_refs: dict[str, str],
                  share: float, min_messages: int, max_bytes: int
                  ) -> list[MappedDocument | FailedMessage] | None:
        """``parsed.documents`` with the last ``share`` of the messages judged by the other
        process meanwhile; None when nothing was shared (the caller maps it alone)."""
        ...

    def end(self) -> None:
        """Give the other process back after a payload (answers left unread dropped)."""
        ...

    def close(self) -> None:
        ...


# -- the store and the archive --------------------------------------------------------------


class TransmissionView(Protocol):
    """What the pipeline reads of a stored transmission (``gateway.store`` rows)."""

    @property
    def id(self) -> str: ...

    @property
    def partner_id(self) -> str | None: ...

    @property
    def filename(self) -> str | None: ...

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def document_count(self) -> int: ...

    @property
    def received_at(self) -> dt.datetime: ...

    @property
    def reprocess_of(self) -> str | None: ...

    @property
    def purged_at(self) -> dt.datetime | None: ...

    @property
    def attempts(self) -> int: ...

    @property
    def direction(self) -> str: ...


class SentView(Protocol):
    """What the pipeline reads of a payload edigw sent (``gateway.store`` outbound rows)."""

    @property
    def id(self) -> str: ...

    @property
    def transmission_id(self) -> str | None: ...

    @property
    def kind(self) -> str: ...

    @property
    def control_ref(self) -> str | None: ...


class StorePort(Protocol):
    """The store as the pipeline and reprocessing use it (``gateway.store.db.Store``)."""

    def is_outage(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the store cannot be reached (to wait out), rather than that
        one transmission's data was refused (which fails that transmission alone)."""
        ...

    # receive
    def receive_lookup(self, channel: str, items: Sequence[tuple[str | None, str]]
                       ) -> tuple[dict[str, str], dict[tuple[str, str], str]]: ...

    def record_received_many(self, items: Sequence[NewTransmission]) -> list[str]: ...

    def mark_acknowledged_many(self, tids: Sequence[str], detail: str) -> None: ...

    # transmissions
    def get_transmission(self, tid: str) -> TransmissionView | None: ...

    def get_transmissions(self, tids: Sequence[str]) -> Mapping[str, TransmissionView]: ...

    def transmissions_to_process(self, limit: int = ...) -> Sequence[TransmissionView]: ...

    def claim_received(self, limit: int, *, since: dt.datetime | None = ...
                       ) -> Sequence[TransmissionView]: ...

    def start_attempts(self, tids: Sequence[str]) -> dict[str, int]: ...

    def reprocess_chain(self, tid: str) -> list[str]: ...

    def record_reprocess(self, original_id: str, *, by: str, reason: str) -> str: ...

    def add_event(self, tid: str, event: str, detail: str | None = ...) -> None: ...

    # outcomes
    def clear_outcome(self, tid: str) -> None: ...

    def record_batch(self, records: Sequence[Recorded]) -> list[int]: ...

    def record_outcome(self, record: Processed, *, final: bool = ...) -> int: ...

    def record_failed(self, tid: str, *, stage: str, reason: str, status: str = ...,
                      partner_id: str | None = ..., fmt: str | None = ...,
                      standard: str | None = ..., events: Iterable[tuple[str, str]] = ...
                      ) -> None: ...

    # duplicate checks
    def numbers_seen(self, partner_id: str, keys: Sequence[tuple[str, str | None]],
                     since: dt.datetime, *, exclude_message_ids: Iterable[str] = ...
                     ) -> dict[tuple[str, str | None], str]: ...

    def interchange_refs_seen(self, partner_id: str, refs: Sequence[str],
                              since: dt.datetime | None = ...
                              ) -> dict[str, tuple[str, dt.datetime]]: ...

    # held documents (a streamed transmission)
    def hold_documents(self, tid: str, *, partner_id: str,
                       docs: Sequence[NewDocument]) -> list[str]: ...

    def patch_held(self, document_ids: Sequence[str], old: bytes, new: bytes) -> None: ...

    def fail_held(self, tid: str, *, stage: str, reason: str,
                  document_ids: Sequence[str] | None = ...) -> int: ...

    def release_held(self, tid: str, *, on_conflict: str = ...,
                     test: bool = ...) -> tuple[int, int]: ...

    # receipts for what edigw sent (a partner's CONTRL, APERAK)
    def outbound_by_control_ref(self, partner_id: str, control_ref: str) -> SentView | None: ...

    def outbound_by_number(self, partner_id: str, numbers: Sequence[str]) -> SentView | None: ...

    def record_receipt(self, oid: str, *, ok: bool, receipt: str) -> None: ...


class ArchivePort(Protocol):
    """The archive of raw payloads (``gateway.store.archive.Archive``)."""

    def path_of(self, sha256: str) -> Path: ...

    def put_many(self, payloads: list[bytes]) -> list[str]: ...

    def put_file(self, source: str | os.PathLike[str]) -> tuple[str, int]: ...

    def get(self, sha256: str) -> bytes: ...

    def blocks(self, sha256: str) -> Generator[bytes, None, None]: ...
