"""What the metrics' counters are derived from: counts of facts the store never takes back.

Rows of transmissions and documents are never deleted (a purge drops the raw payload and
sets ``purged_at``; metadata, documents and canonical JSON stay), and the facts counted here
do not change once set: a transmission received, its size, a document stored, a document's
``published_at`` (set on the broker's confirm), a transmission settled in a final status
(a reprocess makes a new attempt; the first keeps its outcome). Counting them therefore
gives numbers that only grow, across purges and restarts, and every instance sharing the
store answers the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.core import clock
from gateway.core.status import TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.read import daily
from gateway.store.records import aware

#: Statuses a transmission keeps once it reached them (HELD, RECEIVED, PROCESSED, RENDERED
#: and SENT move on).
SETTLED = (TransmissionStatus.PUBLISHED, TransmissionStatus.FAILED,
           TransmissionStatus.QUARANTINED, TransmissionStatus.DUPLICATE,
           TransmissionStatus.PARTIAL, TransmissionStatus.DELIVERED)
_SETTLED = frozenset(x.value for x in SETTLED)


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts since the store began: inbound transmissions and bytes by (channel, partner),
    settled transmissions by (channel, status), documents received, published (confirmed)
    and failed by (partner, format), and each partner's last inbound transmission."""

    received: list[tuple[str, str, int, int]]
    settled: list[tuple[str, str, int]]
    documents: list[tuple[str, str, int, int, int]]
    last_received: dict[str, dt.datetime]


def totals(store: Store) -> Totals:
    """The counts (see ``Totals``), from the per-day figures (``gateway.store.read.daily``):
    the first call of a process reads every day once, later ones only the days that
    changed (usually today), so a scrape does not count a million rows."""
    today = clock.now().astimezone(dt.UTC).date()
    settled: dict[tuple[str, str], int] = {}
    for (channel, _partner, status), n in daily.status_totals(store, today).items():
        if status in _SETTLED:
            settled[(channel, status)] = settled.get((channel, status), 0) + n
    inbound = daily.inbound_totals(store, today)
    return Totals(
        received=[(c, p or "", n, b) for (c, p), (n, b) in inbound.received.items()],
        settled=[(c, st, n) for (c, st), n in settled.items()],
        documents=[(p, f or "", n, pub, fail)
                   for (p, f), (n, pub, fail) in inbound.documents.items()],
        last_received=dict(inbound.last_in))


#: Where ``published_since`` stopped: (published_at, document id) of the last row read.
Cursor = tuple[dt.datetime, str]


def published_since(store: Store, after: Cursor | None, until: dt.datetime, limit: int
                    ) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(document id, its transmission's received_at, published_at) of inbound documents
    published after ``after`` and at or before ``until``, in publishing order, at most
    ``limit`` (through ``ix_documents_status_published``)."""
    t, d = s.transmissions, s.documents
    q = (sa.select(d.c.id, t.c.received_at, d.c.published_at)
         .select_from(d.join(t, t.c.id == d.c.transmission_id))
         .where(d.c.status == s.DOC_PUBLISHED,  # a published document stays so
                d.c.published_at.is_not(None), d.c.published_at <= until,
                t.c.direction == "in")
         .order_by(d.c.published_at, d.c.id).limit(limit))
    if after is not None:
        at, doc = after
        # The plain bound lets the index range start there (an OR alone does not).
        q = q.where(d.c.published_at >= at,
                    sa.or_(d.c.published_at > at,
                           sa.and_(d.c.published_at == at, d.c.id > doc)))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [(i, aware(r), aware(p)) for i, r, p in rows]


__all__ = ["SETTLED", "Cursor", "Totals", "published_since", "totals"]
