"""Ports: what the pipeline needs from format readers, and what channels need from the core.

Format readers (``gateway.formats``) implement ``Reader``; channels (``gateway.channels``)
call a ``Receiver``. Neither side imports the other; ``gateway.app`` wires them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from gateway.config import Partner


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


class ParsedPayload(Protocol):
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

    def documents(self, *, partner: Partner, transmission_id: str | None,
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

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        """After ``documents``: what to send back to the partner (CONTRL), per its profile."""
        ...


class Reader(Protocol):
    """Reads one format (EDIFACT, XML, CSV …)."""

    format: str

    def sniff(self, head: bytes) -> bool:
        """Whether the first bytes of a payload look like this format."""
        ...

    def parse(self, data: bytes, *, filename: str | None) -> ParsedPayload:
        """Read the syntax; raises a ``PayloadError`` subclass for bad input."""
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
