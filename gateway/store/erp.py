"""What the ERP said about the documents edigw published (``edi.acks``), in the store.

``ErpAcks`` works on a ``Store`` (same engine, same write lock). :meth:`ErpAcks.record`
keeps every acknowledgement as received (an ``erp_acks`` row, also for those naming no known
document, and for malformed ones: the evidence of what the ERP said) and, for a valid one
naming a published document, sets the document's ``erp_status``/``erp_at``/``erp_reason`` and
adds ``erp-accepted`` / ``erp-rejected`` to its transmission's timeline, all in one commit.

The last word wins: a rejection after an acceptance replaces it (and the reverse). An
identical repeat (at-least-once delivery) changes nothing and adds no event. An
acknowledgement whose own time (``at``) is older than the word in force is kept as evidence
but changes nothing: a redelivered old message must not undo a newer one.

Which row an acknowledgement closes: the document that was queued for publishing under that
``message_id`` (PUBLISHED, or still PENDING when the ERP answered before edigw recorded the
broker's confirm), never a DUPLICATE row (the same message received again and not
republished) nor a failed one. A price list published in parts has message ids
``<id>-p<n>``; an acknowledgement naming ``<id>`` closes every part.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, utcnow
from gateway.store.records import aware

#: ``erp_acks.status`` of a message that was not an acknowledgement edigw understands.
ERP_INVALID = "INVALID"

# What an acknowledgement did (AckOutcome.result).
APPLIED = "applied"  # the document's ERP status was set or changed
REPEAT = "repeat"  # the document already had this word: nothing changed
STALE = "stale"  # older (by the ERP's own time) than the word in force: nothing changed
UNKNOWN = "unknown"  # no published document has this id: recorded, nothing closed
INVALID = "invalid"  # malformed: recorded with the reason, nothing closed

#: Document statuses an acknowledgement can close: rows queued for publishing.
_CLOSABLE = (s.DOC_PUBLISHED, s.PENDING, s.UNROUTABLE)
_MAX_ID = 64  # erp_acks.message_id and documents.message_id
_MAX_RAW = 64 * 1024  # bytes of a message kept as evidence


@dataclass(frozen=True, slots=True)
class ErpAck:
    """A well-formed acknowledgement: the ERP accepted or rejected ``message_id``."""

    message_id: str
    status: str  # schema.ERP_ACCEPTED or schema.ERP_REJECTED
    reason: str | None = None  # required when rejected
    at: dt.datetime | None = None  # the ERP's own time, timezone-aware
    document_id: str | None = None  # the gateway's document id, when the ERP kept it

    def __post_init__(self) -> None:
        if self.status not in (s.ERP_ACCEPTED, s.ERP_REJECTED):
            raise ValueError(f"an ERP acknowledgement is ACCEPTED or REJECTED, not {self.status!r}")
        if self.status == s.ERP_REJECTED and not self.reason:
            raise ValueError("a rejection needs its reason")
        if self.at is not None:  # stored as UTC (SQLite keeps no offset); naive means UTC
            at = self.at.replace(tzinfo=dt.UTC) if self.at.tzinfo is None else self.at
            object.__setattr__(self, "at", at.astimezone(dt.UTC))


@dataclass(frozen=True, slots=True)
class InvalidAck:
    """A message on the acknowledgement queue that is not a valid acknowledgement."""

    reason: str  # what is wrong, for the operator (and the ERP team)
    message_id: str | None = None  # when one could be read from it


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What :meth:`ErpAcks.record` did with one acknowledgement."""

    result: str  # APPLIED, REPEAT, STALE, UNKNOWN, INVALID
    status: str  # ACCEPTED, REJECTED, INVALID (as recorded)
    message_id: str | None
    ack_ids: tuple[int, ...] = ()  # erp_acks rows written
    document_ids: tuple[str, ...] = ()  # documents it names (one, or a price list's parts)
    transmission_ids: tuple[str, ...] = ()
    business_number: str | None = None
    reason: str | None = None  # the ERP's reason, or what made the message invalid

    @property
    def closed(self) -> bool:
        """True when the acknowledgement names a published document (changed or not)."""
        return bool(self.document_ids)


@dataclass(frozen=True, slots=True)
class WaitingDocument:
    """A published document the ERP has not acknowledged yet."""

    document_id: str
    transmission_id: str
    partner_id: str
    doc_type: str
    business_number: str | None
    message_id: str
    published_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ErpAckRow:
    """An acknowledgement as it was received (``erp_acks``)."""

    id: int
    received_at: dt.datetime
    document_id: str | None
    message_id: str | None
    status: str
    reason: str | None
    acked_at: dt.datetime | None
    raw: bytes = field(repr=False)


