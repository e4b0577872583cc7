"""After a crash: transmissions left RECEIVED are taken up again (``resume`` at start,
``sweep`` now and then), a poison payload is given up after ``max_attempts`` starts."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import structlog

from gateway.core import clock
from gateway.core.ports import P, TransmissionView

if TYPE_CHECKING:
    from gateway.core.pipeline import Pipeline

log = structlog.get_logger("edigw.pipeline")


def resume(pipeline: Pipeline[P], limit: int) -> int:
    """Process transmissions left RECEIVED by a crash; returns how many were processed.

    Each start is counted (committed before the work). Those never started before go
    in batches; one started before without finishing (the process crashed, hung or was
    killed while on it, or on its batch) goes alone, so that a poison file cannot take
    its batch down with it, and after ``max_attempts`` starts it is marked FAILED."""
    done = 0
    while done < limit:
        rows = pipeline.store.transmissions_to_process(limit=64)
        if not rows:
            break
        # A start is counted once per process: the supervisor running this again after
        # a store outage is not another crash.
        fresh = [r.id for r in rows if not r.attempts or r.id in pipeline._started]
        if fresh:
            _count_starts(pipeline, fresh)
            pipeline.process_many(fresh)
        for r in rows:
            if r.id in fresh:
                continue
            if r.attempts >= pipeline.max_attempts:
                _give_up(pipeline, r)
            else:
                _count_starts(pipeline, [r.id])
                pipeline.process_many([r.id])
        done += len(rows)
    pipeline._started.clear()
    return done


def sweep(pipeline: Pipeline[P], older_than: float, limit: int) -> int:
    """Process RECEIVED transmissions received more than ``older_than`` seconds ago that
    nothing is working on (a reprocess cut short by an outage, an ``edigw ingest``
    killed half-way); no start is counted (this is not a restart). Returns how many."""
    since = clock.now() - dt.timedelta(seconds=older_than)
    tids = [r.id for r in pipeline.store.transmissions_to_process(limit=limit)
            if r.received_at < since]
    if tids:
        log.warning("received_swept", transmissions=len(tids))
        pipeline.process_many(tids)
    return len(tids)


def _count_starts(pipeline: Pipeline[P], tids: list[str]) -> None:
    new = [t for t in tids if t not in pipeline._started]
    if new:
        pipeline.store.start_attempts(new)
        pipeline._started.update(new)


def _give_up(pipeline: Pipeline[P], row: TransmissionView) -> None:
    reason = (f"processing started {row.attempts} times without finishing (the process "
              "crashed, hung or was killed on it); not tried again ([processing] "
              f"max_attempts = {pipeline.max_attempts}); reprocess it once the cause is "
              "fixed")
    log.error("transmission_given_up", transmission_id=row.id, filename=row.filename,
              attempts=row.attempts)
    pipeline.store.fail_held(row.id, stage="process", reason=f"not released: {reason}")
    pipeline.store.record_failed(row.id, stage="process", reason=reason)
