"""Conflicts an operator decides: documents held because their number was received before
with other content (status CONFLICT, see ``schema.DOC_CONFLICT``).

``ConflictDesk`` lists them with what differs from the earlier document, and releases one
(PENDING with an outbox row: the publisher sends it under its own message id) or rejects it
(REJECTED with the reason; never published). Each decision is one commit that also writes
the transmission's timeline and settles its status again; the audit row follows.

    ConflictError
    ├── UnknownConflict     no document has this id
    └── NotAConflict        the document is not (or no longer) held as a conflict
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core import clock
from gateway.core.conflicts import Comparison, compare
from gateway.core.documents import routing_key
from gateway.core.errors import EdigwError
from gateway.core.lifecycle import TEST_EVENT
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.db import Store, _document_row, resettle
from gateway.store.records import DocumentRow

_COLUMNS = [c for c in s.documents.c if c.name != "payload"]


class ConflictError(EdigwError):
    """An operator's decision on a conflict could not be made."""

    def __init__(self, message: str, *, document_id: str) -> None:
        self.document_id = document_id
        super().__init__(message)


class UnknownConflict(ConflictError):
    def __init__(self, document_id: str) -> None:
        super().__init__(f"no document {document_id}", document_id=document_id)


class NotAConflict(ConflictError):
    def __init__(self, document_id: str, status: str) -> None:
        self.status = status
        super().__init__(f"document {document_id} is {status}, not held as a CONFLICT",
                         document_id=document_id)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A held document, the earlier one with its number, and what differs."""

    document: DocumentRow
    earlier: DocumentRow | None
    comparison: Comparison

    def as_dict(self) -> dict[str, Any]:
        return {"document": self.document.as_dict(),
                "earlier": self.earlier.as_dict() if self.earlier else None,
                "summary": self.comparison.summary(), **self.comparison.as_dict()}


class ConflictDesk:
    """List, show, release and reject conflicts (CLI, API and console share it)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.audit = AuditLog(store)

    def list(self, *, partner: str | None = None, status: str = s.DOC_CONFLICT,
             limit: int = 100, offset: int = 0) -> list[Conflict]:
        """Documents in ``status`` (CONFLICT: those waiting; REJECTED: those rejected),
        newest first, each with its differences."""
        d = s.documents
        q = (_held(sa.select(*_COLUMNS), partner, status)
             .order_by(d.c.created_at.desc(), d.c.id.desc()).limit(max(1, min(limit, 1000)))
             .offset(max(0, offset)))
        with self.store.engine.connect() as conn:
            rows = [_document_row(r) for r in conn.execute(q)]
            return [self._with_earlier(conn, r) for r in rows]

    def count(self, *, partner: str | None = None, status: str = s.DOC_CONFLICT) -> int:
        """How many documents ``list`` pages through with the same filters."""
        q = _held(sa.select(sa.func.count()).select_from(s.documents), partner, status)
        with self.store.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def get(self, document_id: str) -> Conflict:
        """One document held (or once held) as a conflict; UnknownConflict when there is
        none with this id, NotAConflict when it never conflicted."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS)
                               .where(s.documents.c.id == document_id)).first()
            if row is None:
                raise UnknownConflict(document_id)
            doc = _document_row(row)
            if doc.status != s.DOC_CONFLICT and doc.conflict_of is None:
                raise NotAConflict(document_id, doc.status)
            return self._with_earlier(conn, doc)

    def release(self, document_id: str, *, by: str, reason: str | None = None,
                remote: str | None = None) -> DocumentRow:
        """Queue a held conflict for publishing (PENDING with an outbox row)."""
        return self._decide(document_id, by=by, reason=reason, remote=remote, release=True)

    def reject(self, document_id: str, *, by: str, reason: str,
               remote: str | None = None) -> DocumentRow:
        """Reject a held conflict: REJECTED with ``reason``, never published."""
        if not reason.strip():
            raise ConflictError("a reason is required to reject a document",
                                document_id=document_id)
        return self._decide(document_id, by=by, reason=reason, remote=remote, release=False)

    def _decide(self, document_id: str, *, by: str, reason: str | None, remote: str | None,
                release: bool) -> DocumentRow:
        d = s.documents
        now = clock.now()
        action = "released" if release else "rejected"
        with self.store._begin() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(d.c.id == document_id)).first()
            if row is None:
                raise UnknownConflict(document_id)
            # Decided once: a second click (or a concurrent one) finds it no longer held.
            values: dict[str, Any] = (dict(status=s.PENDING) if release else
                                      dict(status=s.DOC_REJECTED, stage="conflict",
                                           reason=f"rejected by {by}: {reason}"))
            changed = conn.execute(d.update().where(d.c.id == document_id)
                                   .where(d.c.status == s.DOC_CONFLICT).values(**values)).rowcount
            if not changed:
                raise NotAConflict(document_id, row.status)
            if release:
                # Received while its partner was in test: to the test queue, as it would
                # have gone (core.lifecycle), whatever the partner's state is now.
                e = s.transmission_events
                test = conn.execute(sa.select(e.c.id).where(
                    e.c.transmission_id == row.transmission_id,
                    e.c.event == TEST_EVENT).limit(1)).first() is not None
                conn.execute(s.outbox.insert().values(
                    document_id=document_id,
                    routing_key=routing_key(row.doc_type, row.partner_id, test=test),
                    created_at=now, attempts=0))
            number = f"{row.doc_type} {row.business_number or row.message_id}"
            conn.execute(s.transmission_events.insert().values(
                transmission_id=row.transmission_id, at=now, event=f"conflict-{action}",
                detail=f"{number}: document {document_id} {action} by {by}"
                       + (f": {reason}" if reason else "")
                       + ("; queued for publishing" if release else "; not published")))
            resettle(conn, [row.transmission_id], now)
            doc = _document_row(conn.execute(sa.select(*_COLUMNS)
                                             .where(d.c.id == document_id)).one())
        self.audit.record(by, f"conflict.{'release' if release else 'reject'}",
                          f"document:{document_id}",
                          before={"status": s.DOC_CONFLICT},
                          after={"status": doc.status, "reason": reason,
                                 "transmission": row.transmission_id,
                                 "business_number": row.business_number},
                          remote=remote)
        return doc

    def _with_earlier(self, conn: sa.Connection, doc: DocumentRow) -> Conflict:
        d = s.documents
        earlier = None
        comparison = Comparison([], 0)
        if doc.conflict_of:
            row = conn.execute(sa.select(*_COLUMNS).where(d.c.id == doc.conflict_of)).first()
            earlier = _document_row(row) if row else None
            payloads = dict(conn.execute(sa.select(d.c.id, d.c.payload).where(
                d.c.id.in_([doc.id, doc.conflict_of]))).all())
            if doc.conflict_of in payloads and doc.id in payloads:
                comparison = compare(json.loads(payloads[doc.conflict_of]),
                                     json.loads(payloads[doc.id]))
        return Conflict(doc, earlier, comparison)


def _held(q: sa.Select[Any], partner: str | None, status: str) -> sa.Select[Any]:
    """``q`` narrowed to the documents in ``status`` (REJECTED: those that conflicted)."""
    d = s.documents
    q = q.where(d.c.status == status)
    if status != s.DOC_CONFLICT:
        q = q.where(d.c.conflict_of.is_not(None))
    if partner:
        q = q.where(d.c.partner_id == partner)
    return q
