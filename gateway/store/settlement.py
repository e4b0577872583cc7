"""How a processed transmission settles from its documents' statuses.

PROCESSED while a document waits in the outbox, then HELD, PARTIAL or PUBLISHED; shared
by the pipeline's writes, the publisher's confirmations and operators' decisions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.engine import chunks

#: Documents of a transmission that went nowhere: it is PARTIAL rather than PUBLISHED.
NOT_PUBLISHED = (s.DOC_FAILED, s.DOC_UNSUPPORTED, s.DOC_REJECTED)

SETTLED: dict[str, str] = {
    s.PUBLISHED: "every document confirmed by the broker",
    s.PARTIAL: "every queued document confirmed by the broker; others failed or were "
               "rejected (see the documents)",
    s.HELD: "every queued document confirmed by the broker; a document is held as a "
            "conflict for an operator (edigw conflicts)",
}


def settle(pending: int, conflicts: int, failed: int) -> str:
    """A processed transmission's status from its documents: PROCESSED while any is in the
    outbox, then HELD while a conflict waits, PARTIAL when one failed or was rejected,
    else PUBLISHED."""
    if pending:
        return s.PROCESSED
    if conflicts:
        return s.HELD
    return s.PARTIAL if failed else s.PUBLISHED


def status_counts(conn: sa.Connection, tids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per transmission, its documents counted by status."""
    d = s.documents
    out: dict[str, dict[str, int]] = {}
    for chunk in chunks(list(tids), 500):
        for tid, status, n in conn.execute(
                sa.select(d.c.transmission_id, d.c.status, sa.func.count())
                .where(d.c.transmission_id.in_(chunk))
                .group_by(d.c.transmission_id, d.c.status)):
            out.setdefault(tid, {})[status] = n
    return out


def settle_counts(counts: dict[str, int]) -> str:
    return settle(counts.get(s.PENDING, 0), counts.get(s.DOC_CONFLICT, 0),
                   sum(counts.get(x, 0) for x in NOT_PUBLISHED))


def resettle(conn: sa.Connection, tids: Sequence[str], now: dt.datetime) -> dict[str, str]:
    """After an operator's decision: the status of processed transmissions worked out
    again from their documents (an event for each that changes); tid -> new status."""
    t = s.transmissions
    counts = status_counts(conn, tids)
    changed: dict[str, str] = {}
    rows = conn.execute(sa.select(t.c.id, t.c.status).where(t.c.id.in_(list(tids)))).all()
    for tid, old in rows:
        if old not in (s.PROCESSED, s.PUBLISHED, s.PARTIAL, s.HELD):
            continue
        new = settle_counts(counts.get(tid, {}))
        if new == old:
            continue
        conn.execute(t.update().where(t.c.id == tid).values(status=new, updated_at=now))
        conn.execute(s.transmission_events.insert().values(
            transmission_id=tid, at=now, event=new.lower(),
            detail=SETTLED.get(new, "documents queued for publishing again")))
        changed[tid] = new
    return changed
