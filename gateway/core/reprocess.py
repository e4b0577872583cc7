"""Reprocessing a transmission after a fix, for the CLI and the console alike.

A FAILED or QUARANTINED transmission (or one some of whose messages failed) is replayed as a
new attempt linked to it (``reprocess_of``), recording who asked and why; a RECEIVED one
(left by a crash) is simply processed. The first attempt keeps its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.core.errors import PayloadPurged, ReprocessError, UnknownTransmission
from gateway.core.ports import StorePort
from gateway.core.records import Outcome
from gateway.core.status import TransmissionStatus as T
from gateway.core.status import can_process_again

__all__ = ["PayloadPurged", "ReprocessError", "Reprocessed", "UnknownTransmission",
           "reprocess"]


class _Processor(Protocol):
    def process(self, tid: str) -> Outcome: ...


class Replaying(Protocol):
    """What reprocessing needs of the gateway: its store and its pipeline."""

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
