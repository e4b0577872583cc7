"""After a crash: transmissions left RECEIVED are taken up again (``resume`` at start,
``sweep`` now and then), a poison payload is given up after ``max_attempts`` starts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from gateway.core import clock
from gateway.core.ports import P, TransmissionView

if TYPE_CHECKING:
    from gateway.core.pipeline import Pipeline

log = structlog.get_logger("edigw.pipeline")


def resume(pipeline: Pipeline[P], limit: int) -> int:
    """Process transmissions left RECEIVED by a crash; returns how many were processed.

    They are claimed for this instance first (``claim_received``): those nobody claimed,
    and those of instances found dead (on a shared store, another instance's work is left to
    it while it lives). Each start is counted (committed before the work). Those never
    started before go in batches; one started before without finishing (the process crashed,
    hung or was killed while on it, or on its batch) goes alone, so that a poison file cannot
    take its batch down with it, and after ``max_attempts`` starts it is marked FAILED."""
    done = 0
    while done < limit:
        rows = pipeline.store.claim_received(limit=64)
        if not rows:
            break
        _take(pipeline, rows)
        done += len(rows)
    pipeline._started.clear()
    return done


def sweep(pipeline: Pipeline[P], older_than: float, limit: int) -> int:
    """Process RECEIVED transmissions nothing is working on: those of instances found dead
    (taken over at once), and those received more than ``older_than`` seconds ago that no
    live instance claimed (a reprocess cut short by an outage, an ``edigw ingest`` killed
    half-way). Starts are counted as by ``resume``. Returns how many."""
    since = clock.now() - dt.timedelta(seconds=older_than)
    rows = pipeline.store.claim_received(limit=limit, since=since)
    if not rows:
        pipeline._started.clear()
        return 0
    me = getattr(pipeline.store, "instance_id", None)
    dead = sorted({c for r in rows if (c := getattr(r, "claimed_by", None)) and c != me})
    log.warning("received_swept", transmissions=len(rows), taken_over_from=dead or None)
    _take(pipeline, rows)
    return len(rows)


def _take(pipeline: Pipeline[P], rows: Sequence[TransmissionView]) -> None:
    """Process claimed rows: the never-started ones together, the others one by one."""
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
