"""Read models for the tracker's rules and for "where is order X?" (``gateway.tracker``).

Each function is one named question to the store (failed transmissions, documents waiting
in the outbox, documents the ERP has not acknowledged, interchange references seen, …)
and answers with typed rows whose times are UTC-aware. The tracker keeps what the answers
mean (rules, verdicts, wording); this module only owns the SQL.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from gateway.core.status import DocumentStatus, ErpStatus, TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import DocumentRow, TransmissionRow, aware
from gateway.store.security import SecurityEvent

#: Values looked up per query (a bound on the size of an ``IN`` list).
_CHUNK = 500
_DOC_COLUMNS = [c for c in s.documents.c if c.name != "payload"]
_R = TypeVar("_R")


def _make(cls: type[_R], row: sa.RowMapping) -> _R:
    """A typed row from a result row of the same column names (times made UTC-aware)."""
    return cls(**{k: aware(v) if isinstance(v, dt.datetime) else v for k, v in row.items()})


def _in(conn: sa.Connection, query: sa.Select[Any], column: sa.ColumnElement[Any],
        values: Iterable[Any]) -> list[sa.Row[Any]]:
    """``query`` for ``column`` in ``values``, a chunk at a time."""
    wanted = sorted(set(values))
    rows: list[sa.Row[Any]] = []
    for n in range(0, len(wanted), _CHUNK):
        rows += conn.execute(query.where(column.in_(wanted[n:n + _CHUNK]))).all()
    return rows


def first_received_at(store: Store) -> dt.datetime | None:
    """When the gateway received its first transmission (None: never)."""
    t = s.transmissions
    with store.connect() as conn:
        return aware(conn.execute(
            sa.select(sa.func.min(t.c.received_at)).where(t.c.direction == "in")).scalar())


# -- failures ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FailedDocument:
    """A document stored FAILED: a message of a transmission that did not make it."""

    id: str
    transmission_id: str
    doc_type: str
    business_number: str | None
    message_ref: str | None
    stage: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """A reprocessing attempt of ``reprocess_of``, and where it stands."""

    id: str
    status: str
    reprocess_of: str


@dataclass(slots=True)
class FailureEvidence:
    """Transmissions that failed (or have failed documents), with those documents and the
    attempts replaying them, by transmission id."""

    transmissions: list[TransmissionRow] = field(default_factory=list)
    failed_documents: dict[str, list[FailedDocument]] = field(default_factory=dict)
    replays: dict[str, list[Replay]] = field(default_factory=dict)


def failure_evidence(store: Store, since: dt.datetime, also: Iterable[str]) -> FailureEvidence:
    """Transmissions FAILED or QUARANTINED since ``since``, those with a document FAILED
    since then, and the transmissions ``also`` named, with their failed documents (oldest
    first) and their replays."""
    t, d = s.transmissions, s.documents
    out = FailureEvidence()
    with store.connect() as conn:
        # Outbound transmissions (documents we send) have their own rule (outbound-failed).
        tids = set(conn.execute(sa.select(t.c.id).where(
            t.c.status.in_((TransmissionStatus.FAILED, TransmissionStatus.QUARANTINED)),
            t.c.received_at >= since, t.c.direction == "in")).scalars())
        tids |= set(conn.execute(sa.select(d.c.transmission_id).where(
            d.c.status == DocumentStatus.FAILED, d.c.created_at >= since).distinct()).scalars())
        tids |= set(also)
        out.transmissions = [TransmissionRow.from_row(r)
                             for r in _in(conn, sa.select(t), t.c.id, tids)]
        docs: dict[str, list[FailedDocument]] = defaultdict(list)
        cols = (d.c.id, d.c.transmission_id, d.c.doc_type, d.c.business_number,
                d.c.message_ref, d.c.stage, d.c.reason)
        for r in _in(conn, sa.select(*cols).where(d.c.status == DocumentStatus.FAILED)
                     .order_by(d.c.created_at, d.c.id), d.c.transmission_id, tids):
            docs[r.transmission_id].append(_make(FailedDocument, r._mapping))
        replays: dict[str, list[Replay]] = defaultdict(list)
        for r in _in(conn, sa.select(t.c.id, t.c.status, t.c.reprocess_of), t.c.reprocess_of,
                     tids):
            replays[r.reprocess_of].append(_make(Replay, r._mapping))
    out.failed_documents, out.replays = dict(docs), dict(replays)
    return out


# -- outbox and unroutable --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OutboxWaiting:
    """A document waiting in the outbox, with its publish attempts so far."""

    created_at: dt.datetime
    attempts: int
    last_error: str | None
    id: str
    business_number: str | None
    doc_type: str


@dataclass(frozen=True, slots=True)
class UnroutableDocument:
    id: str
    partner_id: str
    doc_type: str
    business_number: str | None
    created_at: dt.datetime
    transmission_id: str


def outbox_oldest_by_partner(store: Store) -> list[tuple[str, dt.datetime]]:
    """Each partner with documents in the outbox, and since when the oldest waits."""
    o, d = s.outbox, s.documents
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.partner_id, sa.func.min(o.c.created_at))
            .select_from(o.join(d, d.c.id == o.c.document_id)).group_by(d.c.partner_id)).all()
    return sorted((partner_id, aware(first)) for partner_id, first in rows)


def waiting_in_outbox(store: Store, partner_id: str,
                      created_before: dt.datetime) -> list[OutboxWaiting]:
    """The partner's outbox rows created at or before ``created_before``, in order."""
    o, d = s.outbox, s.documents
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.created_at, o.c.attempts, o.c.last_error, d.c.id,
                      d.c.business_number, d.c.doc_type)
            .select_from(o.join(d, d.c.id == o.c.document_id))
            .where(d.c.partner_id == partner_id, o.c.created_at <= created_before)
            .order_by(o.c.id)).all()
    return [_make(OutboxWaiting, r._mapping) for r in rows]


