"""The errors edigw raises, with their data kept as attributes.

    EdigwError
    ├── ConfigError                 bad configuration: file, key, value
    ├── MappingDefinitionError      a mapping file that cannot be loaded: file, line
    ├── StoreError                  the store or the archive failed (receive cannot commit)
    │   └── ArchivedPayloadUnreadable  one archived payload missing or altered (not an outage)
    ├── ReprocessError              a transmission that cannot be reprocessed
    │   ├── UnknownTransmission     no such transmission
    │   └── PayloadPurged           its raw payload was purged by retention
    ├── BrokerError                 RabbitMQ unreachable or refusing (translated from pika)
    ├── RequestRefused              a request from outside refused: login, token, size, signature
    └── PayloadError                a partner's payload cannot be processed: stage, reason, position
        ├── FormatNotRecognised     not a format edigw reads
        ├── EdifactSyntaxError      EDIFACT syntax or envelope error: segment index, line, element
        ├── MappingError            the message does not give what the mapping needs
        ├── UnknownPartner          no partner profile matches the sender (quarantined, not failed)
        ├── PartnerNotLive          its partner is in draft or suspended (quarantined, held)
        └── TimeLimitExceeded       processing one payload took longer than its time limit

A PayloadError never stops the service: the transmission is marked FAILED (or QUARANTINED)
with ``stage`` and ``reason``, its payload stays in the archive and it can be reprocessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


class EdigwError(Exception):
    """Base of every error edigw raises on purpose."""


class RequestRefused(EdigwError):
    """A request from outside was refused: a login or token, a body too large, a webhook's
    signature, a number out of bounds. Each room raises its own kind; the web maps them to
    HTTP statuses."""


class ConfigError(EdigwError):
    """A configuration value is missing, unknown or malformed."""

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None,
                 value: object = None) -> None:
        self.reason = reason
        self.file = file
        self.key = key
        self.value = value
        where = file or "<config>"
        if key:
            where += f": {key}"
        shown = f" (value {value!r})" if value is not None else ""
        super().__init__(f"{where}: {reason}{shown}")


class MappingDefinitionError(EdigwError):
    """A mapping file is malformed: unknown canonical field, bad path, bad conversion."""

    def __init__(self, reason: str, *, file: str, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line if line is not None else '?'}: {reason}")


class StoreError(EdigwError):
    """The store or the archive could not durably record something.

    ``outage``: the store cannot be reached (wait and retry); False when one item's data is
    at fault (that transmission fails alone)."""

    outage = True


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached (an outage to wait out), rather
    than that one transmission's data was refused. The store's own driver errors are
    classified by the store (``StorePort.is_outage``), which starts from this."""
    if isinstance(exc, StoreError):
        return exc.outage
    return isinstance(exc, ConnectionError)


class ArchivedPayloadUnreadable(StoreError):
    """One archived payload is missing or its digest differs: that transmission fails
    (stage "archive"), the store itself is not away."""

    outage = False


class ReprocessError(EdigwError):
    """A transmission that cannot be reprocessed (nothing to do, no reason given …)."""

    def __init__(self, message: str, *, transmission_id: str) -> None:
        super().__init__(message)
        self.transmission_id = transmission_id


class UnknownTransmission(ReprocessError):
    """No transmission has this id."""


class PayloadPurged(ReprocessError):
    """The raw payload of a transmission was purged by retention: it cannot be read again
    (its metadata and documents are kept)."""

    def __init__(self, transmission_id: str, purged_at: dt.datetime) -> None:
        if purged_at.tzinfo is None:  # SQLite gives naive datetimes back; all are UTC
            purged_at = purged_at.replace(tzinfo=dt.UTC)
        self.purged_at = purged_at
        super().__init__(
            f"transmission {transmission_id}: payload purged on "
            f"{purged_at:%Y-%m-%d %H:%M} UTC (retention); its metadata and "
            "documents are kept, but it cannot be reprocessed", transmission_id=transmission_id)


class BrokerError(EdigwError):
    """The broker is unreachable or refused an operation."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where in a payload something was found; every field is optional.

    ``segment`` is the 1-based index of the segment in the file, ``line`` and ``column``
    are 1-based, ``element`` names the element (``BGM/1004`` or ``DTM 2``).
    ``element_pos`` and ``component_pos`` are the 1-based positions of that element in its
    segment (the tag is 0, so ``BGM+220+X`` has 1004 at 2) and of the component in its
    composite. A CONTRL UCD counts the tag as 1: its S011 0098 is ``element_pos + 1``, its
    0104 is ``component_pos``.
    """

    segment: int | None = None
    line: int | None = None
    column: int | None = None
    tag: str | None = None
    element: str | None = None
    message_ref: str | None = None
    element_pos: int | None = None
    component_pos: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.segment is not None:
            parts.append(f"segment {self.segment}" + (f" ({self.tag})" if self.tag else ""))
        elif self.tag:
            parts.append(f"segment {self.tag}")
        if self.element:
            parts.append(f"element {self.element}")
        if self.message_ref:
            parts.append(f"message {self.message_ref}")
        return ", ".join(parts)


class PayloadError(EdigwError):
    """A payload cannot be processed; the transmission fails at ``stage`` for ``reason``."""

    stage = "parse"
    #: Who the payload said it was from, as far as it was read before the error (an
    #: interchange's UNB before its truncation): the transmission is still attributed to
    #: that partner. Readers set it when they know; ``Sender`` objects of ``core.ports``.
    senders: tuple[object, ...] = ()

    def __init__(self, reason: str, *, position: Position | None = None,
                 code: str | None = None, stage: str | None = None) -> None:
        self.reason = reason
        self.position = position
        #: CONTRL-compatible syntax error code (UN/EDIFACT 0085), when there is one.
        self.code = code
        if stage:
            self.stage = stage
        where = f" at {position}" if position and str(position) else ""
        super().__init__(f"{reason}{where}")


class FormatNotRecognised(PayloadError):
    """The payload is not in a format edigw reads."""

    stage = "detect"


class EdifactSyntaxError(PayloadError):
    """The EDIFACT syntax or envelope is wrong."""

    stage = "parse"


class MappingError(PayloadError):
    """The message lacks or garbles what the mapping needs (a mandatory field, a date)."""

    stage = "map"

    def __init__(self, reason: str, *, field: str | None = None,
                 position: Position | None = None, code: str | None = None) -> None:
        self.field = field
        super().__init__(reason, position=position, code=code)


class UnknownPartner(PayloadError):
    """No partner profile matches the sender; the transmission is quarantined."""

    stage = "identify"

    def __init__(self, reason: str, *, sender_id: str | None = None,
                 qualifier: str | None = None, position: Position | None = None) -> None:
        self.sender_id = sender_id
        self.qualifier = qualifier
        super().__init__(reason, position=position)


class PartnerNotLive(PayloadError):
    """The payload's partner takes no files yet (``draft``) or for now (``suspended``):
    the transmission is quarantined, attributed to ``partner_id``, with ``reason`` saying
    which (``core.lifecycle``); a suspended partner's are released when it is live again."""

    stage = "partner"

    def __init__(self, reason: str, *, partner_id: str, state: str) -> None:
        self.partner_id = partner_id
        self.state = state
        super().__init__(reason)


class TimeLimitExceeded(PayloadError):
    """Processing one payload took longer than the per-transmission time limit."""

    stage = "process"
