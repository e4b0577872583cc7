"""What the client portal reads, always within one partner: the partner is in the WHERE
clause of every query here, so a client's request can reach no other partner's rows,
whatever id it sends.

Each function takes a ``Scope`` that must be restricted to a partner (``ValueError``
otherwise: these queries serve client users only), and answers None or an empty list for
an id that exists but belongs to another partner, exactly as for one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.scope import Scope
from gateway.core.status import DocumentStatus, OutboundStatus, TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import DocumentRow, TransmissionRow, aware

#: The kind of a partner's copy of a price list (``outbound.kind``).
PRICE_LIST_KIND = "price-list"
#: At most this many lines of a document are shown on a page.
MAX_LINES = 500


def partner_of(scope: Scope) -> str:
    """The partner ``scope`` is restricted to; ValueError for an unrestricted scope."""
    if scope.partner is None or not scope.partner:
        raise ValueError("the portal's queries need a client's scope (one partner)")
    return scope.partner


@dataclass(frozen=True, slots=True)
class SentDocument:
    """A payload edigw sent (or is sending) to the partner: an acknowledgement (CONTRL), an
    order response, an invoice, a price list …, with its delivery and what it answers."""

    id: str
    kind: str
    filename: str
    sha256: str
    size: int
    status: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    transmission_id: str | None
    direction: str | None
    business_number: str | None
    control_ref: str | None

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        for key in ("created_at", "sent_at", "delivered_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


def _sent_query(partner: str) -> sa.Select[Any]:
    o, t, d = s.outbound, s.transmissions, s.documents
    return (sa.select(o.c.id, o.c.kind, o.c.filename, o.c.sha256, o.c.size, o.c.status,
                      o.c.created_at, o.c.sent_at, o.c.delivered_at, o.c.transmission_id,
                      o.c.control_ref, t.c.direction, d.c.business_number)
            .select_from(o.outerjoin(t, t.c.id == o.c.transmission_id)
                         .outerjoin(d, d.c.id == o.c.document_id))
            .where(o.c.partner_id == partner))


def _sent(row: Any) -> SentDocument:
    m = row._mapping
    return SentDocument(id=m["id"], kind=m["kind"], filename=m["filename"],
                        sha256=m["sha256"], size=int(m["size"]), status=m["status"],
                        created_at=aware(m["created_at"]), sent_at=aware(m["sent_at"]),
                        delivered_at=aware(m["delivered_at"]),
                        transmission_id=m["transmission_id"], direction=m["direction"],
                        business_number=m["business_number"], control_ref=m["control_ref"])


def sent_documents(store: Store, scope: Scope, *, kinds: Sequence[str] = (),
                   limit: int = 100, offset: int = 0) -> list[SentDocument]:
    """What edigw sent the scope's partner (of ``kinds``, all when empty), newest first;
    payloads that failed to render or leave are not documents the partner received, but
    are listed too (status FAILED) so that nothing looks lost."""
    partner = partner_of(scope)
    o = s.outbound
    q = _sent_query(partner)
    if kinds:
        q = q.where(o.c.kind.in_(list(kinds)))
    q = q.order_by(o.c.created_at.desc(), o.c.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [_sent(r) for r in conn.execute(q)]


def sent_document_count(store: Store, scope: Scope, *, kinds: Sequence[str] = ()) -> int:
    """How many payloads ``sent_documents`` pages through with the same kinds."""
    o = s.outbound
    q = _sent_query(partner_of(scope)).with_only_columns(sa.func.count()).order_by(None)
    if kinds:
        q = q.where(o.c.kind.in_(list(kinds)))
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def sent_document(store: Store, scope: Scope, ref: str) -> SentDocument | None:
    """One payload sent to the scope's partner, by its id or by its transmission's id (the
    newest of that transmission); None for another partner's."""
    partner = partner_of(scope)
    o = s.outbound
    q = (_sent_query(partner).where(sa.or_(o.c.id == ref, o.c.transmission_id == ref))
         .order_by(o.c.created_at.desc(), o.c.id.desc()).limit(1))
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    return _sent(row) if row is not None else None