def unroutable_documents(store: Store) -> list[UnroutableDocument]:
    """Documents the broker returned as unroutable, oldest first."""
    d = s.documents
    with store.connect() as conn:
        rows = conn.execute(sa.select(d.c.id, d.c.partner_id, d.c.doc_type, d.c.business_number,
                                      d.c.created_at, d.c.transmission_id)
                            .where(d.c.status == DocumentStatus.UNROUTABLE)
                            .order_by(d.c.created_at, d.c.id)).all()
    return [_make(UnroutableDocument, r._mapping) for r in rows]


# -- ERP acknowledgements ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ErpDocument:
    """A published document and what the ERP answered about it (if anything)."""

    id: str
    partner_id: str
    doc_type: str
    business_number: str | None
    message_id: str
    published_at: dt.datetime | None
    erp_status: str | None
    erp_at: dt.datetime | None
    erp_reason: str | None
    transmission_id: str
    interchange_ref: str | None
    filename: str | None


def unacknowledged_documents(store: Store, since: dt.datetime,
                             ids: Iterable[str]) -> list[ErpDocument]:
    """Documents published since ``since`` (or named by ``ids``) with no ERP answer yet."""
    d = s.documents
    return _erp_documents(store, sa.and_(d.c.status == DocumentStatus.PUBLISHED,
                                         d.c.erp_status.is_(None)),
                          d.c.published_at, since, ids)


def erp_rejected_documents(store: Store, since: dt.datetime,
                           ids: Iterable[str]) -> list[ErpDocument]:
    """Documents the ERP rejected since ``since`` (or named by ``ids``, still rejected)."""
    d = s.documents
    return _erp_documents(store, d.c.erp_status == ErpStatus.REJECTED, d.c.erp_at, since, ids)


def _erp_documents(store: Store, where: sa.ColumnElement[bool],
                   since_col: sa.ColumnElement[Any], since: dt.datetime,
                   ids: Iterable[str]) -> list[ErpDocument]:
    d, t = s.documents, s.transmissions
    cols = (d.c.id, d.c.partner_id, d.c.doc_type, d.c.business_number, d.c.message_id,
            d.c.published_at, d.c.erp_status, d.c.erp_at, d.c.erp_reason, d.c.transmission_id,
            d.c.interchange_ref, t.c.filename)
    q = sa.select(*cols).select_from(d.join(t, t.c.id == d.c.transmission_id)).where(where)
    with store.connect() as conn:
        rows = {r.id: r for r in conn.execute(q.where(since_col >= since))}
        rows.update({r.id: r for r in _in(conn, q, d.c.id, ids)})
    return [_make(ErpDocument, r._mapping) for r in rows.values()]


# -- references and volumes -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InterchangeSeen:
    """An interchange reference (UNB 0020) received from a partner."""

    partner_id: str
    control_ref: str
    transmission_id: str
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MessageSeen:
    """A message reference (UNH 0062) within an interchange of a partner."""

    partner_id: str
    transmission_id: str
    interchange_ref: str
    message_ref: str


def interchanges_since(store: Store, since: dt.datetime) -> list[InterchangeSeen]:
    """Interchanges received since ``since``, in the order recorded."""
    i = s.interchanges
    with store.connect() as conn:
        rows = conn.execute(sa.select(i.c.partner_id, i.c.control_ref, i.c.transmission_id,
                                      i.c.received_at)
                            .where(i.c.received_at >= since).order_by(i.c.id)).all()
    return [_make(InterchangeSeen, r._mapping) for r in rows]


