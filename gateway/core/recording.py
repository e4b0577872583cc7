"""Committing what processing gave: a batch of small transmissions' records in one commit
(each alone when the store refuses the batch), a large one's documents in chunks, and the
failed record of a transmission whose work raised."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from gateway.core.documents import describe
from gateway.core.errors import ArchivedPayloadUnreadable, PayloadError, TimeLimitExceeded
from gateway.core.ports import P, TransmissionView
from gateway.core.records import Failed, Outcome, Processed, Recorded, Work
from gateway.core.status import TransmissionStatus as T

if TYPE_CHECKING:
    from gateway.core.pipeline import Pipeline

log = structlog.get_logger("edigw.pipeline")


def record_batch(pipeline: Pipeline[P], batch: list[tuple[int, Recorded]],
                 outcomes: list[Outcome]) -> list[int | None]:
    """Commit the batch's records together (``outcomes[i]`` is record i's outcome); when
    the store refuses the batch (not an outage: a value one transmission brought), each is
    committed alone, and the one refused fails alone (its count None)."""
    store = pipeline.store
    try:
        return list(store.record_batch([r for _, r in batch]))
    except Exception as exc:
        if store.is_outage(exc):
            raise
        log.warning("batch_refused", transmissions=len(batch), error=repr(exc)[:300])
    counts: list[int | None] = []
    for i, record in batch:
        try:
            counts.append(store.record_batch([record])[0])
        except Exception as exc:
            if store.is_outage(exc):
                raise
            outcomes[i] = record_crash(pipeline, record.tid, record.partner_id, exc,
                                       stage="record")
            counts.append(None)
    return counts


def record_in_chunks(pipeline: Pipeline[P], record: Processed) -> int:
    """A large transmission's documents committed ``chunk_size`` at a time (the publisher
    woken after each); its events, interchanges, replies and note with the last chunk."""
    docs = record.docs
    queued = 0
    size = pipeline.chunk_size
    for start in range(0, len(docs), size):
        last = start + size >= len(docs)
        chunk = docs[start:start + size]
        queued += pipeline.store.record_outcome(
            replace(record, docs=chunk) if last else
            Processed(record.tid, record.partner_id, record.fmt, record.standard, chunk),
            final=last)
        if queued and not last:
            pipeline.on_queued()  # the publisher starts while the rest is written
    return queued


def crashed(pipeline: Pipeline[P], tid: str, row: TransmissionView | None,
            exc: Exception) -> Work:
    """What working on ``tid`` gives when it raised: a failed record, with the stage
    and the exception named (a PayloadError escaping the reader's own handling, the
    time limit, or any other exception, whose traceback goes to the log)."""
    partner_id = pipeline.attributed(exc, row)
    if isinstance(exc, ArchivedPayloadUnreadable):
        stage, reason = "archive", str(exc)
        log.error("transmission_payload_unreadable", transmission_id=tid, reason=reason)
    elif isinstance(exc, PayloadError):
        stage, reason = exc.stage, str(exc)
        if isinstance(exc, TimeLimitExceeded):
            log.warning("transmission_time_limit", transmission_id=tid, reason=reason)
    else:
        stage, reason = "process", describe(exc)
        log.error("transmission_crashed", transmission_id=tid, partner=partner_id,
                  error=reason, exc_info=exc)
    outcome = Outcome(tid, T.FAILED, partner_id, stage=stage, reason=reason)
    if row is not None and row.size > pipeline.stream_above:
        # A streamed run records as it goes: what it held is failed here, at once.
        pipeline.store.fail_held(tid, stage=stage, reason=f"not released: {reason}")
        pipeline.store.record_failed(tid, stage=stage, reason=reason, partner_id=partner_id)
        return Work(outcome)
    return Work(outcome, Failed(tid, stage=stage, reason=reason, partner_id=partner_id))


def record_crash(pipeline: Pipeline[P], tid: str, partner_id: str | None, exc: Exception,
                 *, stage: str) -> Outcome:
    """The store refused what one transmission brought: it fails alone."""
    reason = f"the store refused its outcome: {describe(exc)}"
    log.error("transmission_not_recorded", transmission_id=tid, error=reason, exc_info=exc)
    pipeline.store.fail_held(tid, stage=stage, reason=f"not released: {reason}")
    pipeline.store.record_failed(tid, stage=stage, reason=reason, partner_id=partner_id)
    return Outcome(tid, T.FAILED, partner_id, stage=stage, reason=reason)


def log_outcomes(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.reason:
            log.warning("transmission_failed", transmission_id=o.transmission_id,
                        partner=o.partner_id, stage=o.stage, reason=o.reason,
                        status=o.status)
        elif o.queued or o.documents:
            log.info("transmission_processed", transmission_id=o.transmission_id,
                     partner=o.partner_id, documents=o.documents, queued=o.queued)
