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

from gateway.core.status import DocumentStatus, TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: Statuses a transmission keeps once it reached them (HELD, RECEIVED, PROCESSED, RENDERED
#: and SENT move on).
SETTLED = (TransmissionStatus.PUBLISHED, TransmissionStatus.FAILED,
           TransmissionStatus.QUARANTINED, TransmissionStatus.DUPLICATE,
           TransmissionStatus.PARTIAL, TransmissionStatus.DELIVERED)


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
    """The counts (see ``Totals``), in one connection."""
    t, d = s.transmissions, s.documents
    inbound = t.c.direction == "in"
    published = sa.func.count(d.c.published_at)
    failed = sa.func.sum(sa.case((d.c.status == DocumentStatus.FAILED.value, 1), else_=0))
    with store.engine.connect() as conn:
        received = conn.execute(
            sa.select(t.c.channel, t.c.partner_id, sa.func.count(), sa.func.sum(t.c.size))
            .where(inbound).group_by(t.c.channel, t.c.partner_id)).all()
        settled = conn.execute(
            sa.select(t.c.channel, t.c.status, sa.func.count())
            .where(t.c.status.in_([x.value for x in SETTLED]))
            .group_by(t.c.channel, t.c.status)).all()
        documents = conn.execute(
            sa.select(d.c.partner_id, t.c.format, sa.func.count(), published, failed)
            .select_from(d.join(t, t.c.id == d.c.transmission_id))
            .where(inbound).group_by(d.c.partner_id, t.c.format)).all()
        last = conn.execute(
            sa.select(t.c.partner_id, sa.func.max(t.c.received_at))
            .where(inbound, t.c.partner_id.is_not(None)).group_by(t.c.partner_id)).all()
    return Totals(
        received=[(c, p or "", int(n), int(b or 0)) for c, p, n, b in received],
        settled=[(c, st, int(n)) for c, st, n in settled],
        documents=[(p, f or "", int(n), int(pub), int(fail or 0))
                   for p, f, n, pub, fail in documents],
        last_received={p: aware(at) for p, at in last if at is not None})


#: Where ``published_since`` stopped: (published_at, document id) of the last row read.
Cursor = tuple[dt.datetime, str]


def published_since(store: Store, after: Cursor | None, until: dt.datetime, limit: int
                    ) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(document id, its transmission's received_at, published_at) of inbound documents
    published after ``after`` and at or before ``until``, in publishing order, at most
    ``limit``."""
    t, d = s.transmissions, s.documents
    q = (sa.select(d.c.id, t.c.received_at, d.c.published_at)
         .select_from(d.join(t, t.c.id == d.c.transmission_id))
         .where(d.c.published_at.is_not(None), d.c.published_at <= until,
                t.c.direction == "in")
         .order_by(d.c.published_at, d.c.id).limit(limit))
    if after is not None:
        at, doc = after
        q = q.where(sa.or_(d.c.published_at > at,
                           sa.and_(d.c.published_at == at, d.c.id > doc)))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [(i, aware(r), aware(p)) for i, r, p in rows]


__all__ = ["SETTLED", "Cursor", "Totals", "published_since", "totals"]