def interchanges_between(store: Store, partner_id: str, start: dt.datetime,
                         end: dt.datetime, limit: int = 200) -> list[InterchangeSeen]:
    """The partner's latest ``limit`` interchanges received in [start, end), oldest first
    (index ``ix_interchanges_partner_received``)."""
    i = s.interchanges
    with store.connect() as conn:
        rows = conn.execute(sa.select(i.c.partner_id, i.c.control_ref, i.c.transmission_id,
                                      i.c.received_at)
                            .where(i.c.partner_id == partner_id)
                            .where(i.c.received_at >= start)
                            .where(i.c.received_at < end)
                            .order_by(i.c.received_at.desc(), i.c.id.desc())
                            .limit(limit)).all()
    return [_make(InterchangeSeen, r._mapping) for r in reversed(rows)]


def messages_since(store: Store, since: dt.datetime) -> list[MessageSeen]:
    """Message references of the documents stored since ``since`` within an interchange."""
    d = s.documents
    with store.connect() as conn:
        rows = conn.execute(sa.select(d.c.partner_id, d.c.transmission_id, d.c.interchange_ref,
                                      d.c.message_ref)
                            .where(d.c.created_at >= since, d.c.interchange_ref.is_not(None),
                                   d.c.message_ref.is_not(None))).all()
    return [_make(MessageSeen, r._mapping) for r in rows]


def interchange_received(store: Store, partner_id: str | None,
                         control_refs: Sequence[str]) -> bool:
    """Whether the partner sent any interchange with one of ``control_refs``."""
    i = s.interchanges
    with store.connect() as conn:
        return conn.execute(sa.select(i.c.id).where(
            i.c.partner_id == partner_id, i.c.control_ref.in_(list(control_refs))).limit(1)
        ).first() is not None


def last_received(store: Store, partner_id: str, doc_type: str) -> dt.datetime | None:
    """When the partner's latest ``doc_type`` document was received (None: never)."""
    d, t = s.documents, s.transmissions
    with store.connect() as conn:
        return aware(conn.execute(
            sa.select(sa.func.max(t.c.received_at))
            .select_from(d.join(t, t.c.id == d.c.transmission_id))
            .where(d.c.partner_id == partner_id, d.c.doc_type == doc_type,
                   d.c.status != DocumentStatus.OUTBOUND)).scalar())


def count_documents(store: Store, partner_id: str, start: dt.datetime,
                    end: dt.datetime) -> int:
    """The partner's documents, repeats left out, received in [start, end)."""
    d, t = s.documents, s.transmissions
    with store.connect() as conn:
        count: int = conn.execute(
            sa.select(sa.func.count()).select_from(d.join(t, t.c.id == d.c.transmission_id))
            .where(d.c.partner_id == partner_id,
                   d.c.status.not_in((DocumentStatus.DUPLICATE, DocumentStatus.OUTBOUND)),
                   t.c.received_at >= start, t.c.received_at < end)).scalar_one()
    return count


# -- duplicates -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NumberedDocument:
    """A document received under a business number, with the file it came in."""

    id: str
    transmission_id: str
    message_id: str
    status: str
    created_at: dt.datetime
    interchange_ref: str | None
    filename: str | None
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class InterchangeReceipt:
    """One receipt of an interchange reference."""

    transmission_id: str
    received_at: dt.datetime
    status: str
    filename: str | None
    reprocess_of: str | None


def _numbered(since: dt.datetime, excluded: Sequence[str]) -> sa.ColumnElement[bool]:
    d = s.documents
    return sa.and_(d.c.business_number.is_not(None), d.c.status.not_in(list(excluded)),
                   d.c.created_at >= since)


def reused_numbers(store: Store, since: dt.datetime,
                   excluded: Sequence[str]) -> list[tuple[str, str, str]]:
    """(partner, type, number) of the numbers stored since ``since`` under more than one
    message id (documents in ``excluded`` statuses not counted), sorted."""
    d = s.documents
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.partner_id, d.c.doc_type, d.c.business_number)
            .where(_numbered(since, excluded))
            .group_by(d.c.partner_id, d.c.doc_type, d.c.business_number)
            .having(sa.func.count(sa.distinct(d.c.message_id)) > 1)).all()
    return sorted((p, t, n) for p, t, n in rows)


