"""The pipeline: durable receive, then identify, parse, map and queue for publishing.

``receive_many`` is what channels call; it returns only once the raw bytes are archived and
the transmission is committed, so the channel may then acknowledge its transport.
``process`` takes a received transmission from the archive to documents in the outbox. A
payload error never escapes: the transmission is marked FAILED (or QUARANTINED) with its
stage and reason, and the next one is processed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from gateway.config import Partner, PartnerDirectory
from gateway.core.errors import FormatNotRecognised, PayloadError, UnknownPartner
from gateway.core.ports import FailedMessage, Incoming, ParsedPayload, Reader, Receipt
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import NewDocument, Store, TransmissionRow
from gateway.store.records import NewInterchange, NewOutbound

log = structlog.get_logger("edigw.pipeline")


class PayloadTooLarge(PayloadError):
    """Refused at receive: larger than the channel's limit (nothing archived)."""

    stage = "receive"

    def __init__(self, item: Incoming, limit: int, size: int | None = None) -> None:
        self.item = item
        size = item.size if size is None else size
        super().__init__(f"{item.filename or 'payload'} is {size} bytes, over the "
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
                 on_outbound: Callable[[], None] | None = None,
                 max_size: int = 200 * 1024 * 1024) -> None:
        self.store = store
        self.archive = archive
        self.partners = partners
        self.readers = list(readers)
        self.on_queued = on_queued or (lambda: None)
        self.on_outbound = on_outbound or (lambda: None)
        self.max_size = max_size
        #: Control references taken by transmissions of the batch being processed, not yet
        #: committed: (partner, ref) -> where (the duplicate check must see them too).
        self._batch_refs: dict[tuple[str, str], str] = {}

    # -- step 1: durable receive ----------------------------------------------------------

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        """Archive every payload (one sync for the batch), then record all in one commit."""
        from gateway.store.db import new_id

        sizes = [item.size for item in items]
        for item, size in zip(items, sizes, strict=True):
            if size > self.max_size:
                raise PayloadTooLarge(item, self.max_size, size)
        # A large payload given as a file is archived at once, by streaming (hashing it
        # needs a full read anyway); small ones are hashed here and archived together below.
        digests = [self.archive.put_file(item.path)[0] if item.path is not None
                   else hashlib.sha256(item.data).hexdigest() for item in items]
        by_channel: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_channel.setdefault(item.channel, []).append(i)
        originals: dict[str, str] = {}
        unacked: dict[tuple[str, str], str] = {}
        for channel, idx in by_channel.items():
            found, left = self.store.receive_lookup(
                channel, [(items[i].channel_ref, digests[i]) for i in idx])
            originals.update(found)
            unacked.update(left)
        fresh = [i for i, item in enumerate(items) if item.path is None
                 and not (item.channel_ref and (item.channel_ref, digests[i]) in unacked)]
        self.archive.put_many([items[i].data for i in fresh])
        receipts: list[Receipt] = []
        rows: list[dict] = []
        for i, item in enumerate(items):
            digest = digests[i]
            left_over = unacked.get((item.channel_ref, digest)) if item.channel_ref else None
            if left_over is not None:
                # Received before a crash but never acknowledged: acknowledge only.
                receipts.append(Receipt(left_over, resumed=True))
                continue
            original = originals.get(digest)
            tid = new_id()
            originals.setdefault(digest, tid)
            rows.append(dict(id=tid, channel=item.channel, channel_ref=item.channel_ref,
                             filename=item.filename, size=sizes[i], sha256=digest,
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

    #: Documents per commit for a large interchange: the publisher starts on the first
    #: chunk while the rest are written. Smaller transmissions are committed in one go.
    chunk_size = 1000

    def process(self, tid: str) -> Outcome:
        """Process one RECEIVED (or FAILED, QUARANTINED) transmission; never raises for a bad
        payload."""
        return self.process_many([tid])[0]

    def process_many(self, tids: Sequence[str]) -> list[Outcome]:
        """Process several transmissions; small outcomes are committed together."""
        outcomes: list[Outcome] = []
        batch: list[tuple[int, dict]] = []
        queued = 0
        outbound = False
        self._batch_refs = {}
        rows = self.store.get_transmissions(tids)
        for tid in tids:
            work = self._work(tid, rows.get(tid))
            if isinstance(work, Outcome):  # nothing to do (already processed)
                outcomes.append(work)
                continue
            outcome, record = work
            outbound = outbound or bool(record.get("outbound"))
            if record["kind"] == "processed" and len(record["docs"]) > self.chunk_size:
                n = self._record_in_chunks(record)
                queued += n
                outcome = replace(outcome, queued=n, status=s.PROCESSED if n else s.PUBLISHED)
            else:
                batch.append((len(outcomes), record))
            outcomes.append(outcome)
        if batch:
            counts = self.store.record_batch([r for _, r in batch])
            for (i, record), n in zip(batch, counts, strict=True):
                queued += n
                if record["kind"] == "processed" and not record.get("failed"):
                    outcomes[i] = replace(outcomes[i], queued=n,
                                          status=s.PROCESSED if n else s.PUBLISHED)
        for o in outcomes:
            if o.reason:
                log.warning("transmission_failed", transmission_id=o.transmission_id,
                            partner=o.partner_id, stage=o.stage, reason=o.reason,
                            status=o.status)
            elif o.queued or o.documents:
                log.info("transmission_processed", transmission_id=o.transmission_id,
                         partner=o.partner_id, documents=o.documents, queued=o.queued)
        if queued:
            self.on_queued()
        if outbound:
            self.on_outbound()
        self._batch_refs = {}
        return outcomes

    #: Keys of a processed record written with the last chunk only.
    _FINAL_KEYS = frozenset({"events", "interchanges", "outbound", "stage", "reason", "failed"})

    def _record_in_chunks(self, record: dict) -> int:
        docs = record.pop("docs")
        queued = 0
        size = self.chunk_size
        for start in range(0, len(docs), size):
            last = start + size >= len(docs)
            queued += self.store.record_processed(
                docs=docs[start:start + size], final=last,
                **{k: v for k, v in record.items()
                   if k != "kind" and (last or k not in self._FINAL_KEYS)})
            if queued and not last:
                self.on_queued()  # the publisher starts while the rest is written
        return queued

    def _work(self, tid: str, row: TransmissionRow | None = None) -> Outcome | tuple[Outcome, dict]:
        """Read, identify and map one transmission in memory; returns its outcome and what
        to record, or an Outcome alone when there is nothing to do."""
        row = row or self.store.get_transmission(tid)
        if row is None:
            raise KeyError(f"no transmission {tid}")
        if row.status not in (s.RECEIVED, s.FAILED, s.QUARANTINED) and not (
                row.status in (s.PROCESSED, s.PUBLISHED) and row.reason):
            # Done (a partly failed transmission, with a reason, may be processed again).
            return Outcome(tid, row.status, row.partner_id, row.document_count)
        if row.status != s.RECEIVED:
            self.store.clear_outcome(tid)  # processed again: its failed messages anew
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
                known = self._known_refs(partner, parsed, tid)
                mapped = parsed.documents(partner=partner, transmission_id=tid,
                                          filename=row.filename, known_refs=known)
            except PayloadError as exc:
                status = s.QUARANTINED if isinstance(exc, UnknownPartner) else s.FAILED
                reason = str(exc)
                record = dict(kind="failed", tid=tid, stage=exc.stage, reason=reason,
                              status=status, partner_id=partner.id if partner else None,
                              fmt=parsed.format if parsed else None,
                              standard=parsed.standard if parsed else None, events=events)
                return Outcome(tid, status, partner.id if partner else None, stage=exc.stage,
                               reason=reason), record
            docs: list[NewDocument] = []
            failures: list[FailedMessage] = []
            warnings = list(parsed.warnings)
            for m in mapped:
                if isinstance(m, FailedMessage):
                    failures.append(m)
                    docs.append(_failed_document(m, partner.id))
                    continue
                warnings += m.warnings
                docs.append(NewDocument(
                    doc_type=m.doc_type, schema_version=m.schema_version,
                    business_number=m.business_number, interchange_ref=m.interchange_ref,
                    message_ref=m.message_ref, message_id=m.message_id,
                    payload=m.document.to_json_bytes(),  # type: ignore[attr-defined]
                    routing_key=f"{m.doc_type}.{partner.id}"))
            events.append(("identified", f"partner {partner.id} ({partner.name})"))
            if warnings:
                events.append(("warnings", "; ".join(warnings[:20])
                               + (f" … and {len(warnings) - 20} more" if len(warnings) > 20 else "")))
            record: dict[str, Any] = dict(
                kind="processed", tid=tid, partner_id=partner.id, fmt=parsed.format,
                standard=parsed.standard, docs=docs, events=events,
                interchanges=self._interchanges(parsed, partner.id),
                outbound=self._replies(parsed, partner, tid))
            good = len(docs) - len(failures)
            if failures:
                record.update(_failure_note(failures, len(docs)))
            if failures and not good:
                return Outcome(tid, s.FAILED, partner.id, len(docs), 0, stage=record["stage"],
                               reason=record["reason"]), record
            status = s.PROCESSED if good else s.PUBLISHED
            return Outcome(tid, status, partner.id, len(docs), good,
                           stage=record.get("stage"), reason=record.get("reason")), record

    def _known_refs(self, partner: Partner, parsed: ParsedPayload, tid: str) -> dict[str, str]:
        """Control references of ``parsed`` this partner sent before (duplicate check)."""
        if partner.edifact.duplicate_interchange == "accept":
            return {}
        refs = parsed.control_refs() if hasattr(parsed, "control_refs") else []
        if not refs:
            return {}
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=partner.edifact.duplicate_window_days)
        known = {ref: f"in transmission {t} on {at:%Y-%m-%d %H:%M} UTC"
                 for ref, (t, at) in self.store.interchange_refs_seen(partner.id, refs,
                                                                      since).items()
                 if t != tid}
        for ref in refs:
            where = self._batch_refs.get((partner.id, ref))
            if where and ref not in known:
                known[ref] = where
            self._batch_refs.setdefault((partner.id, ref), f"in transmission {tid}")
        return known

    @staticmethod
    def _interchanges(parsed: ParsedPayload, partner_id: str) -> list[NewInterchange]:
        if not hasattr(parsed, "interchanges_seen"):
            return []
        return [NewInterchange(
            control_ref=i.control_ref, sender_id=i.sender_id, sender_qualifier=i.sender_qualifier,
            recipient_id=i.recipient_id, prepared=i.prepared, message_count=i.message_count,
            status=s.IC_REJECTED if i.rejected else s.IC_ACCEPTED, reason=i.rejected)
            for i in parsed.interchanges_seen()]

    def _replies(self, parsed: ParsedPayload, partner: Partner, tid: str) -> list[NewOutbound]:
        """Acknowledgements the partner wants, archived (synced) before the outcome commits."""
        if not hasattr(parsed, "replies"):
            return []
        replies = parsed.replies(partner=partner, transmission_id=tid)
        if not replies:
            return []
        digests = self.archive.put_many([r.data for r in replies])
        return [NewOutbound(kind=r.kind, channel=partner.outbound.channel, filename=r.filename,
                            sha256=d, size=len(r.data), detail=r.detail)
                for r, d in zip(replies, digests, strict=True)]

    def resume(self, limit: int = 100_000) -> int:
        """Process transmissions left RECEIVED by a crash; returns how many were processed."""
        done = 0
        while done < limit:
            rows = self.store.transmissions_to_process(limit=64)
            if not rows:
                break
            self.process_many([r.id for r in rows])
            done += len(rows)
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


def _failed_document(m: FailedMessage, partner_id: str) -> NewDocument:
    """A message that failed, stored as a document row without outbox row."""
    error = {"status": m.status, "stage": m.stage, "reason": m.reason, "code": m.code,
             "message": m.description}
    return NewDocument(
        doc_type=m.doc_type or "unknown", schema_version="-", business_number=m.business_number,
        interchange_ref=m.interchange_ref, message_ref=m.message_ref, message_id=m.message_id,
        payload=json.dumps(error, ensure_ascii=False).encode("utf-8"),
        routing_key=f"{m.doc_type or 'unknown'}.{partner_id}", status=m.status, stage=m.stage,
        reason=m.reason)


def _failure_note(failures: list[FailedMessage], total: int) -> dict[str, Any]:
    """Stage and reason of a transmission some (or all) of whose messages failed."""
    first = failures[0]
    bad = sum(1 for f in failures if f.status == s.DOC_FAILED)
    unsupported = len(failures) - bad
    parts = []
    if bad:
        parts.append(f"{bad} of {total} message(s) failed")
    if unsupported:
        parts.append(f"{unsupported} of {total} message(s) unsupported")
    reason = first.reason if len(failures) == 1 and total == 1 else \
        f"{' and '.join(parts)}; first: {first.reason}"
    return dict(stage=first.stage if bad else "unsupported", reason=reason,
                failed=len(failures) == total)
