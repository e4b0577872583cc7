"""Reprocessing a transmission after a fix, for the CLI and the console alike.

A FAILED or QUARANTINED transmission (or one some of whose messages failed) is replayed as a
new attempt linked to it (``reprocess_of``), recording who asked and why; a RECEIVED one
(left by a crash) is simply processed. The first attempt keeps its outcome.

An outbound transmission (a document edigw sends, ``direction = "out"``) is sent again
instead: the gateway's outbound intake renders its archived document anew under a new
transmission with a new control reference (``OutboundIntake.resend``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.core.errors import PayloadPurged, ReprocessError, UnknownTransmission
from gateway.core.ports import StorePort, TransmissionView
from gateway.core.records import Outcome
from gateway.core.status import TransmissionStatus as T
from gateway.core.status import can_process_again, can_send_again

__all__ = ["PayloadPurged", "ReprocessError", "Reprocessed", "UnknownTransmission",
           "reprocess"]


class _Processor(Protocol):
    def process(self, tid: str) -> Outcome: ...


class _Resent(Protocol):
    """What the outbound intake answers of a resend (``OutboundResult``)."""

    @property
    def transmission_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def partner_id(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


class _Resender(Protocol):
    def resend(self, tid: str, *, by: str, reason: str) -> _Resent: ...


class Replaying(Protocol):
    """What reprocessing needs of the gateway: its store and its pipeline (and, for an
    outbound transmission, its outbound intake: ``intake``, None when not set up)."""

    @property
    def store(self) -> StorePort: ...

    @property
    def pipeline(self) -> _Processor: ...


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """A reprocessing: the transmission asked for, the attempt made and its outcome."""

    transmission_id: str
    attempt_id: str
    status: str
    partner_id: str | None
    documents: int
    queued: int
    stage: str | None
    reason: str | None


def reprocess(gateway: Replaying, transmission_id: str, *, by: str, reason: str) -> Reprocessed:
    """Replay a FAILED or QUARANTINED transmission (or one some of whose messages failed) as
    a new attempt linked to it, recording who asked and why, and process it; a RECEIVED one
    (left by a crash) is simply processed. Raises ``UnknownTransmission``,
    ``PayloadPurged`` or ``ReprocessError`` (nothing to reprocess)."""
    if not reason.strip():
        raise ReprocessError("a reason is required", transmission_id=transmission_id)
    store = gateway.store
    t = store.get_transmission(transmission_id)
    if t is None:
        raise UnknownTransmission(f"no transmission {transmission_id}",
                                  transmission_id=transmission_id)
    if t.direction == "out":
        return _resend(gateway, t, by=by, reason=reason)
    if not can_process_again(t.status, t.reason):
        raise ReprocessError(f"{t.id} is {t.status}: nothing to reprocess",
                             transmission_id=t.id)
    if t.purged_at is not None:
        raise PayloadPurged(t.id, t.purged_at)
    if t.status == T.RECEIVED:
        store.add_event(t.id, "reprocess", f"processed on request of {by}: {reason}")
        attempt = t.id
    else:
        attempt = store.record_reprocess(t.id, by=by, reason=reason)
    out = gateway.pipeline.process(attempt)
    return Reprocessed(transmission_id=t.id, attempt_id=attempt, status=out.status,
                       partner_id=out.partner_id, documents=out.documents, queued=out.queued,
                       stage=out.stage, reason=out.reason)


def _resend(gateway: Replaying, t: TransmissionView, *, by: str, reason: str) -> Reprocessed:
    """An outbound transmission sent again through the gateway's outbound intake."""
    if not can_send_again(t.status):
        raise ReprocessError(f"{t.id} is {t.status}: it is still on its way, nothing to send "
                             "again", transmission_id=t.id)
    if t.purged_at is not None:
        raise PayloadPurged(t.id, t.purged_at)
    intake: _Resender | None = getattr(gateway, "intake", None)
    if intake is None:
        raise ReprocessError(f"{t.id} is outbound and this gateway has no outbound intake",
                             transmission_id=t.id)
    out = intake.resend(t.id, by=by, reason=reason)
    failed = out.status == T.FAILED
    return Reprocessed(transmission_id=t.id, attempt_id=out.transmission_id or t.id,
                       status=out.status, partner_id=out.partner_id,
                       documents=0 if failed else 1, queued=0, stage=out.stage,
                       reason=out.reason)