def numbered_documents(store: Store, partner_id: str, doc_type: str, number: str, *,
                       since: dt.datetime, within: dt.datetime,
                       excluded: Sequence[str]) -> list[NumberedDocument]:
    """The partner's ``doc_type`` documents numbered ``number`` created since both ``since``
    and ``within`` (``excluded`` statuses left out), in the order received."""
    d, t = s.documents, s.transmissions
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.id, d.c.transmission_id, d.c.message_id, d.c.status,
                      d.c.created_at, d.c.interchange_ref, t.c.filename, t.c.received_at)
            .select_from(d.join(t, t.c.id == d.c.transmission_id))
            .where(_numbered(since, excluded), d.c.partner_id == partner_id,
                   d.c.doc_type == doc_type, d.c.business_number == number,
                   d.c.created_at >= within)
            .order_by(t.c.received_at, d.c.id)).all()
    return [_make(NumberedDocument, r._mapping) for r in rows]


def reused_interchange_refs(store: Store, since: dt.datetime) -> list[tuple[str, str]]:
    """(partner, reference) of interchange references received twice or more since
    ``since``, sorted."""
    i = s.interchanges
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(i.c.partner_id, i.c.control_ref).where(i.c.received_at >= since)
            .group_by(i.c.partner_id, i.c.control_ref).having(sa.func.count() > 1)).all()
    return sorted((p, r) for p, r in rows)


def interchange_receipts(store: Store, partner_id: str, control_ref: str,
                         since: dt.datetime) -> list[InterchangeReceipt]:
    """Each receipt of the partner's interchange ``control_ref`` since ``since``, in order."""
    i, t = s.interchanges, s.transmissions
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(i.c.transmission_id, i.c.received_at, i.c.status, t.c.filename,
                      t.c.reprocess_of)
            .select_from(i.join(t, t.c.id == i.c.transmission_id))
            .where(i.c.partner_id == partner_id, i.c.control_ref == control_ref,
                   i.c.received_at >= since)
            .order_by(i.c.received_at, i.c.id)).all()
    return [_make(InterchangeReceipt, r._mapping) for r in rows]


# -- processing -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StalledProcessing:
    """Transmissions waiting RECEIVED while nothing else was processed."""

    waiting: int
    oldest: dt.datetime
    last_processed: dt.datetime | None


def stalled_processing(store: Store, since: dt.datetime) -> StalledProcessing | None:
    """The transmissions waiting RECEIVED since before ``since`` when none was processed
    after it (None: nothing waits that long, or processing moved)."""
    t = s.transmissions
    received = TransmissionStatus.RECEIVED
    with store.connect() as conn:
        # The pipeline's work only: outbound documents are rendered by the intake.
        inbound = t.c.direction == "in"
        oldest, waiting = conn.execute(
            sa.select(sa.func.min(t.c.received_at), sa.func.count())
            .where(t.c.status == received, inbound)).one()
        if oldest is None or aware(oldest) > since:
            return None
        moved = conn.execute(sa.select(t.c.updated_at).where(
            t.c.status != received, t.c.updated_at > since, inbound).limit(1)).first()
        if moved is not None:
            return None
        last = conn.execute(sa.select(sa.func.max(t.c.updated_at))
                            .where(t.c.status != received, inbound)).scalar()
    return StalledProcessing(waiting=waiting, oldest=aware(oldest), last_processed=aware(last))


# -- outbound: documents we send ---------------------------------------------------------------

#: An outbound transmission that went no further than these is not delivered yet.
UNDELIVERED = (TransmissionStatus.RENDERED, TransmissionStatus.SENT)


@dataclass(frozen=True, slots=True)
class OutboundDelivery:
    """A document we send a partner, with its transmission and its delivery (the outbound
    row: none when it failed before it was rendered)."""

    transmission_id: str
    partner_id: str | None
    status: str  # the transmission's
    stage: str | None
    reason: str | None
    received_at: dt.datetime
    updated_at: dt.datetime
    filename: str | None
    channel_ref: str | None  # the ERP's message id
    reprocess_of: str | None
    outbound_id: str | None
    kind: str | None
    channel: str | None
    control_ref: str | None
    attempts: int | None
    last_error: str | None
    rendered_at: dt.datetime | None
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    remote_id: str | None
    receipt: str | None
    detail: str | None
    document_id: str | None
    doc_type: str | None
    business_number: str | None


