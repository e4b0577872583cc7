"""The transmission log and one transmission's view, for the CLI, the API and the pages.

``transmission_view(store, tid)`` gathers everything known about one transmission (its
timeline, documents with the ERP's answer, interchanges, outbound payloads, transport
details and reprocessing attempts); ``transmission_page`` pages through the log with filters
(with the total, and each row's business numbers and ERP answer), ``transmission_stream``
reads all of it for an export.
Each takes a ``Scope`` (``gateway.core.scope``): a client's partner goes into the SQL, so a
client reaches no other partner's row whatever id or filter it sends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from gateway.core.scope import EVERYTHING, Scope
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import DocumentRow, OutboundRow, TransmissionRow


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
    from gateway.store.erp import ErpAcks  # one transmission's view only, not the log's
    from gateway.store.transport import transport_of

    t = store.get_transmission(tid, scope)
    if t is None:
        return None
    return TransmissionView(
        transmission=t, events=store.events(t.id), documents=store.documents_of(t.id),
        erp=ErpAcks(store).erp_summary([t.id]).get(t.id),
        interchanges=store.interchanges_of(t.id), outbound=store.outbound_of(t.id),
        transport=transport_of(store, t.id), reprocess_chain=store.reprocess_chain(t.id),
        attempts=attempts_of(store, t.id, scope))


#: ``LogQuery.partner`` for the transmissions of no partner (unknown senders).
NO_PARTNER = "-"


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of the transmission log; empty ones do not filter. ``until`` is exclusive.
    ``text`` is what an operator types in the search field: a transmission id, a file name,
    a partner id or a business number (order, invoice …) of one of its documents, matched
    exactly (each an indexed lookup, so the count stays bounded at a million rows)."""

    partner: str | None = None
    channel: str | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    format: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    #: "in" (received from partners) or "out" (documents edigw sends them); None: both.
    direction: str | None = None
    text: str | None = None


#: What the ERP said of a transmission's documents, in the words ``edigw show`` uses too.
ERP_ACKNOWLEDGED, ERP_REJECTED, ERP_WAITING, ERP_NOT_APPLICABLE = (
    "acknowledged", "rejected", "waiting", "not applicable")


def erp_word(status: str | None, erp_status: str | None) -> str:
    """What the ERP said of one document: ``not applicable`` unless it was published (only a
    published document reaches the ERP), then ``acknowledged``, ``rejected`` or ``waiting``."""
    if status != s.DOC_PUBLISHED:
        return ERP_NOT_APPLICABLE
    if erp_status == s.ERP_ACCEPTED:
        return ERP_ACKNOWLEDGED
    return ERP_REJECTED if erp_status == s.ERP_REJECTED else ERP_WAITING


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What the log shows of a transmission's documents: their business numbers (in the
    order they were read) and what the ERP said of them, counted by ``erp_word``."""

    numbers: list[str] = field(default_factory=list)
    erp: dict[str, int] = field(default_factory=dict)

    @property
    def number(self) -> str:
        """The first number, and "+N" for the others: ``PO-1042 +3``; '' when none."""
        if not self.numbers:
            return ""
        more = len(self.numbers) - 1
        return self.numbers[0] + (f" +{more}" if more else "")

    @property
    def erp_state(self) -> str:
        """One word when all agree (``acknowledged``), else the counts (``1 rejected,
        2 waiting``); ``not applicable`` when no document was published."""
        said = {k: n for k, n in self.erp.items() if n and k != ERP_NOT_APPLICABLE}
        if not said:
            return ERP_NOT_APPLICABLE
        if len(said) == 1:
            return next(iter(said))
        order = (ERP_REJECTED, ERP_WAITING, ERP_ACKNOWLEDGED)
        return ", ".join(f"{said[k]} {k}" for k in order if k in said)


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of the log: how many match in all, and those on the page, newest first,
    with their documents' numbers and ERP answers (``facts``, by transmission id)."""

    total: int
    rows: list[TransmissionRow]
    facts: dict[str, RowFacts] = field(default_factory=dict)

    def facts_of(self, tid: str) -> RowFacts:
        return self.facts.get(tid) or RowFacts()


def _conditions(query: LogQuery, scope: Scope) -> list[sa.ColumnElement[bool]]:
    t = s.transmissions
    conds: list[sa.ColumnElement[bool]] = []
    if scope.partner is not None:
        conds.append(t.c.partner_id == scope.partner)
    if query.partner == NO_PARTNER:
        conds.append(t.c.partner_id.is_(None))
    elif query.partner:
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
    text = (query.text or "").strip()
    if text:
        d = s.documents
        # Each branch is an index lookup (primary key, ix_transmissions_filename,
        # ix_transmissions_partner, ix_documents_business_number), joined as a UNION: an OR
        # with a subquery makes PostgreSQL scan the whole log.
        # A partner's name was turned into the partner filter already (``_searched``).
        matching = sa.union(
            sa.select(t.c.id).where(t.c.id == text),
            sa.select(t.c.id).where(t.c.filename == text),
            sa.select(d.c.transmission_id).where(d.c.business_number == text))
        conds.append(t.c.id.in_(sa.select(matching.subquery().c[0])))
    return conds


