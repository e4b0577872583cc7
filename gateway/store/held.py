"""Held documents: a streamed transmission's documents, stored as they are made and
released to the outbox (or failed) once nothing can still reject them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from gateway.core.ids import new_id
from gateway.core.records import NewDocument
from gateway.store import schema as s
from gateway.store.engine import StoreEngine, chunks, utcnow
from gateway.store.judge import (
    Held,
    conflict_events,
    document_rows,
    duplicate_events,
    earlier_documents,
)

# A large file is processed as a stream: its documents are stored as they are made,
# HELD (no outbox row), so memory stays flat; they are released to the outbox only
# once what could still reject them has been read (the UNT of a message published in
# parts, the UNZ of the interchange), or failed with the reason. The ERP never gets a
# document of an interchange that turned out bad, nor a part without its total.


class HeldRepository(StoreEngine):
    """A streamed transmission's held documents: stored, patched, failed, released."""

    def hold_documents(self, tid: str, *, partner_id: str,
                       docs: Sequence[NewDocument]) -> list[str]:
        """Store ``docs`` HELD (failed messages as they are), in one commit; their ids."""
        now = utcnow()
        rows = [dict(id=new_id(), transmission_id=tid, partner_id=partner_id,
                     doc_type=d.doc_type, schema_version=d.schema_version,
                     business_number=d.business_number, interchange_ref=d.interchange_ref,
                     message_ref=d.message_ref, message_id=d.message_id,
                     status=d.status or s.DOC_HELD, created_at=now, published_at=None,
                     payload=d.payload, stage=d.stage, reason=d.reason,
                     content_sha=d.content_sha) for d in docs]
        if rows:
            with self._begin() as conn:
                conn.execute(s.documents.insert(), rows)
        return [str(r["id"]) for r in rows]

    def patch_held(self, document_ids: Sequence[str], old: bytes, new: bytes) -> None:
        """Replace ``old`` by ``new`` once in each held payload (a part's total), one commit.

        Payloads are read four at a time: a part may be as large as a broker message (1 MB),
        and memory must not grow with the number of parts."""
        d = s.documents
        with self._begin() as conn:
            for chunk in chunks(list(document_ids), 4):
                rows = conn.execute(sa.select(d.c.id, d.c.payload).where(d.c.id.in_(chunk))
                                    .where(d.c.status == s.DOC_HELD)).all()
                if rows:
                    conn.execute(d.update().where(d.c.id == sa.bindparam("b_id"))
                                 .values(payload=sa.bindparam("payload")),
                                 [dict(b_id=r.id, payload=bytes(r.payload).replace(old, new, 1))
                                  for r in rows])

    def fail_held(self, tid: str, *, stage: str, reason: str,
                  document_ids: Sequence[str] | None = None) -> int:
        """Mark held documents FAILED with ``stage`` and ``reason`` (those of ``tid``, or only
        ``document_ids``); returns how many."""
        d = s.documents
        update = (d.update().where(d.c.transmission_id == tid).where(d.c.status == s.DOC_HELD)
                  .values(status=s.DOC_FAILED, stage=stage, reason=reason))
        failed = 0
        with self._begin() as conn:
            if document_ids is None:
                failed += conn.execute(update).rowcount
            else:
                for chunk in chunks(list(document_ids), 500):
                    failed += conn.execute(update.where(d.c.id.in_(chunk))).rowcount
        return failed

    def release_held(self, tid: str, *, on_conflict: str = "hold",
                     test: bool = False) -> tuple[int, int]:
        """Queue every held document of ``tid`` for publishing, in one commit; returns how
        many were queued and how many were kept back (duplicates, conflicts held). As
        ``record_processed`` decides: the same content received before is a DUPLICATE,
        the same number with other content a CONFLICT (held, or published with a note under
        ``on_conflict = "publish"``); one this transmission released before a crash is
        dropped. ``test``: the partner is in test (routed to the test queue)."""
        d = s.documents
        now = utcnow()
        queued = kept = 0
        with self._begin() as conn:
            while True:
                rows = conn.execute(
                    sa.select(d.c.id, d.c.message_id, d.c.doc_type, d.c.partner_id,
                              d.c.business_number, d.c.content_sha)
                    .where(d.c.transmission_id == tid).where(d.c.status == s.DOC_HELD)
                    .order_by(d.c.id).limit(1000)).all()
                if not rows:
                    break
                held = [Held(r, on_conflict, test=test) for r in rows]
                existing = earlier_documents(conn, [(h.partner_id, h) for h in held])
                made = document_rows(tid, rows[0].partner_id, held, existing, now,
                                      ids=[r.id for r in rows])
                stored = {r["id"] for r in made.docs}
                again = [r.id for r in rows if r.id not in stored]
                if again:
                    conn.execute(d.delete().where(d.c.id.in_(again)))
                if made.docs:
                    conn.execute(d.update().where(d.c.id == sa.bindparam("b_id")).values(
                        status=sa.bindparam("status"), conflict_of=sa.bindparam("conflict_of")),
                        [dict(b_id=r["id"], status=r["status"], conflict_of=r["conflict_of"])
                         for r in made.docs])
                if made.outbox:
                    conn.execute(s.outbox.insert(), made.outbox)
                queued += len(made.outbox)
                kept += len(made.duplicates) + sum(1 for c in made.conflicts if c.held)
                events = duplicate_events(tid, made.duplicates, now)
                events += conflict_events(conn, tid, made.conflicts, existing, now)
                if events:
                    conn.execute(s.transmission_events.insert(), events)
        return queued, kept