def _outbound_query(start: sa.FromClause | None = None) -> sa.Select[Any]:
    """Outbound transmissions with their delivery and document; ``start``: the joins to
    read them by (default: from the transmissions, outer joins)."""
    t, o, d = s.transmissions, s.outbound, s.documents
    joins = start if start is not None else (
        t.outerjoin(o, o.c.transmission_id == t.c.id).outerjoin(d, d.c.id == o.c.document_id))
    return (sa.select(
        t.c.id.label("transmission_id"), t.c.partner_id, t.c.status, t.c.stage, t.c.reason,
        t.c.received_at, t.c.updated_at, t.c.filename, t.c.channel_ref, t.c.reprocess_of,
        o.c.id.label("outbound_id"), o.c.kind, o.c.channel, o.c.control_ref, o.c.attempts,
        o.c.last_error, o.c.created_at.label("rendered_at"), o.c.sent_at, o.c.next_attempt_at,
        o.c.delivered_at, o.c.remote_id, o.c.receipt, o.c.detail, d.c.id.label("document_id"),
        d.c.doc_type, d.c.business_number)
        .select_from(joins).where(t.c.direction == "out"))


def _deliveries(conn: sa.Connection, q: sa.Select[Any]) -> list[OutboundDelivery]:
    t = s.transmissions
    rows = conn.execute(q.order_by(t.c.received_at, t.c.id)).all()
    return [_make(OutboundDelivery, r._mapping) for r in rows]


def undelivered_outbound(store: Store) -> list[OutboundDelivery]:
    """Outbound documents rendered and not yet delivered (RENDERED: being delivered or
    retried; SENT: awaiting the partner's receipt), oldest first."""
    t = s.transmissions
    with store.connect() as conn:
        return _deliveries(conn, _outbound_query().where(t.c.status.in_(UNDELIVERED)))


def failed_outbound(store: Store, since: dt.datetime) -> list[OutboundDelivery]:
    """Outbound transmissions FAILED since ``since`` (refused at intake, delivery given up,
    a negative receipt) that no later attempt (a resend) has replaced, oldest first; one
    whose resend failed too is left to that resend."""
    t = s.transmissions
    again = t.alias("again")
    replaced = sa.exists().where(again.c.reprocess_of == t.c.id,
                                 again.c.status != TransmissionStatus.RECEIVED)
    with store.connect() as conn:
        return _deliveries(conn, _outbound_query().where(
            t.c.status == TransmissionStatus.FAILED, t.c.updated_at >= since, ~replaced))


def outbound_documents(store: Store, partner_id: str | None, number: str,
                       doc_types: Sequence[str] | None = None) -> list[OutboundDelivery]:
    """The outbound documents numbered ``number`` (to ``partner_id`` if given; of
    ``doc_types`` if given), newest first, with their delivery."""
    t, d, o = s.transmissions, s.documents, s.outbound
    # From the number (``ix_documents_number_ci``) to its outbound row and transmission:
    # inner joins, so that no plan starts from the transmissions.
    q = (_outbound_query(d.join(o, o.c.document_id == d.c.id)
                         .join(t, t.c.id == o.c.transmission_id))
         .where(sa.func.lower(d.c.business_number) == number.lower()).limit(200))
    if partner_id:
        q = q.where(d.c.partner_id == partner_id)
    if doc_types:
        q = q.where(d.c.doc_type.in_(list(doc_types)))
    with store.connect() as conn:
        rows = _deliveries(conn, q)
    exact = [r for r in rows if r.business_number == number]  # exact first, else any case
    return sorted(exact or rows, key=lambda r: (r.received_at, r.transmission_id),
                  reverse=True)


@dataclass(frozen=True, slots=True)
class AnsweredOrder:
    """An order the ERP accepted or rejected, for the order-response rule."""

    id: str
    partner_id: str
    business_number: str | None
    erp_status: str
    erp_at: dt.datetime | None
    transmission_id: str


def orders_without_response(store: Store, partner_ids: Sequence[str], since: dt.datetime,
                            answered_before: dt.datetime) -> list[AnsweredOrder]:
    """Orders of ``partner_ids`` the ERP accepted or rejected between ``since`` and
    ``answered_before`` for which no order response of the same number was sent (SENT or
    DELIVERED) to the partner, oldest answer first."""
    if not partner_ids:
        return []
    d, t = s.documents, s.transmissions
    r = d.alias("response")
    sent = (sa.exists().select_from(r.join(t, t.c.id == r.c.transmission_id))
            .where(r.c.partner_id == d.c.partner_id, r.c.doc_type == "order-response",
                   r.c.business_number == d.c.business_number,
                   r.c.status == DocumentStatus.OUTBOUND,
                   t.c.status.in_((TransmissionStatus.SENT, TransmissionStatus.DELIVERED))))
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.id, d.c.partner_id, d.c.business_number, d.c.erp_status,
                      d.c.erp_at, d.c.transmission_id)
            .where(d.c.doc_type == "order", d.c.partner_id.in_(list(partner_ids)),
                   d.c.erp_status.in_((ErpStatus.ACCEPTED, ErpStatus.REJECTED)),
                   d.c.erp_at >= since, d.c.erp_at <= answered_before,
                   d.c.business_number.is_not(None), ~sent)
            .order_by(d.c.erp_at, d.c.id)).all()
    return [_make(AnsweredOrder, row._mapping) for row in rows]