def _searched(store: Store, query: LogQuery) -> LogQuery:
    """``query`` with a search text naming a partner turned into the partner filter (one
    index probe), so that the partner's rows are read through ix_transmissions_partner."""
    text = (query.text or "").strip()
    if not text or query.partner not in (None, text):
        return query
    t = s.transmissions
    with store.engine.connect() as conn:
        known = conn.execute(sa.select(t.c.id).where(t.c.partner_id == text).limit(1)).first()
    return replace(query, partner=text, text=None) if known is not None else query


def _newest_first(q: sa.Select[Any]) -> sa.Select[Any]:
    t = s.transmissions
    return q.order_by(t.c.received_at.desc(), t.c.id.desc())


def transmission_log(store: Store, query: LogQuery, *, limit: int, offset: int = 0,
                     scope: Scope = EVERYTHING) -> list[TransmissionRow]:
    """The transmissions matching ``query`` within ``scope``, newest first."""
    t = s.transmissions
    query = _searched(store, query)
    q = _newest_first(sa.select(t).where(*_conditions(query, scope))).limit(limit)
    if offset:
        q = q.offset(offset)
    with store.engine.connect() as conn:
        return [TransmissionRow.from_row(r) for r in conn.execute(q)]


def transmission_count(store: Store, query: LogQuery, scope: Scope = EVERYTHING, *,
                       by_day: bool = False) -> int:
    """How many transmissions match ``query`` within ``scope``. ``by_day``: a query
    narrowed by partner, channel and statuses alone is answered from the per-day figures a
    serving process keeps (``store.read.daily``: no count over a million rows per page);
    a command, which would read every day once for one answer, counts in SQL."""
    if by_day:
        counted = _count_by_day(store, query, scope)
        if counted is not None:
            return counted
    t = s.transmissions
    query = _searched(store, query)
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t)
                                .where(*_conditions(query, scope))).scalar_one())


def _count_by_day(store: Store, query: LogQuery, scope: Scope) -> int | None:
    """The count of ``transmission_count`` from the per-day figures, or None when the query
    filters on what they do not keep (times, format, direction, a searched text)."""
    if (query.since or query.until or query.format or query.direction
            or (query.text or "").strip()):
        return None
    from gateway.core import clock
    from gateway.store.read.daily import status_totals

    n = 0
    for (channel, partner, status), k in status_totals(
            store, clock.now().astimezone(dt.UTC).date()).items():
        if scope.partner is not None and partner != scope.partner:
            continue
        if query.partner == NO_PARTNER:
            if partner is not None:
                continue
        elif query.partner and partner != query.partner:
            continue
        if query.channel and channel != query.channel:
            continue
        if query.statuses and status not in query.statuses:
            continue
        n += k
    return n


def transmission_page(store: Store, query: LogQuery, *, limit: int, offset: int = 0,
                      scope: Scope = EVERYTHING, by_day: bool = False) -> LogPage:
    """The transmissions matching ``query`` within ``scope``, newest first, with how many
    match in all (``by_day``: see ``transmission_count``) and their documents' numbers and
    ERP answers."""
    rows = transmission_log(store, query, limit=limit, offset=offset, scope=scope)
    total = transmission_count(store, query, scope, by_day=by_day)
    return LogPage(total=total, rows=rows, facts=row_facts(store, [r.id for r in rows]))


def row_facts(store: Store, tids: Sequence[str]) -> dict[str, RowFacts]:
    """The business numbers and ERP answers of the documents of ``tids`` (one query per
    500 transmissions, through ix_documents_transmission)."""
    d = s.documents
    numbers: dict[str, list[str]] = {}
    erp: dict[str, dict[str, int]] = {}
    ids = list(dict.fromkeys(tids))
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(d.c.transmission_id, d.c.business_number, d.c.status,
                          d.c.erp_status)
                .where(d.c.transmission_id.in_(ids[start:start + 500]))
                .order_by(d.c.transmission_id, d.c.created_at, d.c.id))
            for tid, number, status, erp_status in rows:
                if number:
                    numbers.setdefault(tid, []).append(number)
                said = erp.setdefault(tid, {})
                word = erp_word(status, erp_status)
                said[word] = said.get(word, 0) + 1
    return {tid: RowFacts(numbers=numbers.get(tid, []), erp=erp.get(tid, {}))
            for tid in ids if tid in numbers or tid in erp}


def transmission_stream(store: Store, query: LogQuery, *, scope: Scope = EVERYTHING,
                        batch: int = 1000) -> Iterator[tuple[TransmissionRow, RowFacts]]:
    """Every transmission matching ``query``, newest first, with its facts: read ``batch``
    at a time after the last one seen (keyset paging on received_at, id), so a million
    rows stream in bounded queries and memory, and a row received meanwhile shifts none."""
    t = s.transmissions
    conds = _conditions(_searched(store, query), scope)
    after: tuple[dt.datetime, str] | None = None
    while True:
        q = _newest_first(sa.select(t).where(*conds)).limit(batch)
        if after is not None:
            at, tid = after
            # The plain bound lets the index range start there (an OR alone does not).
            q = q.where(t.c.received_at <= at,
                        sa.or_(t.c.received_at < at, t.c.id < tid))
        with store.engine.connect() as conn:
            raw = conn.execute(q).all()
        if not raw:
            return
        rows = [TransmissionRow.from_row(r) for r in raw]
        facts = row_facts(store, [r.id for r in rows])
        for r in rows:
            yield r, facts.get(r.id) or RowFacts()
        if len(raw) < batch:
            return
        after = (raw[-1].received_at, raw[-1].id)


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
