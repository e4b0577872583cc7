"""What the store gives and takes: rows of transmissions and documents, new documents,
outbox items and log filters (plain frozen dataclasses, no SQL).

The records the pipeline hands the store (``NewDocument``, ``NewInterchange``,
``NewOutbound``) are the core's (``gateway.core.records``), re-exported here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, overload

from gateway.core.records import NewDocument, NewInterchange, NewOutbound

__all__ = ["DocumentRow", "LogFilter", "NewDocument", "NewInterchange", "NewOutbound",
           "OutboundRow", "OutboxItem", "TransmissionRow", "aware"]


@overload
def aware(value: dt.datetime) -> dt.datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back; every time the store writes is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _as_dict(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.__slots__:
        value = getattr(row, key)
        out[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


@dataclass(frozen=True, slots=True)
class TransmissionRow:
    id: str
    channel: str
    channel_ref: str | None
    partner_id: str | None
    filename: str | None
    size: int
    sha256: str
    received_at: dt.datetime
    acknowledged_at: dt.datetime | None
    status: str
    stage: str | None
    reason: str | None
    format: str | None
    standard: str | None
    document_count: int
    duplicate_of: str | None
    updated_at: dt.datetime
    reprocess_of: str | None = None
    requested_by: str | None = None
    request_reason: str | None = None
    purged_at: dt.datetime | None = None
    attempts: int = 0
    claimed_by: str | None = None  # the instance working on it while RECEIVED
    direction: str = "in"  # "out": a document edigw sends to a partner

    @classmethod
    def from_row(cls, row: Any) -> TransmissionRow:
        data = dict(row._mapping)
        for key in ("received_at", "acknowledged_at", "updated_at", "purged_at"):
            if key in data:
                data[key] = aware(data[key])
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    transmission_id: str
    partner_id: str
    doc_type: str
    schema_version: str
    business_number: str | None
    interchange_ref: str | None
    message_ref: str | None
    message_id: str
    status: str
    created_at: dt.datetime
    published_at: dt.datetime | None
    stage: str | None = None
    reason: str | None = None
    erp_status: str | None = None
    erp_at: dt.datetime | None = None
    erp_reason: str | None = None
    content_sha: str | None = None
    conflict_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class OutboundRow:
    id: str
    transmission_id: str | None
    partner_id: str
    kind: str
    channel: str
    filename: str
    sha256: str
    size: int
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    detail: str | None
    document_id: str | None = None
    mapping: str | None = None
    control_ref: str | None = None
    next_attempt_at: dt.datetime | None = None
    remote_id: str | None = None
    receipt: str | None = None
    delivered_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message the publisher must get confirmed by the broker."""

    outbox_id: int
    document_id: str
    transmission_id: str
    partner_id: str
    doc_type: str
    schema_version: str
    message_id: str
    routing_key: str
    body: bytes
    attempts: int


@dataclass(slots=True)
class LogFilter:
    partner: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 50
    statuses: list[str] = field(default_factory=list)
    #: "in" or "out" (documents edigw sends to partners); None: both.
    direction: str | None = None