# -- where is order X -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MatchQuery:
    """What a support person asked about; dates bound the time of receipt (``until``
    excluded) and are UTC."""

    number: str | None = None
    partner: str | None = None
    interchange_ref: str | None = None
    filename: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    doc_type: str | None = None
    limit: int = 50
    #: Transmissions named by id (a transmission or document id, an AS2 Message-ID).
    transmission_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A document's row in the outbox."""

    created_at: dt.datetime
    routing_key: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ErpAck:
    """One acknowledgement the ERP sent about a document."""

    id: int
    received_at: dt.datetime
    status: str
    reason: str | None
    acked_at: dt.datetime | None


def find_matches(store: Store, q: MatchQuery) -> tuple[list[DocumentRow], list[TransmissionRow]]:
    """Matching documents (newest first) and the transmissions they came in plus those
    matching by file, interchange or id without a matching document (newest first).

    ``number`` and ``filename`` match in any case (exact ones first: when some match
    exactly, only those); every lookup is an index seek bounded by ``limit``."""
    d, t, i = s.documents, s.transmissions, s.interchanges
    docs: list[DocumentRow] = []
    trans: list[TransmissionRow] = []
    named = _named_transmissions(q)
    with store.connect() as conn:
        dq = (sa.select(*_DOC_COLUMNS).select_from(d.join(t, t.c.id == d.c.transmission_id))
              .order_by(d.c.created_at.desc(), d.c.id.desc()).limit(q.limit))
        if q.partner:
            dq = dq.where(d.c.partner_id == q.partner)
        if q.doc_type:
            # A message that failed before its type was known is stored as "unknown".
            dq = dq.where(d.c.doc_type.in_((q.doc_type, "unknown")))
        if q.interchange_ref:
            dq = dq.where(d.c.interchange_ref == q.interchange_ref)
        dq = _when(dq, t.c.received_at, q.since, q.until)
        if q.filename:
            dq = dq.where(sa.func.lower(t.c.filename) == q.filename.lower())
        if q.transmission_ids:
            dq = dq.where(d.c.transmission_id.in_(list(q.transmission_ids)))
        if q.number:
            rows = [_document_row(r) for r in conn.execute(
                dq.where(sa.func.lower(d.c.business_number) == q.number.lower()))]
            docs = [r for r in rows if r.business_number == q.number] or rows
        elif named or q.partner or q.since or q.until:
            docs = [_document_row(r) for r in conn.execute(dq)]
        tids = list(dict.fromkeys(x.transmission_id for x in docs))
        if tids:
            trans = [TransmissionRow.from_row(r) for r in conn.execute(
                sa.select(t).where(t.c.id.in_(tids)))]
        if not q.number and named:
            # Transmissions with no document to match: failed before any message was read,
            # quarantined, duplicates of identical bytes.
            tq = sa.select(t).order_by(t.c.received_at.desc(), t.c.id.desc()).limit(q.limit)
            if q.partner:
                tq = tq.where(t.c.partner_id == q.partner)
            tq = _when(tq, t.c.received_at, q.since, q.until)
            if q.filename:
                tq = tq.where(sa.func.lower(t.c.filename) == q.filename.lower())
            if q.transmission_ids:
                tq = tq.where(t.c.id.in_(list(q.transmission_ids)))
            if q.interchange_ref:
                tq = tq.where(t.c.id.in_(sa.select(i.c.transmission_id)
                                         .where(i.c.control_ref == q.interchange_ref)))
            known = set(tids)
            trans += [r for r in (TransmissionRow.from_row(x) for x in conn.execute(tq))
                      if r.id not in known]
    if q.filename and any(x.filename == q.filename for x in trans):
        # Exact first: the same name in another case is another file.
        trans = [x for x in trans if x.filename == q.filename]
        kept = {x.id for x in trans}
        docs = [x for x in docs if x.transmission_id in kept]
    trans.sort(key=lambda r: (r.received_at, r.id), reverse=True)
    return docs, trans


def _named_transmissions(q: MatchQuery) -> bool:
    """Whether the query names transmissions (by file, interchange or id)."""
    return bool(q.interchange_ref or q.filename or q.transmission_ids)


