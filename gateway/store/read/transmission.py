"""One transmission read in bounded pieces, for its console page and API at any size.

A 20,000-order interchange is one transmission with 20,000 documents: nothing here reads
them all. ``transmission_head`` gathers what is small (the row, its timeline, interchanges,
outbound payloads, transport, reprocessing) plus the documents counted by status and by the
ERP's answer (grouped in SQL); ``documents_page`` reads one page of documents with LIMIT and
OFFSET, ``document_of`` and ``payload_of`` one document. Every read takes a ``Scope``
(``gateway.core.scope``): a client's partner goes into the SQL.

The page is ordered by ``created_at, id``: ``documents_page`` first picks the page's ids
with the index on ``documents(transmission_id, created_at, id)`` when the store has it,
then reads those rows only (never the payload column).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.scope import EVERYTHING, Scope
from gateway.core.status import DocumentStatus, ErpStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.documents import document_row
from gateway.store.read.transmissions import attempts_of
from gateway.store.records import DocumentRow, OutboundRow, TransmissionRow, aware
from gateway.store.transport import transport_of

#: At most this many timeline events, interchanges and outbound payloads are shown; the
#: head says how many more there are.
SHOWN = 200


@dataclass(frozen=True, slots=True)
class DocumentCounts:
    """A transmission's documents counted in SQL: ``by_status`` (status -> count) and what
    the ERP said of the published ones (``accepted``, ``rejected``, ``waiting``)."""

    by_status: dict[str, int]
    erp: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def count(self, *statuses: str) -> int:
        return sum(self.by_status.get(x, 0) for x in statuses)


@dataclass(frozen=True, slots=True)
class TransmissionHead:
    """What one transmission's page shows besides its documents' rows: each list at most
    ``SHOWN`` long, ``more_*`` saying how many were left out."""

    transmission: TransmissionRow
    events: list[dict[str, Any]]
    interchanges: list[dict[str, Any]]
    outbound: list[OutboundRow]
    transport: dict[str, Any]
    reprocess_chain: list[str]
    attempts: list[TransmissionRow]
    counts: DocumentCounts
    more_events: int = 0
    more_interchanges: int = 0
    more_outbound: int = 0


def _within(table: sa.Table, scope: Scope) -> list[sa.ColumnElement[bool]]:
    return [table.c.partner_id == scope.partner] if scope.partner is not None else []


def document_counts(store: Store, tid: str) -> DocumentCounts:
    """Transmission ``tid``'s documents by status, and the ERP's answers on the published
    ones (one GROUP BY over the transmission's rows)."""
    d = s.documents
    by_status: dict[str, int] = {}
    erp = {"accepted": 0, "rejected": 0, "waiting": 0}
    with store.engine.connect() as conn:  # one pass over the transmission's rows
        rows = conn.execute(sa.select(d.c.status, d.c.erp_status, sa.func.count())
                            .where(d.c.transmission_id == tid)
                            .group_by(d.c.status, d.c.erp_status)).all()
    for status, answer, n in rows:
        by_status[status] = by_status.get(status, 0) + int(n)
        if status == DocumentStatus.PUBLISHED:
            key = {ErpStatus.ACCEPTED: "accepted",
                   ErpStatus.REJECTED: "rejected"}.get(answer, "waiting")
            erp[key] += int(n)
    return DocumentCounts(by_status=by_status, erp=erp)


def _bounded(conn: sa.Connection, query: sa.Select[Any], count: sa.Select[Any]
             ) -> tuple[list[Any], int]:
    rows = conn.execute(query.limit(SHOWN + 1)).all()
    if len(rows) <= SHOWN:
        return list(rows), 0
    return list(rows[:SHOWN]), int(conn.execute(count).scalar_one()) - SHOWN


def transmission_head(store: Store, tid: str,
                      scope: Scope = EVERYTHING) -> TransmissionHead | None:
    """Transmission ``tid`` (a unique prefix will do) and what hangs off it but its
    documents' rows, or None (also when it is outside ``scope``)."""
    t = store.get_transmission(tid, scope)
    if t is None:
        return None
    e, i, o = s.transmission_events, s.interchanges, s.outbound
    with store.engine.connect() as conn:
        events, more_events = _bounded(
            conn, sa.select(e.c.at, e.c.event, e.c.detail)
            .where(e.c.transmission_id == t.id).order_by(e.c.id),
            sa.select(sa.func.count()).select_from(e).where(e.c.transmission_id == t.id))
        interchanges, more_interchanges = _bounded(
            conn, sa.select(i).where(i.c.transmission_id == t.id).order_by(i.c.id),
            sa.select(sa.func.count()).select_from(i).where(i.c.transmission_id == t.id))
        outbound_ids, more_outbound = _bounded(
            conn, sa.select(o.c.id).where(o.c.transmission_id == t.id)
            .order_by(o.c.created_at, o.c.id),
            sa.select(sa.func.count()).select_from(o).where(o.c.transmission_id == t.id))
    outbound = (store.outbound_of(t.id) if not more_outbound else
                [x for x in (store.get_outbound(r.id) for r in outbound_ids) if x is not None])
    return TransmissionHead(
        transmission=t,
        events=[dict(at=aware(r.at), event=r.event, detail=r.detail) for r in events],
        interchanges=[dict(r._mapping) for r in interchanges], outbound=outbound,
        transport=transport_of(store, t.id), reprocess_chain=store.reprocess_chain(t.id),
        attempts=attempts_of(store, t.id, scope), counts=document_counts(store, t.id),
        more_events=more_events, more_interchanges=more_interchanges,
        more_outbound=more_outbound)


def documents_page(store: Store, tid: str, *, limit: int, offset: int = 0,
                   statuses: Sequence[str] = (), scope: Scope = EVERYTHING
                   ) -> list[DocumentRow]:
    """One page of transmission ``tid``'s documents (of ``statuses`` when given), in the
    order they were made, without their payloads."""
    d = s.documents
    conds = [d.c.transmission_id == tid, *_within(d, scope)]
    if statuses:
        conds.append(d.c.status.in_(list(statuses)))
    keys = (sa.select(d.c.id).where(*conds).order_by(d.c.created_at, d.c.id)
            .limit(limit).offset(offset))
    cols = [c for c in d.c if c.name != "payload"]
    with store.engine.connect() as conn:
        ids = list(conn.execute(keys).scalars())
        if not ids:
            return []
        rows = conn.execute(sa.select(*cols).where(d.c.id.in_(ids))).all()
    order = {did: n for n, did in enumerate(ids)}
    return sorted((document_row(r) for r in rows), key=lambda r: order[r.id])


def document_of(store: Store, document_id: str,
                scope: Scope = EVERYTHING) -> DocumentRow | None:
    """Document ``document_id`` without its payload, or None (also outside ``scope``)."""
    d = s.documents
    cols = [c for c in d.c if c.name != "payload"]
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*cols).where(d.c.id == document_id,
                                                  *_within(d, scope))).first()
    return document_row(row) if row is not None else None


def first_document(store: Store, tid: str, statuses: Sequence[str] = ()
                   ) -> DocumentRow | None:
    """Transmission ``tid``'s first document (of ``statuses`` when given), or None."""
    found = documents_page(store, tid, limit=1, statuses=statuses)
    return found[0] if found else None


def payload_of(store: Store, document_id: str) -> dict[str, Any]:
    """The canonical JSON of one document, parsed."""
    d = s.documents
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(d.c.payload).where(d.c.id == document_id)).scalar_one()
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


__all__ = ["SHOWN", "DocumentCounts", "TransmissionHead", "document_counts", "document_of",
           "documents_page", "first_document", "payload_of", "transmission_head"]
