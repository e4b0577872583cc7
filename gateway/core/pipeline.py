"""The pipeline: durable receive, then identify, parse, map and queue for publishing.

``receive_many`` is what channels call; it returns only once the raw bytes are archived and
the transmission is committed, so the channel may then acknowledge its transport.
``process`` takes a received transmission from the archive to documents in the outbox. A
payload error never escapes: the transmission is marked FAILED (or QUARANTINED) with its
stage and reason, and the next one is processed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.config import Partner, PartnerDirectory
from gateway.core.errors import FormatNotRecognised, PayloadError, UnknownPartner
from gateway.core.ports import Incoming, ParsedPayload, Reader, Receipt
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import NewDocument, Store

log = structlog.get_logger("edigw.pipeline")


class PayloadTooLarge(PayloadError):
    """Refused at receive: larger than the channel's limit (nothing archived)."""

    stage = "receive"

    def __init__(self, item: Incoming, limit: int) -> None:
        self.item = item
        super().__init__(f"{item.filename or 'payload'} is {len(item.data)} bytes, over the "
                         f"{limit}-byte limit")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing a transmission gave."""

    transmission_id: str
    status: str
    partner_id: str | None = None
    documents: int = 0
    queued: int = 0
    stage: str | None = None
    reason: str | None = None


class Pipeline:
    """Receive and process payloads against one store, archive and partner directory."""

    def __init__(self, *, store: Store, archive: Archive, partners: PartnerDirectory,
                 readers: Sequence[Reader], on_queued: Callable[[], None] | None = None,
                 max_size: int = 200 * 1024 * 1024) -> None:
        self.store = store
        self.archive = archive
        self.partners = partners
        self.readers = list(readers)
        self.on_queued = on_queued or (lambda: None)
        self.max_size = max_size

    # -- step 1: durable receive ----------------------------------------------------------

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        """Archive every payload, then record all of them in one commit."""
        from gateway.store.db import new_id

        receipts: list[Receipt] = []
        rows: list[dict] = []
        first_in_batch: dict[str, str] = {}
        for item in items:
            if len(item.data) > self.max_size:
                raise PayloadTooLarge(item, self.max_size)
            digest = hashlib.sha256(item.data).hexdigest()
            if item.channel_ref:
                earlier = self.store.unacknowledged_from(item.channel, item.channel_ref, digest)
                if earlier is not None:
                    receipts.append(Receipt(earlier.id, resumed=True))
                    continue
            self.archive.put(item.data)
            original = first_in_batch.get(digest)
            if original is None:
                found = self.store.find_by_sha256(digest)
                original = found.id if found else None
            tid = new_id()
            first_in_batch.setdefault(digest, tid)
            rows.append(dict(id=tid, channel=item.channel, channel_ref=item.channel_ref,
                             filename=item.filename, size=len(item.data), sha256=digest,
                             partner_id=item.partner_hint, duplicate_of=original))
            receipts.append(Receipt(tid, duplicate_of=original))
            if original:
                log.info("duplicate_received", transmission_id=tid, duplicate_of=original,
                         filename=item.filename)
        self.store.record_received_many(rows)
        return receipts

    def receive(self, item: Incoming) -> Receipt:
        return self.receive_many([item])[0]

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        self.store.mark_acknowledged_many([r.transmission_id for r in receipts], detail)

    # -- steps 3 to 6: identify, parse, map, queue ------------------------------------------

    def process(self, tid: str) -> Outcome:
        """Process one RECEIVED transmission; never raises for a bad payload."""
        row = self.store.get_transmission(tid)
        if row is None:
            raise KeyError(f"no transmission {tid}")
        if row.status not in (s.RECEIVED, s.FAILED, s.QUARANTINED):
            return Outcome(tid, row.status, row.partner_id, row.document_count)
        with structlog.contextvars.bound_contextvars(transmission_id=tid, filename=row.filename,
                                                    partner=row.partner_id):
            data = self.archive.get(row.sha256)
            partner: Partner | None = None
            parsed: ParsedPayload | None = None
            events: list[tuple[str, str]] = []  # written with the outcome, in one commit
            try:
                reader = self._detect(data)
                parsed = reader.parse(data, filename=row.filename)
                events.append(("parsed", parsed.summary()))
                partner = self._identify(parsed, row.partner_id)
                structlog.contextvars.bind_contextvars(partner=partner.id)
                mapped = parsed.documents(partner=partner, transmission_id=tid, filename=row.filename)
            except PayloadError as exc:
                status = s.QUARANTINED if isinstance(exc, UnknownPartner) else s.FAILED
                reason = str(exc)
                self.store.record_failed(tid, stage=exc.stage, reason=reason, status=status,
                                         partner_id=partner.id if partner else None,
                                         fmt=parsed.format if parsed else None,
                                         standard=parsed.standard if parsed else None,
                                         events=events)
                log.warning("transmission_failed", stage=exc.stage, reason=reason, status=status)
                return Outcome(tid, status, partner.id if partner else None, stage=exc.stage,
                               reason=reason)
            docs = [NewDocument(
                doc_type=m.doc_type, schema_version=m.schema_version,
                business_number=m.business_number, interchange_ref=m.interchange_ref,
                message_ref=m.message_ref, message_id=m.message_id,
                payload=m.document.to_json_bytes(),  # type: ignore[attr-defined]
                routing_key=f"{m.doc_type}.{partner.id}") for m in mapped]
            warnings = list(parsed.warnings) + [w for m in mapped for w in m.warnings]
            events.append(("identified", f"partner {partner.id} ({partner.name})"))
            if warnings:
                events.append(("warnings", "; ".join(warnings[:20])
                               + (f" … and {len(warnings) - 20} more" if len(warnings) > 20 else "")))
            queued = self.store.record_processed(tid, partner_id=partner.id, fmt=parsed.format,
                                                 standard=parsed.standard, docs=docs, events=events)
            log.info("transmission_processed", documents=len(docs), queued=queued,
                     warnings=len(warnings))
            if queued:
                self.on_queued()
            return Outcome(tid, s.PROCESSED if queued else s.PUBLISHED, partner.id, len(docs), queued)

    def resume(self, limit: int = 1000) -> int:
        """Process transmissions left RECEIVED by a crash; returns how many were processed."""
        done = 0
        while True:
            rows = self.store.transmissions_to_process(limit=100)
            if not rows:
                return done
            for row in rows:
                self.process(row.id)
                done += 1
                if done >= limit:
                    return done

    def _detect(self, data: bytes) -> Reader:
        if not data.strip():
            raise FormatNotRecognised("empty file, nothing to read")
        head = data[:4096]
        for reader in self.readers:
            if reader.sniff(head):
                return reader
        shown = head[:40].decode("latin-1").encode("unicode_escape").decode("ascii")
        raise FormatNotRecognised(
            f"not a recognised format (readers: {', '.join(r.format for r in self.readers)}); "
            f"file starts with '{shown}'")

    def _identify(self, parsed: ParsedPayload, hint: str | None) -> Partner:
        hinted = self.partners.get(hint) if hint else None
        if hint and hinted is None:
            raise UnknownPartner(f"channel names partner {hint!r}, which has no profile")
        found: dict[str, Partner] = {}
        unknown = []
        for sender in parsed.senders:
            if sender.id is None:
                continue
            p = self.partners.by_unb_sender(sender.id, sender.qualifier)
            if p is None:
                unknown.append(sender)
            else:
                found[p.id] = p
        if len(found) > 1:
            raise UnknownPartner("one file holds interchanges from several partners: "
                                 + ", ".join(sorted(found)))
        if found:
            partner = next(iter(found.values()))
            if hinted and partner.id != hinted.id:
                raise UnknownPartner(
                    f"file came through partner {hinted.id}'s channel but its UNB sender "
                    f"belongs to partner {partner.id}")
            if not partner.enabled:
                raise UnknownPartner(f"partner {partner.id} is disabled")
            return partner
        if hinted:
            return hinted
        if unknown:
            u = unknown[0]
            q = f" (qualifier {u.qualifier})" if u.qualifier else ""
            raise UnknownPartner(f"unknown sender id {u.id}{q}: no partner profile lists it "
                                 "under identifiers.unb", sender_id=u.id, qualifier=u.qualifier)
        raise UnknownPartner("payload names no sender and the channel is not partner-specific")