def latest_price_list_copy(store: Store, scope: Scope) -> SentDocument | None:
    """The newest price list rendered for the scope's partner that did not fail."""
    partner = partner_of(scope)
    o = s.outbound
    q = (_sent_query(partner).where(o.c.kind == PRICE_LIST_KIND,
                                    o.c.status != OutboundStatus.FAILED)
         .order_by(o.c.created_at.desc(), o.c.id.desc()).limit(1))
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    return _sent(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class ListVersion:
    """A whole price list as the ERP published it: its list id, number, archived bytes and
    when."""

    list_id: str
    number: str | None
    sha256: str
    at: dt.datetime | None


def held_price_lists(store: Store, scope: Scope) -> list[ListVersion]:
    """The whole lists last sent to the scope's partner (``price_list_holdings``), newest
    first."""
    partner = partner_of(scope)
    h = s.price_list_holdings
    q = (sa.select(h).where(h.c.partner_id == partner, h.c.sent_sha.is_not(None))
         .order_by(h.c.sent_at.desc()))
    with store.engine.connect() as conn:
        return [ListVersion(list_id=r.list_id, number=r.sent_number, sha256=r.sent_sha,
                            at=aware(r.sent_at)) for r in conn.execute(q)]


def latest_distribution(store: Store, scope: Scope, list_ids: Sequence[str]
                        ) -> ListVersion | None:
    """The newest distribution of one of ``list_ids`` (the lists the scope's partner
    subscribes to, from its profile) that was recorded, whether or not a copy reached the
    partner yet: a distribution names no partner, the subscription is the filter."""
    partner_of(scope)
    if not list_ids:
        return None
    t = s.transmissions
    refs = [t.c.channel_ref.startswith(f"list:{lid}:", autoescape=True) for lid in list_ids]
    q = (sa.select(t).where(t.c.direction == "out", t.c.partner_id.is_(None),
                            t.c.status == TransmissionStatus.PROCESSED,
                            t.c.purged_at.is_(None), sa.or_(*refs))
         .order_by(t.c.received_at.desc(), t.c.id.desc()).limit(1))
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    if row is None:
        return None
    list_id = (row.channel_ref or "").split(":")[1]
    return ListVersion(list_id=list_id, number=None, sha256=row.sha256,
                       at=aware(row.received_at))


def own_transmission(store: Store, scope: Scope, tid: str) -> TransmissionRow | None:
    """The scope's partner's transmission ``tid`` (exact id), or None."""
    partner = partner_of(scope)
    t = s.transmissions
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == tid, t.c.partner_id == partner)
                           ).first()
    return TransmissionRow.from_row(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class DocumentLines:
    """A document of the partner's, with the lines of its canonical JSON (order lines,
    invoice lines, price-list items) as the portal shows them."""

    document: DocumentRow
    lines: list[dict[str, Any]]
    more_lines: int = 0


def _lines_of(payload: bytes | None) -> tuple[list[dict[str, Any]], int]:
    try:
        doc = json.loads(payload or b"{}")
    except ValueError:
        return [], 0
    if not isinstance(doc, dict):
        return [], 0
    raw = doc.get("lines") or doc.get("items") or []
    if not isinstance(raw, list):
        return [], 0
    lines = [x for x in raw[:MAX_LINES] if isinstance(x, dict)]
    return lines, max(0, len(raw) - MAX_LINES)


def documents_with_lines(store: Store, scope: Scope, tids: Sequence[str], *,
                         limit: int | None = None, offset: int = 0
                         ) -> dict[str, list[DocumentLines]]:
    """The documents of the scope's partner in transmissions ``tids``, by transmission,
    each with its lines; ``limit``/``offset`` page them (in the order they were made), so
    one file of 20,000 orders is read a page at a time."""
    partner = partner_of(scope)
    if not tids:
        return {}
    d = s.documents
    q = (sa.select(d).where(d.c.partner_id == partner, d.c.transmission_id.in_(list(tids)),
                            d.c.status != DocumentStatus.OUTBOUND)
         .order_by(d.c.created_at, d.c.id))
    if limit is not None:
        q = q.limit(limit).offset(offset)
    out: dict[str, list[DocumentLines]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(q):
            data = {k: v for k, v in r._mapping.items() if k != "payload"}
            for key in ("created_at", "published_at", "erp_at"):
                data[key] = aware(data[key])
            lines, more = _lines_of(r.payload)
            out.setdefault(r.transmission_id, []).append(
                DocumentLines(DocumentRow(**data), lines, more))
    return out


def own_transmissions(store: Store, scope: Scope, *, direction: str = "in",
                      limit: int = 50, offset: int = 0,
                      since: dt.datetime | None = None) -> list[TransmissionRow]:
    """The scope's partner's transmissions of ``direction``, newest first."""
    partner = partner_of(scope)
    t = s.transmissions
    q = sa.select(t).where(t.c.partner_id == partner, t.c.direction == direction)
    if since is not None:
        q = q.where(t.c.received_at >= since)
    q = q.order_by(t.c.received_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [TransmissionRow.from_row(r) for r in conn.execute(q)]
