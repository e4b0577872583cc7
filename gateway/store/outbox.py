"""The outbox repository: documents waiting for the broker, and what its answers do
(published, unroutable, failed for a retry), settling their transmissions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.engine import StoreEngine, chunks, utcnow
from gateway.store.instances import live_instances
from gateway.store.records import OutboxItem
from gateway.store.settlement import NOT_PUBLISHED, SETTLED, settle

#: Seconds an instance's claim on outbox rows lasts even while it is alive (a publisher
#: stuck that long lets another instance publish them: at least once, same message id).
CLAIM_FOR = 300.0


class OutboxRepository(StoreEngine):
    """The outbox as the publisher reads and confirms it."""

    def pending_outbox(self, limit: int, *, exclude: Iterable[int] = ()) -> list[OutboxItem]:
        """Outbox rows to publish, oldest first, skipping ids already in flight.

        Serving (``instance_id`` set), the rows are claimed for this instance: another one
        skips them while this one is alive (the claim outlives the transaction), and takes
        them over when it dies or after ``CLAIM_FOR`` seconds. On PostgreSQL, rows another
        instance is claiming at the same moment are skipped (``FOR UPDATE SKIP LOCKED``)."""
        o, d = s.outbox, s.documents
        q = (
            sa.select(o.c.id, o.c.routing_key, o.c.attempts, d.c.id.label("document_id"),
                      d.c.transmission_id, d.c.partner_id, d.c.doc_type, d.c.schema_version,
                      d.c.message_id, d.c.payload)
            .select_from(o.join(d, d.c.id == o.c.document_id))
            .order_by(o.c.id)
            .limit(limit)
        )
        exclude = list(exclude)
        if exclude:
            q = q.where(o.c.id > max(exclude)) if len(exclude) > 500 else q.where(o.c.id.not_in(exclude))
        me = self.instance_id
        if me is None:
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
        else:
            now = utcnow()
            q = q.where(sa.or_(o.c.claimed_by.is_(None), o.c.claimed_by == me,
                               o.c.claimed_until < now,
                               o.c.claimed_by.not_in(live_instances(now))))
            q = q.with_for_update(of=o, skip_locked=True)
            with self._begin() as conn:
                rows = conn.execute(q).all()
                if rows:
                    conn.execute(o.update().where(o.c.id.in_([r.id for r in rows])).values(
                        claimed_by=me, claimed_until=now + dt.timedelta(seconds=CLAIM_FOR)))
        return [OutboxItem(outbox_id=r.id, document_id=r.document_id,
                           transmission_id=r.transmission_id, partner_id=r.partner_id,
                           doc_type=r.doc_type, schema_version=r.schema_version,
                           message_id=r.message_id, routing_key=r.routing_key, body=r.payload,
                           attempts=r.attempts) for r in rows]

    def mark_published(self, outbox_ids: Sequence[int]) -> None:
        """The broker confirmed these messages: documents PUBLISHED, outbox rows removed."""
        if not outbox_ids:
            return
        now = utcnow()
        # Two statements per 500 ids (RETURNING: SQLite 3.35+, PostgreSQL) and one closing
        # look for the whole flush: the publisher holds SQLite's write lock meanwhile, and
        # the pipeline's commits wait for it.
        tids: set[str] = set()
        with self._begin() as conn:
            for chunk in chunks(list(outbox_ids), 500):
                rows = conn.execute(s.outbox.delete().where(s.outbox.c.id.in_(chunk))
                                    .returning(s.outbox.c.document_id)).scalars().all()
                if not rows:
                    continue
                tids.update(conn.execute(
                    s.documents.update().where(s.documents.c.id.in_(rows))
                    .values(status=s.DOC_PUBLISHED, published_at=now)
                    .returning(s.documents.c.transmission_id)).scalars())
            if tids:
                self._close_transmissions(conn, sorted(tids), now)

    def mark_unroutable(self, outbox_id: int, reason: str) -> None:
        """The broker returned this message: no queue takes its routing key."""
        now = utcnow()
        with self._begin() as conn:
            row = conn.execute(sa.select(s.outbox.c.document_id).where(s.outbox.c.id == outbox_id)).first()
            if row is None:
                return
            conn.execute(s.documents.update().where(s.documents.c.id == row.document_id)
                         .values(status=s.UNROUTABLE))
            conn.execute(s.outbox.delete().where(s.outbox.c.id == outbox_id))
            tid = conn.execute(sa.select(s.documents.c.transmission_id, s.documents.c.business_number)
                               .where(s.documents.c.id == row.document_id)).one()
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid.transmission_id, at=now, event="unroutable",
                detail=f"document {tid.business_number or row.document_id}: {reason}"))

    def record_publish_failure(self, outbox_ids: Sequence[int], error: str) -> None:
        """A publish attempt failed (nack, lost connection); the rows stay for a retry."""
        if not outbox_ids:
            return
        with self._begin() as conn:
            for chunk in chunks(list(outbox_ids), 500):
                conn.execute(s.outbox.update().where(s.outbox.c.id.in_(chunk))
                             .values(attempts=s.outbox.c.attempts + 1, last_error=error[:2000]))

    def outbox_size(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(s.outbox)).scalar_one()

    def _close_transmissions(self, conn: sa.Connection, tids: Sequence[str], now: dt.datetime) -> None:
        """Settle the PROCESSED transmissions none of whose documents is still pending:
        PUBLISHED, or PARTIAL (a document failed or was rejected) or HELD (a conflict
        waits for an operator)."""
        for chunk in chunks(list(tids), 500):
            still_pending = set(conn.execute(
                sa.select(s.documents.c.transmission_id)
                .where(s.documents.c.transmission_id.in_(chunk))
                .where(s.documents.c.status == s.PENDING).distinct()).scalars())
            done = [t for t in chunk if t not in still_pending]
            if not done:
                continue
            # Only the statuses that change the outcome are looked at (few rows, by index).
            kept: dict[str, set[str]] = {}
            for tid_, status in conn.execute(
                    sa.select(s.documents.c.transmission_id, s.documents.c.status)
                    .where(s.documents.c.transmission_id.in_(done))
                    .where(s.documents.c.status.in_((s.DOC_CONFLICT, *NOT_PUBLISHED)))
                    .distinct()):
                kept.setdefault(tid_, set()).add(status)
            by_status: dict[str, list[str]] = {}
            for t in done:
                statuses = kept.get(t, set())
                settled = settle(0, s.DOC_CONFLICT in statuses,
                                  bool(statuses - {s.DOC_CONFLICT}))
                by_status.setdefault(settled, []).append(t)
            for status, group in by_status.items():
                closed = conn.execute(
                    s.transmissions.update()
                    .where(s.transmissions.c.id.in_(group))
                    .where(s.transmissions.c.status == s.PROCESSED)
                    .values(status=status, updated_at=now)
                    .returning(s.transmissions.c.id)).scalars().all()
                if closed:
                    conn.execute(s.transmission_events.insert(), [
                        dict(transmission_id=t, at=now, event=status.lower(),
                             detail=SETTLED[status]) for t in closed])
