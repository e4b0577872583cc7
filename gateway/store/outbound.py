"""The outbound repository: payloads edigw sends to partners — replies (CONTRL), and the
documents the ERP sends out (``direction = "out"`` transmissions) — their rendering,
sending, retries, receipts and failing; interchange control references per partner."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.errors import StoreError
from gateway.core.ids import new_id
from gateway.core.records import NewOutboundDocument
from gateway.core.status import DocumentStatus, TransmissionStatus
from gateway.store import schema as s
from gateway.store.engine import StoreEngine, utcnow
from gateway.store.records import OutboundRow, TransmissionRow, aware

#: Where the outbound transmission goes when its outbound row does.
_TRANSMISSION_FOR = {s.OUT_SENT: TransmissionStatus.SENT,
                     s.OUT_DELIVERED: TransmissionStatus.DELIVERED}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered document for ``record_rendered_many``."""

    tid: str
    partner_id: str
    channel: str
    kind: str
    document: NewOutboundDocument
    mapping: str
    syntax: str
    uses_control_ref: bool


@dataclass(frozen=True, slots=True)
class Sealed:
    """What ``record_rendered``'s ``seal`` callback made: the archived payload."""

    sha256: str
    size: int
    filename: str


class OutboundRepository(StoreEngine):
    """Outbound payloads (replies, MDNs, acknowledgements, documents) and their delivery."""

    # -- documents from the ERP ---------------------------------------------------------

    def outbound_by_ref(self, channel: str, channel_ref: str) -> TransmissionRow | None:
        """The outbound transmission recorded for this ERP message (``channel_ref``: its
        message id): a redelivered message is answered from it, not sent twice."""
        t = s.transmissions
        q = (sa.select(t).where(t.c.direction == "out", t.c.channel == channel,
                                t.c.channel_ref == channel_ref)
             .order_by(t.c.received_at).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return TransmissionRow.from_row(row) if row is not None else None

    def record_outbound_received_many(self, items: list[dict[str, Any]]) -> list[str | None]:
        """``record_outbound_received`` for many documents in one commit (each item holds
        its keyword arguments). None for an item whose source reference (``channel``,
        ``channel_ref``) another instance recorded first."""
        now = utcnow()
        ids: list[str] = []
        t_rows: list[dict[str, Any]] = []
        e_rows: list[dict[str, Any]] = []
        for it in items:
            tid = new_id()
            ids.append(tid)
            t_rows.append(dict(
                id=tid, channel=it["channel"], channel_ref=it.get("channel_ref"),
                partner_id=it.get("partner_id"), filename=it.get("filename"),
                size=it["size"], sha256=it["sha256"], received_at=now, acknowledged_at=None,
                status=s.RECEIVED, updated_at=now, document_count=0, direction="out",
                claimed_by=self.instance_id, reprocess_of=it.get("reprocess_of"),
                requested_by=it.get("requested_by"),
                request_reason=it.get("request_reason")))
            e_rows.append(dict(transmission_id=tid, at=now, event="received",
                               detail=it["detail"]))
            if it.get("reprocess_of"):
                e_rows.append(dict(transmission_id=tid, at=now, event="reprocess-of",
                                   detail=f"resend of {it['reprocess_of']} by "
                                          f"{it.get('requested_by')}: {it.get('request_reason')}"))
                e_rows.append(dict(transmission_id=it["reprocess_of"], at=now,
                                   event="reprocessed",
                                   detail=f"sent again as {tid} by {it.get('requested_by')}: "
                                          f"{it.get('request_reason')}"))
        if not t_rows:
            return []
        try:
            with self._begin() as conn:
                conn.execute(s.transmissions.insert(), t_rows)
                conn.execute(s.transmission_events.insert(), e_rows)
        except sa.exc.IntegrityError:
            # Another instance recorded one of these messages meanwhile (the unique source
            # reference): each on its own, and the one already there is None.
            out: list[str | None] = []
            for tid, row in zip(ids, t_rows, strict=True):
                try:
                    with self._begin() as conn:
                        conn.execute(s.transmissions.insert(), [row])
                        conn.execute(s.transmission_events.insert(),
                                     [e for e in e_rows if e["transmission_id"] == tid])
                except sa.exc.IntegrityError:
                    out.append(None)
                else:
                    out.append(tid)
            return out
        return list(ids)

    def record_outbound_received(self, *, channel: str, channel_ref: str | None,
                                 filename: str | None, size: int, sha256: str,
                                 partner_id: str | None, detail: str,
                                 reprocess_of: str | None = None,
                                 requested_by: str | None = None,
                                 request_reason: str | None = None) -> str:
        """An outbound document whose bytes (as the ERP sent them) are archived: RECEIVED.
        StoreError when its source reference was recorded already."""
        tid = self.record_outbound_received_many([dict(
            channel=channel, channel_ref=channel_ref, filename=filename, size=size,
            sha256=sha256, partner_id=partner_id, detail=detail, reprocess_of=reprocess_of,
            requested_by=requested_by, request_reason=request_reason)])[0]
        if tid is None:
            raise StoreError(f"{channel} {channel_ref} is recorded already")
        return tid

    def outbound_to_render(self, older_than: dt.datetime, limit: int = 100
                           ) -> list[TransmissionRow]:
        """Outbound transmissions still RECEIVED since before ``older_than`` (a crash
        between receiving and rendering): rendered again by whoever delivers."""
        t = s.transmissions
        # A price-list distribution (no partner, ``list:…``) is the distributor's to resume.
        q = (sa.select(t).where(t.c.direction == "out", t.c.status == s.RECEIVED,
                                t.c.received_at < older_than,
                                sa.or_(t.c.partner_id.is_not(None), t.c.channel_ref.is_(None),
                                       sa.not_(t.c.channel_ref.startswith("list:",
                                                                          autoescape=True))))
             .order_by(t.c.received_at).limit(limit))
        with self.engine.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    def record_rendered(self, tid: str, *, partner_id: str, channel: str, kind: str,
                        document: NewOutboundDocument, mapping: str, syntax: str,
                        uses_control_ref: bool,
                        seal: Callable[[str | None], Sealed]) -> OutboundRow:
        """Commit a rendered document in one transaction: the partner's next control
        reference (when the syntax uses one), ``seal(ref)`` which archives the bytes that
        leave, the documents row, the outbound row PENDING and the transmission RENDERED.
        If anything fails, nothing is kept and the reference is not used: gap-free."""
        return self.record_rendered_many([Rendered(
            tid, partner_id, channel, kind, document, mapping, syntax, uses_control_ref)],
            lambda refs: [seal(ref) for ref in refs])[0]

    def record_rendered_many(self, items: list[Rendered],
                             seal: Callable[[list[str | None]], list[Sealed]]
                             ) -> list[OutboundRow]:
        """``record_rendered`` for many documents in one transaction (group commit):
        control references are taken in order, ``seal`` gets them all at once (one
        archive sync for the batch) and returns what it archived, in order."""
        now = utcnow()
        out: list[OutboundRow] = []
        with self._begin() as conn:
            refs = [self._next_control_ref(conn, it.partner_id, now) if it.uses_control_ref
                    else None for it in items]
            sealed_all = seal(refs)
            d_rows, o_rows, e_rows = [], [], []
            for it, ref, sealed in zip(items, refs, sealed_all, strict=True):
                did, oid = new_id(), new_id()
                doc = it.document
                d_rows.append(dict(
                    id=did, transmission_id=it.tid, partner_id=it.partner_id,
                    doc_type=it.kind, schema_version=doc.schema_version,
                    business_number=doc.business_number, interchange_ref=ref,
                    message_ref=None, message_id=doc.message_id,
                    status=DocumentStatus.OUTBOUND, created_at=now, payload=doc.payload,
                    content_sha=doc.content_sha))
                o_rows.append(dict(
                    id=oid, transmission_id=it.tid, partner_id=it.partner_id, kind=it.kind,
                    channel=it.channel, filename=sealed.filename, sha256=sealed.sha256,
                    size=sealed.size, status=s.OUT_PENDING, attempts=0, created_at=now,
                    document_id=did, mapping=it.mapping, control_ref=ref))
                conn.execute(s.transmissions.update().where(s.transmissions.c.id == it.tid)
                             .values(status=TransmissionStatus.RENDERED,
                                     partner_id=it.partner_id, format=it.syntax,
                                     standard=it.mapping, document_count=1, stage=None,
                                     reason=None, updated_at=now))
                detail = f"{it.kind} {doc.business_number} as {it.mapping}, {sealed.size} bytes"
                if ref is not None:
                    detail += f", interchange {ref}"
                e_rows.append(dict(transmission_id=it.tid, at=now, event="rendered",
                                   detail=detail))
                out.append(OutboundRow(
                    id=oid, transmission_id=it.tid, partner_id=it.partner_id, kind=it.kind,
                    channel=it.channel, filename=sealed.filename, sha256=sealed.sha256,
                    size=sealed.size, status=s.OUT_PENDING, attempts=0, last_error=None,
                    created_at=now, sent_at=None, detail=None, document_id=did,
                    mapping=it.mapping, control_ref=ref))
            if d_rows:
                conn.execute(s.documents.insert(), d_rows)
                conn.execute(s.outbound.insert(), o_rows)
                conn.execute(s.transmission_events.insert(), e_rows)
        return out

    def fail_outbound(self, tid: str, *, stage: str, reason: str) -> None:
        """The outbound transmission failed before anything was sent (invalid JSON, unknown
        partner, cannot be rendered): FAILED with stage and reason."""
        now = utcnow()
        with self._begin() as conn:
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid).values(
                status=s.FAILED, stage=stage, reason=reason[:4000], updated_at=now))
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid, at=now, event="failed", detail=f"{stage}: {reason}"[:4000]))

    def _next_control_ref(self, conn: sa.Connection, partner_id: str, now: dt.datetime) -> str:
        c = s.control_refs
        row = conn.execute(c.update().where(c.c.partner_id == partner_id)
                           .values(last=c.c.last + 1, updated_at=now)
                           .returning(c.c.last)).first()
        if row is None:
            conn.execute(c.insert().values(partner_id=partner_id, last=1, updated_at=now))
            return "1"
        return str(row.last)

    def last_control_ref(self, partner_id: str) -> int:
        """The last control reference given to ``partner_id`` (0: none yet)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(s.control_refs.c.last)
                                 .where(s.control_refs.c.partner_id == partner_id)).scalar()
        return int(value or 0)

    # -- delivery -----------------------------------------------------------------------

    def pending_outbound(self, limit: int = 100, *, now: dt.datetime | None = None,
                         held: Collection[str] = ()) -> list[OutboundRow]:
        """PENDING rows whose back-off has run out, oldest first; none for the partners
        ``held`` (suspended: their rows wait, and do not crowd the others out)."""
        o = s.outbound
        now = now or utcnow()
        query = sa.select(o).where(
            o.c.status == s.OUT_PENDING,
            sa.or_(o.c.next_attempt_at.is_(None), o.c.next_attempt_at <= now))
        if held:
            query = query.where(o.c.partner_id.not_in(sorted(held)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(o.c.created_at, o.c.id).limit(limit)).all()
        return [_outbound_row(r) for r in rows]

    def outbound_of(self, tid: str) -> list[OutboundRow]:
        o = s.outbound
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(o).where(o.c.transmission_id == tid)
                                .order_by(o.c.created_at, o.c.id)).all()
        return [_outbound_row(r) for r in rows]

    def get_outbound(self, oid: str) -> OutboundRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.outbound).where(s.outbound.c.id == oid)).first()
        return _outbound_row(row) if row is not None else None

    def mark_outbound_sent(self, oid: str, detail: str, *, delivered: bool = False,
                           remote_id: str | None = None, receipt: str | None = None) -> None:
        """Handed over (``SENT``), or confirmed by the partner's side at once
        (``delivered``: DELIVERED). An outbound document's transmission follows."""
        self.mark_outbound_sent_many([(oid, detail, delivered, remote_id, receipt)])

    def mark_outbound_sent_many(self, sent: list[tuple[str, str, bool, str | None, str | None]]
                                ) -> None:
        """``mark_outbound_sent`` for many rows in one commit: (id, detail, delivered,
        remote id, receipt) each."""
        if not sent:
            return
        now = utcnow()
        with self._begin() as conn:
            for oid, detail, delivered, remote_id, receipt in sent:
                status = s.OUT_DELIVERED if delivered else s.OUT_SENT
                values: dict[str, Any] = dict(
                    status=status, sent_at=now, detail=detail,
                    attempts=s.outbound.c.attempts + 1, last_error=None,
                    next_attempt_at=None, remote_id=remote_id, receipt=receipt)
                if delivered:
                    values["delivered_at"] = now
                row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid)
                                   .values(**values)
                                   .returning(s.outbound.c.transmission_id, s.outbound.c.kind,
                                              s.outbound.c.document_id)).first()
                if row is None or not row.transmission_id:
                    continue
                event = f"{row.kind}-delivered" if delivered else f"{row.kind}-sent"
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now, event=event[:32],
                    detail=detail + (f"; {receipt}" if receipt else "")))
                if row.document_id is not None:
                    self._follow(conn, row.transmission_id, _TRANSMISSION_FOR[status], now)

    def mark_outbound_failed(self, oid: str, error: str, *, give_up: bool = False,
                             retry_at: dt.datetime | None = None) -> None:
        """One attempt failed: retried from ``retry_at`` on, or (``give_up``) FAILED —
        and an outbound document's transmission with it, stage ``deliver``."""
        now = utcnow()
        values: dict[str, Any] = dict(attempts=s.outbound.c.attempts + 1,
                                      last_error=error[:2000], next_attempt_at=retry_at)
        if give_up:
            values["status"] = s.OUT_FAILED
        with self._begin() as conn:
            row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid).values(**values)
                               .returning(s.outbound.c.transmission_id, s.outbound.c.kind,
                                          s.outbound.c.document_id)).first()
            if row is None or not row.transmission_id:
                return
            if give_up:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now,
                    event=f"{row.kind}-failed"[:32], detail=error[:2000]))
                if row.document_id is not None:
                    self._fail_transmission(conn, row.transmission_id, "deliver", error, now)
            elif row.document_id is not None:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now, event="delivery-retry",
                    detail=f"{error[:1500]}; next attempt "
                           f"{retry_at.isoformat(timespec='seconds') if retry_at else 'now'}"))

    def record_receipt(self, oid: str, *, ok: bool, receipt: str) -> None:
        """A receipt came for a sent payload (an asynchronous MDN, a CONTRL): positive makes
        it DELIVERED, negative FAILED (stage ``receipt``). Either way it is on the timeline."""
        now = utcnow()
        o = s.outbound
        with self._begin() as conn:
            row = conn.execute(sa.select(o.c.transmission_id, o.c.kind, o.c.document_id,
                                         o.c.status).where(o.c.id == oid)).first()
            if row is None:
                return
            values: dict[str, Any] = dict(receipt=receipt[:4000])
            if ok:
                values.update(status=s.OUT_DELIVERED, delivered_at=now)
            else:
                values.update(status=s.OUT_FAILED, last_error=receipt[:2000])
            conn.execute(o.update().where(o.c.id == oid).values(**values))
            if not row.transmission_id:
                return
            conn.execute(s.transmission_events.insert().values(
                transmission_id=row.transmission_id, at=now,
                event="receipt" if ok else "receipt-negative", detail=receipt[:4000]))
            if row.document_id is None:
                return
            if ok:
                self._follow(conn, row.transmission_id, TransmissionStatus.DELIVERED, now)
            else:
                self._fail_transmission(conn, row.transmission_id, "receipt", receipt, now)

    def outbound_by_remote_id(self, remote_id: str) -> OutboundRow | None:
        """The payload a receipt names by its transport id (the AS2 Message-ID)."""
        o = s.outbound
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(o).where(o.c.remote_id == remote_id)
                               .order_by(o.c.created_at.desc()).limit(1)).first()
        return _outbound_row(row) if row is not None else None

    def outbound_by_control_ref(self, partner_id: str, control_ref: str) -> OutboundRow | None:
        """The interchange sent to ``partner_id`` under ``control_ref`` (what a CONTRL names)."""
        o = s.outbound
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(o).where(o.c.partner_id == partner_id,
                                                  o.c.control_ref == control_ref)
                               .order_by(o.c.created_at.desc()).limit(1)).first()
        return _outbound_row(row) if row is not None else None

    def _follow(self, conn: sa.Connection, tid: str, status: str, now: dt.datetime) -> None:
        t = s.transmissions
        # Never backwards: a late SENT after DELIVERED changes nothing.
        order = [TransmissionStatus.RENDERED, TransmissionStatus.SENT,
                 TransmissionStatus.DELIVERED]
        before = order[:order.index(TransmissionStatus(status))]
        conn.execute(t.update().where(t.c.id == tid, t.c.status.in_(before))
                     .values(status=status, updated_at=now))

    def _fail_transmission(self, conn: sa.Connection, tid: str, stage: str, reason: str,
                           now: dt.datetime) -> None:
        t = s.transmissions
        conn.execute(t.update().where(t.c.id == tid).values(
            status=s.FAILED, stage=stage, reason=reason[:4000], updated_at=now))


def _outbound_row(r: Any) -> OutboundRow:
    data = dict(r._mapping)
    for key in ("created_at", "sent_at", "next_attempt_at", "delivered_at"):
        data[key] = aware(data[key])
    return OutboundRow(**data)
