"""The transmission log and one transmission's view, for the CLI, the API and the pages.

``transmission_view(store, tid)`` gathers everything known about one transmission (its
timeline, documents with the ERP's answer, interchanges, outbound payloads, transport
details and reprocessing attempts); ``transmission_log`` pages through the log with filters.
Each takes a ``Scope`` (``gateway.core.scope``): a client's partner goes into the SQL, so a
client reaches no other partner's row whatever id or filter it sends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway.core.scope import EVERYTHING, Scope
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.erp import ErpAcks
from gateway.store.records import DocumentRow, OutboundRow, TransmissionRow
from gateway.store.transport import transport_of


@dataclass(frozen=True, slots=True)
class TransmissionView:
    """One transmission and what hangs off it. ``transport`` holds what the transport that
    brought it recorded, by transport (see ``gateway.store.transport``); ``attempts`` are
    the reprocessing attempts made of it, oldest first; ``reprocess_chain`` the ids it was
    reprocessed from."""

    transmission: TransmissionRow
    events: list[dict[str, Any]]
    documents: list[DocumentRow]
    erp: dict[str, Any] | None
    interchanges: list[dict[str, Any]]
    outbound: list[OutboundRow]
    transport: dict[str, Any]
    reprocess_chain: list[str]
    attempts: list[TransmissionRow]


def attempts_of(store: Store, tid: str, scope: Scope = EVERYTHING) -> list[TransmissionRow]:
    """The reprocessing attempts made of transmission ``tid``, oldest first."""
    t = s.transmissions
    within = [t.c.partner_id == scope.partner] if scope.partner is not None else []
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.reprocess_of == tid, *within)
                            .order_by(t.c.received_at)).all()
    return [TransmissionRow.from_row(r) for r in rows]


def transmission_view(store: Store, tid: str,
                      scope: Scope = EVERYTHING) -> TransmissionView | None:
    """Everything shown about transmission ``tid`` (a unique prefix will do), or None (also
    when it is outside ``scope``)."""
    t = store.get_transmission(tid, scope)
    if t is None:
        return None
    return TransmissionView(
        transmission=t, events=store.events(t.id), documents=store.documents_of(t.id),
        erp=ErpAcks(store).erp_summary([t.id]).get(t.id),
        interchanges=store.interchanges_of(t.id), outbound=store.outbound_of(t.id),
        transport=transport_of(store, t.id), reprocess_chain=store.reprocess_chain(t.id),
        attempts=attempts_of(store, t.id, scope))


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of the transmission log; empty ones do not filter. ``until`` is exclusive."""

    partner: str | None = None
    channel: str | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    format: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    #: "in" (received from partners) or "out" (documents edigw sends them); None: both.
    direction: str | None = None


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of the log: how many match in all, and those on the page, newest first."""

    total: int
    rows: list[TransmissionRow]


def _conditions(query: LogQuery, scope: Scope) -> list[sa.ColumnElement[bool]]:
    t = s.transmissions
    conds: list[sa.ColumnElement[bool]] = []
    if scope.partner is not None:
        conds.append(t.c.partner_id == scope.partner)
    if query.partner:
        conds.append(t.c.partner_id == query.partner)
    if query.channel:
        conds.append(t.c.channel == query.channel)
    if query.statuses:
        conds.append(t.c.status.in_(list(query.statuses)))
    if query.format:
        conds.append(t.c.format == query.format)
    if query.since:
        conds.append(t.c.received_at >= query.since)
    if query.until:
        conds.append(t.c.received_at < query.until)
    if query.direction:
        conds.append(t.c.direction == query.direction)
    return conds


def transmission_log(store: Store, query: LogQuery, *, limit: int, offset: int = 0,
                     scope: Scope = EVERYTHING) -> list[TransmissionRow]:
    """The transmissions matching ``query`` within ``scope``, newest first."""
    t = s.transmissions
    q = (sa.select(t).where(*_conditions(query, scope))
         .order_by(t.c.received_at.desc(), t.c.id.desc()).limit(limit))
    if offset:
        q = q.offset(offset)
    with store.engine.connect() as conn:
        return [TransmissionRow.from_row(r) for r in conn.execute(q)]


def transmission_page(store: Store, query: LogQuery, *, limit: int, offset: int = 0,
                      scope: Scope = EVERYTHING) -> LogPage:
    """The transmissions matching ``query`` within ``scope``, newest first, with how many
    match in all."""
    t = s.transmissions
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t)
                             .where(*_conditions(query, scope))).scalar_one()
    return LogPage(total=int(total), rows=transmission_log(store, query, limit=limit,
                                                           offset=offset, scope=scope))


def document_meta(store: Store, document_id: str,
                  scope: Scope = EVERYTHING) -> dict[str, Any] | None:
    """A document's columns but its payload (as stored), or None when unknown or outside
    ``scope``."""
    d = s.documents
    within = [d.c.partner_id == scope.partner] if scope.partner is not None else []
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*[c for c in d.c if c.name != "payload"])
                           .where(d.c.id == document_id, *within)).first()
    return dict(row._mapping) if row is not None else None