def _when(q: sa.Select[Any], column: sa.ColumnElement[Any], since: dt.datetime | None,
          until: dt.datetime | None) -> sa.Select[Any]:
    if since:
        q = q.where(column >= since)
    if until:
        q = q.where(column < until)
    return q


def _document_row(row: sa.Row[Any]) -> DocumentRow:
    data = dict(row._mapping)
    for key in ("created_at", "published_at", "erp_at"):
        data[key] = aware(data[key])
    return DocumentRow(**data)


def original_document(store: Store, dup: DocumentRow,
                      excluded: Sequence[str]) -> DocumentRow | None:
    """The first stored document other than ``dup`` with its message id, or with its
    partner, type, number and content; none in ``excluded`` statuses."""
    d = s.documents
    same: sa.ColumnElement[bool] = d.c.message_id == dup.message_id
    if dup.content_sha and dup.business_number:
        same = sa.or_(same, sa.and_(d.c.partner_id == dup.partner_id,
                                    d.c.doc_type == dup.doc_type,
                                    d.c.business_number == dup.business_number,
                                    d.c.content_sha == dup.content_sha))
    with store.connect() as conn:
        row = conn.execute(
            sa.select(*_DOC_COLUMNS).where(same).where(d.c.status.not_in(list(excluded)))
            .where(d.c.id != dup.id).order_by(d.c.created_at, d.c.id).limit(1)).first()
    return _document_row(row) if row else None


def outbox_entry(store: Store, document_id: str) -> OutboxEntry | None:
    """The document's outbox row (None: not in the outbox)."""
    o = s.outbox
    with store.connect() as conn:
        row = conn.execute(sa.select(o.c.created_at, o.c.routing_key, o.c.attempts,
                                     o.c.last_error).where(o.c.document_id == document_id)
                           ).first()
    return _make(OutboxEntry, row._mapping) if row is not None else None


def erp_acks_of(store: Store, document_id: str) -> list[ErpAck]:
    """The ERP's acknowledgements of the document, in the order received."""
    a = s.erp_acks
    with store.connect() as conn:
        rows = conn.execute(sa.select(a.c.id, a.c.received_at, a.c.status, a.c.reason,
                                      a.c.acked_at).where(a.c.document_id == document_id)
                            .order_by(a.c.id)).all()
    return [_make(ErpAck, r._mapping) for r in rows]


def reprocesses_of(store: Store, transmission_id: str, limit: int = 20) -> list[TransmissionRow]:
    """The latest ``limit`` attempts reprocessing the transmission, oldest first."""
    tr = s.transmissions
    with store.connect() as conn:
        rows = [TransmissionRow.from_row(r) for r in conn.execute(
            sa.select(tr).where(tr.c.reprocess_of == transmission_id)
            .order_by(tr.c.received_at.desc(), tr.c.id.desc()).limit(limit))]
    return rows[::-1]


def repeats_of(store: Store, transmission_id: str, limit: int = 20) -> list[TransmissionRow]:
    """The first ``limit`` later receipts of the transmission's very bytes, oldest first."""
    tr = s.transmissions
    with store.connect() as conn:
        return [TransmissionRow.from_row(r) for r in conn.execute(
            sa.select(tr).where(tr.c.duplicate_of == transmission_id)
            .order_by(tr.c.received_at).limit(limit))]


#: The channels a partner used, read from ``ix_transmissions_partner_channel`` one distinct
#: value at a time (a loose index scan: as many seeks as channels, whatever the volume).
_CHANNELS_OF = sa.text("""
WITH RECURSIVE used(channel) AS (
    SELECT MIN(channel) FROM transmissions WHERE partner_id = :partner AND direction = 'in'
    UNION ALL
    SELECT (SELECT MIN(t.channel) FROM transmissions t
            WHERE t.partner_id = :partner AND t.direction = 'in' AND t.channel > used.channel)
    FROM used WHERE used.channel IS NOT NULL
)
SELECT channel FROM used WHERE channel IS NOT NULL
""")


def last_contacts(store: Store, partner_id: str) -> list[TransmissionRow]:
    """The partner's latest transmission on each channel (one index seek per channel)."""
    t = s.transmissions
    rows: list[TransmissionRow] = []
    with store.connect() as conn:
        channels = list(conn.execute(_CHANNELS_OF, {"partner": partner_id}).scalars())
        for channel in channels[:50]:
            row = conn.execute(sa.select(t).where(t.c.partner_id == partner_id)
                               .where(t.c.direction == "in").where(t.c.channel == channel)
                               .order_by(t.c.received_at.desc(), t.c.id.desc()).limit(1)
                               ).first()
            if row is not None:
                rows.append(TransmissionRow.from_row(row))
    return rows