class ErpAcks:
    """The ERP's acknowledgements, in the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- recording --------------------------------------------------------------------------

    def record(self, ack: ErpAck | InvalidAck, raw: bytes) -> AckOutcome:
        """Record one acknowledgement and apply it to its document, in one commit."""
        return self.record_many([(ack, raw)])[0]

    def record_many(self, items: Sequence[tuple[ErpAck | InvalidAck, bytes]]
                    ) -> list[AckOutcome]:
        """:meth:`record` for several acknowledgements, in order, in one commit (the
        consumer settles what one read from the broker brought in one go)."""
        if not items:
            return []
        now = utcnow()
        with self.store._begin() as conn:
            return [self._record(conn, ack, raw, now) for ack, raw in items]

    def _record(self, conn: sa.Connection, ack: ErpAck | InvalidAck, raw: bytes,
                now: dt.datetime) -> AckOutcome:
        raw = bytes(raw[:_MAX_RAW])
        if isinstance(ack, InvalidAck):
            mid = ack.message_id[:_MAX_ID] if ack.message_id else None
            ack_id = _insert(conn, received_at=now, document_id=None, message_id=mid,
                             status=ERP_INVALID, reason=ack.reason, acked_at=None, raw=raw)
            return AckOutcome(result=INVALID, status=ERP_INVALID, message_id=mid,
                              ack_ids=(ack_id,), reason=ack.reason)
        docs = _targets(conn, ack)
        base = dict(received_at=now, message_id=ack.message_id[:_MAX_ID], status=ack.status,
                    reason=ack.reason, acked_at=ack.at, raw=raw)
        if not docs:
            ack_id = _insert(conn, document_id=None, **base)
            return AckOutcome(result=UNKNOWN, status=ack.status, message_id=ack.message_id,
                              ack_ids=(ack_id,), reason=ack.reason)
        results, ack_ids = [], []
        for doc in docs:
            ack_ids.append(_insert(conn, document_id=doc.id, **base))
            results.append(_apply(conn, doc, ack, now))
        # Parts of one price list share their state, so they share the result; should they
        # not, a change anywhere counts.
        result = APPLIED if APPLIED in results else results[0]
        return AckOutcome(
            result=result, status=ack.status, message_id=ack.message_id,
            ack_ids=tuple(ack_ids), document_ids=tuple(d.id for d in docs),
            transmission_ids=tuple(dict.fromkeys(d.transmission_id for d in docs)),
            business_number=docs[0].business_number, reason=ack.reason)

    # -- reading ----------------------------------------------------------------------------

    def erp_summary(self, transmission_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Per transmission, its published documents the ERP ``accepted``, ``rejected`` and
        those still ``waiting``; transmissions with no published document are left out."""
        d = s.documents
        tids = sorted(set(transmission_ids))
        out: dict[str, dict[str, int]] = {}
        with self.store.engine.connect() as conn:
            for start in range(0, len(tids), 500):
                rows = conn.execute(
                    sa.select(d.c.transmission_id, d.c.erp_status, sa.func.count())
                    .where(d.c.transmission_id.in_(tids[start:start + 500]))
                    .where(d.c.status == s.DOC_PUBLISHED)
                    .group_by(d.c.transmission_id, d.c.erp_status)).all()
                for tid, erp_status, count in rows:
                    counts = out.setdefault(tid, {"accepted": 0, "rejected": 0, "waiting": 0})
                    key = {s.ERP_ACCEPTED: "accepted", s.ERP_REJECTED: "rejected"}.get(
                        erp_status, "waiting")
                    counts[key] += count
        return out

    def waiting(self, *, since: dt.datetime | None = None,
                published_before: dt.datetime | None = None, partner_id: str | None = None,
                limit: int = 1000) -> list[WaitingDocument]:
        """Published documents with no word from the ERP yet, oldest first: published at or
        after ``since`` and before ``published_before`` (an SLA's deadline), when given."""
        d = s.documents
        q = (sa.select(d.c.id, d.c.transmission_id, d.c.partner_id, d.c.doc_type,
                       d.c.business_number, d.c.message_id, d.c.published_at)
             .where(d.c.status == s.DOC_PUBLISHED).where(d.c.erp_status.is_(None))
             .order_by(d.c.published_at, d.c.id).limit(limit))
        if since is not None:
            q = q.where(d.c.published_at >= since)
        if published_before is not None:
            q = q.where(d.c.published_at < published_before)
        if partner_id is not None:
            q = q.where(d.c.partner_id == partner_id)
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [WaitingDocument(document_id=r.id, transmission_id=r.transmission_id,
                                partner_id=r.partner_id, doc_type=r.doc_type,
                                business_number=r.business_number, message_id=r.message_id,
                                published_at=aware(r.published_at)) for r in rows]

    def acks_of(self, document_id: str) -> list[ErpAckRow]:
        """Every acknowledgement received for a document, oldest first."""
        return self._rows(s.erp_acks.c.document_id == document_id, limit=None)

    def unmatched(self, *, since: dt.datetime | None = None,
                  limit: int = 100) -> list[ErpAckRow]:
        """Acknowledgements that closed nothing (invalid, or naming no published document),
        newest first: what an operator shows the ERP team."""
        a = s.erp_acks
        cond: sa.ColumnElement[bool] = a.c.document_id.is_(None)
        if since is not None:
            cond = sa.and_(cond, a.c.received_at >= since)
        return self._rows(cond, limit=limit, newest_first=True)

    def _rows(self, cond: Any, *, limit: int | None,
              newest_first: bool = False) -> list[ErpAckRow]:
        a = s.erp_acks
        q = sa.select(a).where(cond).order_by(a.c.id.desc() if newest_first else a.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [ErpAckRow(id=r.id, received_at=aware(r.received_at), document_id=r.document_id,
                          message_id=r.message_id, status=r.status, reason=r.reason,
                          acked_at=aware(r.acked_at), raw=bytes(r.raw)) for r in rows]


def _insert(conn: sa.Connection, **values: Any) -> int:
    result = conn.execute(s.erp_acks.insert().values(**values))
    key = result.inserted_primary_key
    assert key is not None  # an insert of one row
    return int(key[0])


def _targets(conn: sa.Connection, ack: ErpAck) -> list[Any]:
    """The document(s) the acknowledgement names: by the gateway's id when given (and its
    message id agrees), else the published row with this message id, else a price list's
    parts."""
    d = s.documents
    cols = (d.c.id, d.c.transmission_id, d.c.doc_type, d.c.business_number, d.c.message_id,
            d.c.status, d.c.erp_status, d.c.erp_at, d.c.erp_reason)
    closable = d.c.status.in_(_CLOSABLE)
    if ack.document_id:
        row = conn.execute(sa.select(*cols).where(d.c.id == ack.document_id[:32])
                           .where(closable)).first()
        if row is not None and (row.message_id == ack.message_id
                                or row.message_id.startswith(f"{ack.message_id}-p")):
            return [row]
        return []
    rows = conn.execute(sa.select(*cols).where(d.c.message_id == ack.message_id)
                        .where(closable)).all()
    if not rows:
        prefix = _escape_like(ack.message_id) + "-p%"
        rows = conn.execute(sa.select(*cols).where(d.c.message_id.like(prefix, escape="\\"))
                            .where(closable).order_by(d.c.id)).all()
        return list(rows)
    # One message id is queued once (later copies are DUPLICATE rows); should an older
    # database hold two, the published one is the one the ERP saw.
    rank = {s.DOC_PUBLISHED: 0, s.PENDING: 1, s.UNROUTABLE: 2}
    return [min(rows, key=lambda r: (rank[r.status], r.id))]


def _apply(conn: sa.Connection, doc: Any, ack: ErpAck, now: dt.datetime) -> str:
    """Set the document's ERP status unless it already says this, or says something newer."""
    if doc.erp_status == ack.status and (doc.erp_reason or None) == (ack.reason or None):
        return REPEAT
    current = aware(doc.erp_at)
    if ack.at is not None and current is not None and doc.erp_status is not None \
            and ack.at < current:
        return STALE
    when = ack.at or now
    d = s.documents
    conn.execute(d.update().where(d.c.id == doc.id).values(
        erp_status=ack.status, erp_at=when, erp_reason=ack.reason))
    what = doc.business_number or doc.message_id
    if ack.status == s.ERP_ACCEPTED:
        event, detail = "erp-accepted", f"{doc.doc_type} {what} accepted by the ERP"
        if ack.reason:
            detail += f" ({ack.reason})"
    else:
        event, detail = "erp-rejected", f"{doc.doc_type} {what} rejected by the ERP: {ack.reason}"
    if doc.erp_status is not None and doc.erp_status != ack.status:
        detail += f"; it had {'accepted' if doc.erp_status == s.ERP_ACCEPTED else 'rejected'} it"
    conn.execute(s.transmission_events.insert().values(
        transmission_id=doc.transmission_id, at=now, event=event, detail=detail))
    return APPLIED


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