def security_events_between(store: Store, partner_id: str | None, start: dt.datetime,
                            end: dt.datetime, limit: int = 20, *,
                            own_only: bool = False) -> list[SecurityEvent]:
    """Requests refused in [start, end) (the partner's or nobody's; only the partner's with
    ``own_only``, as a client is shown), oldest first."""
    e = s.security_events
    q = sa.select(e).where(e.c.at >= start).where(e.c.at < end).order_by(e.c.at).limit(limit)
    if partner_id and own_only:
        q = q.where(e.c.partner_id == partner_id)
    elif partner_id:
        q = q.where(sa.or_(e.c.partner_id.is_(None), e.c.partner_id == partner_id))
    with store.connect() as conn:
        rows = conn.execute(q).all()
    return [SecurityEvent(r.id, aware(r.at), r.channel, r.kind, r.remote, r.partner_id,
                          r.detail) for r in rows]


#: A failed file whose messages were never read (it has no document).
_UNREAD = (TransmissionStatus.FAILED, TransmissionStatus.QUARANTINED)


def _unreadable(partner_id: str | None, status: str, start: dt.datetime,
                end: dt.datetime | None) -> sa.Select[Any]:
    """The partner's (None: nobody's) inbound transmissions in ``status`` received in
    [start, end) without a document, newest first: one range of
    ``ix_transmissions_partner_status`` read in its order (one status at a time, so that no
    planner prefers walking the partner's whole window for the order)."""
    t, d = s.transmissions, s.documents
    owner = t.c.partner_id.is_(None) if partner_id is None else t.c.partner_id == partner_id
    return (sa.select(t).where(owner, t.c.status == status, t.c.received_at >= start,
                               t.c.direction == "in")
            .where(t.c.received_at < end if end else sa.true())
            .where(~sa.exists().where(d.c.transmission_id == t.c.id))
            .order_by(t.c.received_at.desc(), t.c.id.desc()))


def unreadable_transmissions(store: Store, partner_id: str | None, start: dt.datetime,
                             end: dt.datetime | None, limit: int) -> list[TransmissionRow]:
    """The latest ``limit`` of the partner's (None: nobody's, the unidentified ones)
    transmissions FAILED or QUARANTINED in [start, end) whose messages were never read,
    newest first."""
    rows: list[TransmissionRow] = []
    with store.connect() as conn:
        for status in _UNREAD:
            rows += [TransmissionRow.from_row(r) for r in conn.execute(
                _unreadable(partner_id, status, start, end).limit(limit))]
    rows.sort(key=lambda r: (r.received_at, r.id), reverse=True)
    return rows[:limit]


def count_unreadable(store: Store, partner_id: str | None, start: dt.datetime,
                     end: dt.datetime | None, cap: int = 1000) -> int:
    """How many such transmissions there are, counted up to ``cap`` (a bounded count)."""
    t = s.transmissions
    total = 0
    with store.connect() as conn:
        for status in _UNREAD:
            inner = (_unreadable(partner_id, status, start, end).order_by(None)
                     .with_only_columns(t.c.id).limit(cap).subquery())
            total += int(conn.execute(sa.select(sa.func.count()).select_from(inner))
                         .scalar_one())
    return min(total, cap)


def unidentified_naming(store: Store, needles: Sequence[str], start: dt.datetime,
                        end: dt.datetime | None, limit: int, *,
                        looked_at: int = 200) -> tuple[list[TransmissionRow], int]:
    """Of the latest ``looked_at`` sender-less unreadable transmissions (per status) in
    [start, end), those whose file name, channel reference or reason contains one of
    ``needles`` (any case): the newest ``limit`` of them, and how many there are."""
    t = s.transmissions
    wanted = [n.lower() for n in needles if n]
    if not wanted:
        return [], 0
    named: list[tuple[dt.datetime, str]] = []
    with store.connect() as conn:
        for status in _UNREAD:
            q = _unreadable(None, status, start, end).with_only_columns(
                t.c.id, t.c.received_at, t.c.filename, t.c.channel_ref, t.c.reason)
            for r in conn.execute(q.limit(looked_at)):
                hay = " ".join(x for x in (r.filename, r.channel_ref, r.reason) if x).lower()
                if any(n in hay for n in wanted):
                    named.append((aware(r.received_at), r.id))
        named.sort(reverse=True)
        ids = [i for _, i in named[:limit]]
        rows = [TransmissionRow.from_row(r) for r in conn.execute(
            sa.select(t).where(t.c.id.in_(ids)))] if ids else []
    rows.sort(key=lambda r: (r.received_at, r.id), reverse=True)
    return rows, len(named)
