"""The pipeline: durable receive, then identify, parse, map and queue for publishing.

``receive_many`` is what channels call; it returns only once the raw bytes are archived and
the transmission is committed, so the channel may then acknowledge its transport.
``process`` takes a received transmission from the archive to documents in the outbox.

One file can fail only itself: a payload error, any other exception raised while working
on it (a reader's bug, a refused value) and the per-transmission time limit all mark that
transmission FAILED (or QUARANTINED) with its stage and reason, the exception in the log
with its traceback, and the next one is processed. Only a store outage escapes (the batch
stays RECEIVED and is taken again when the store is back). ``resume`` counts the starts of
each transmission it takes up again: one that keeps crashing or hanging the process is
marked FAILED after ``max_attempts`` instead of stopping ``serve`` at every start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Generic

import structlog

from gateway.core import deadline, recording, recovery
from gateway.core.canonical import PriceList
from gateway.core.documents import (
    describe,
    failed_document,
    failure_note,
    json_of,
    new_document,
    nothing_read,
    oversized,
    part_payloads,
    rejected_note,
    warnings_event,
)
from gateway.core.duplicates import RefsSeen, repeated_numbers
from gateway.core.errors import (
    FormatNotRecognised,
    MappingError,
    PartnerNotLive,
    PayloadError,
)
from gateway.core.gcpause import gc_paused
from gateway.core.identify import identify
from gateway.core.lifecycle import admit, disabled_by, is_test, quarantines, test_event
from gateway.core.ports import (
    ArchivePort,
    FailedMessage,
    Incoming,
    MappedDocument,
    NamesMappings,
    Offload,
    P,
    ParsedPayload,
    Partners,
    Reader,
    Receipt,
    Sender,
    SetsMappingsAside,
    Shared,
    StorePort,
    TransmissionView,
)
from gateway.core.receive import PayloadTooLarge, receive_many
from gateway.core.records import (
    Event,
    Failed,
    NewDocument,
    NewInterchange,
    NewOutbound,
    Note,
    Outcome,
    Processed,
    Recorded,
    Work,
)
from gateway.core.status import InterchangeStatus, can_process_again
from gateway.core.status import TransmissionStatus as T
from gateway.core.streaming import work_streamed

__all__ = ["Outcome", "PayloadTooLarge", "Pipeline"]

log = structlog.get_logger("edigw.pipeline")


class Pipeline(Generic[P]):
    """Receive and process payloads against one store, archive and partner directory."""

    def __init__(self, *, store: StorePort, archive: ArchivePort, partners: Partners[P],
                 readers: Sequence[Reader[P]], on_queued: Callable[[], object] | None = None,
                 on_outbound: Callable[[], object] | None = None,
                 max_size: int = 200 * 1024 * 1024, stream_above: int = 16 * 1024 * 1024,
                 max_message_bytes: int = 1024 * 1024, time_limit: float | None = None,
                 max_attempts: int = 3, offload: Callable[[Path], Offload[P]] | None = None
                 ) -> None:
        self.store = store
        self.archive = archive
        self.partners = partners
        self.readers = list(readers)
        self.on_queued = on_queued or (lambda: None)
        self.on_outbound = on_outbound or (lambda: None)
        self.max_size = max_size
        #: Payloads larger than this are processed as a stream (``streaming.work_streamed``).
        self.stream_above = stream_above
        #: No document is published larger than this: a price list goes out in parts.
        self.max_message_bytes = max_message_bytes
        #: Seconds one transmission may take (None or 0: no limit).
        self.time_limit = time_limit
        #: Starts without finishing before ``resume`` marks a transmission FAILED.
        self.max_attempts = max_attempts
        #: Transmissions whose start this process counted already (``resume``).
        self._started: set[str] = set()
        #: Streaming window and slice size (None: the reader's defaults); tests lower them.
        self.stream_window: int | None = None
        self.slice_segments: int | None = None
        #: Control references seen, for the duplicate interchange check (per batch).
        self.refs = RefsSeen(store)
        #: The partner's policy on a repeated order or invoice number and its window in
        #: days (the tracker's ``duplicate_numbers`` rule); None: not checked here.
        self.number_policy: Callable[[P], tuple[str, int]] | None = None
        #: Starts the worker process that judges the tail of large payloads, given the
        #: mappings root (``start_workers``); None: every payload is judged here.
        self.offload = offload
        #: The mappings the readers left out (a file that did not load): id -> why. A
        #: partner naming one is disabled: its files are quarantined (``lifecycle``).
        self.disabled_mappings: dict[str, str] = {
            k: v for r in self.readers if isinstance(r, SetsMappingsAside)
            for k, v in r.disabled_mappings().items()}
        #: That worker process, once started.
        self.workers: Offload[P] | None = None
        #: Told of each document as it is mapped, before it is stored (a progress bar on
        #: one large file: ``edigw ingest``); None: nobody.
        self.on_document: Callable[[], object] | None = None

    # -- step 1: durable receive ----------------------------------------------------------

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        """Archive every payload (one sync for the batch), then record all in one commit."""
        return receive_many(self.store, self.archive, items, max_size=self.max_size)

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
        rows = self.store.get_transmissions(tids)
        self.refs = RefsSeen(self.store, replays={
            tid: set(self.store.reprocess_chain(tid))
            for tid, r in rows.items() if r.reprocess_of})
        # A streamed payload may run for minutes: the collector keeps running for it.
        try:
            if any(r.size > self.stream_above for r in rows.values()):
                return self._settled(self._process_rows(tids, rows))
            with gc_paused():
                return self._settled(self._process_rows(tids, rows))
        except Exception as exc:
            if self.store.is_outage(exc) or len(tids) == 1:
                raise
            # Something of the batch's own machinery broke (not one payload: that is
            # handled inside): each is taken alone, so only the culprit is concerned.
            log.error("batch_failed", transmissions=len(tids), error=describe(exc),
                      exc_info=exc)
            return [self._alone(tid) for tid in tids]

    def _alone(self, tid: str) -> Outcome:
        """Process ``tid`` by itself; what still raises (not an outage) fails it, and when
        even that cannot be recorded it stays RECEIVED for the sweep, with the reason."""
        try:
            return self.process_many([tid])[0]
        except Exception as exc:
            if self.store.is_outage(exc):
                raise
            reason = describe(exc)
            log.error("transmission_crashed", transmission_id=tid, error=reason, exc_info=exc)
            try:
                self.store.record_failed(tid, stage="process", reason=reason)
            except Exception as again:
                if self.store.is_outage(again):
                    raise
                log.critical("transmission_not_recorded", transmission_id=tid,
                             error=describe(again))
                return Outcome(tid, T.RECEIVED, stage="process", reason=reason)
            return Outcome(tid, T.FAILED, stage="process", reason=reason)

    def _settled(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Outcomes with nothing queued take the status the store settled on (PUBLISHED,
        or PARTIAL, HELD when a document failed or is held as a conflict): one look, only
        when some transmission queued nothing."""
        done = [o.transmission_id for o in outcomes if o.status == T.PUBLISHED]
        if not done:
            return outcomes
        rows = self.store.get_transmissions(done)
        return [replace(o, status=rows[o.transmission_id].status)
                if o.status == T.PUBLISHED and o.transmission_id in rows else o
                for o in outcomes]

    def _process_rows(self, tids: Sequence[str], rows: Mapping[str, TransmissionView]
                      ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        batch: list[tuple[int, Recorded]] = []
        queued = 0
        outbound = False
        for tid in tids:
            try:
                with deadline.limit(self.time_limit):
                    work = self._work(tid, rows.get(tid))
            except Exception as exc:
                if self.store.is_outage(exc):
                    raise  # the store is away: the batch stays RECEIVED, taken again later
                work = recording.crashed(self, tid, rows.get(tid), exc)
            finally:
                if self.workers is not None:
                    self.workers.end()
            outcome, record = work.outcome, work.record
            if record is None:  # nothing to do (already processed)
                outcomes.append(outcome)
                continue
            if isinstance(record, Processed):
                outbound = outbound or bool(record.outbound)
            if isinstance(record, Processed) and len(record.docs) > self.chunk_size:
                try:
                    n = recording.record_in_chunks(self, record)
                except Exception as exc:
                    if self.store.is_outage(exc):
                        raise
                    outcomes.append(recording.record_crash(self, tid, record.partner_id, exc,
                                                           stage="record"))
                    continue
                queued += n
                outcome = replace(outcome, queued=n, status=T.PROCESSED if n else T.PUBLISHED)
            else:
                batch.append((len(outcomes), record))
            outcomes.append(outcome)
        if batch:
            counts = recording.record_batch(self, batch, outcomes)
            for (i, record), count in zip(batch, counts, strict=True):
                if count is None:  # refused: failed alone
                    continue
                queued += count
                if isinstance(record, Processed) and not record.note.failed:
                    outcomes[i] = replace(outcomes[i], queued=count,
                                          status=T.PROCESSED if count else T.PUBLISHED)
        recording.log_outcomes(outcomes)
        if queued:
            self.on_queued()
        if outbound:
            self.on_outbound()
        self.refs.batch.clear()
        return outcomes

    def attributed(self, exc: BaseException, row: TransmissionView | None) -> str | None:
        """The partner a failed payload is attributed to: the channel's, or the one its
        envelope named before it broke (``PayloadError.senders``), when that is known."""
        if row is not None and row.partner_id:
            return row.partner_id
        senders = [s for s in exc.senders if isinstance(s, Sender)] \
            if isinstance(exc, PayloadError) else []
        if not senders:
            return None
        try:
            return identify(self.partners, senders, None, lambda: "broken payload").id
        except PayloadError:
            return None

    def _work(self, tid: str, row: TransmissionView | None = None) -> Work:
        """Read, identify and map one transmission; returns its outcome and what to record
        (nothing when there is nothing to do, or when it was recorded as it went)."""
        row = row or self.store.get_transmission(tid)
        if row is None:
            raise KeyError(f"no transmission {tid}")
        if not can_process_again(row.status, row.reason):
            # Done (a partly failed transmission, with a reason, may be processed again).
            return Work(Outcome(tid, row.status, row.partner_id, row.document_count))
        if row.status != T.RECEIVED:
            self.store.clear_outcome(tid)  # processed again: its failed messages anew
        with structlog.contextvars.bound_contextvars(transmission_id=tid, filename=row.filename,
                                                    partner=row.partner_id):
            if row.size > self.stream_above:
                streamed = work_streamed(self, tid, row)
                if streamed is not None:
                    return Work(streamed)
            return self._work_in_memory(tid, row)

    def _work_in_memory(self, tid: str, row: TransmissionView) -> Work:
        """Read, identify and map a payload held whole in memory; what to record."""
        data = self.archive.get(row.sha256)
        shared = self._share(tid, row, data)
        partner: P | None = None
        parsed: ParsedPayload[P] | None = None
        events: list[Event] = []  # written with the outcome, in one commit
        try:
            reader = self.detect(data)
            parsed = reader.parse(data, filename=row.filename)
            events.append(("parsed", parsed.summary()))
            partner = self.identify(parsed, row.partner_id)
            known = self.refs.known(partner, parsed.control_refs(), tid)
            mapped = self._documents(shared, parsed, partner, tid, row.filename, known)
        except PayloadError as exc:
            status = T.QUARANTINED if quarantines(exc) else T.FAILED
            reason = str(exc)
            if isinstance(exc, PartnerNotLive):
                partner = self.partners.get(exc.partner_id)
            if partner is None and status == T.FAILED:
                partner = self.partners.get(self.attributed(exc, row) or "")
            partner_id = partner.id if partner else None
            return Work(Outcome(tid, status, partner_id, stage=exc.stage, reason=reason),
                        Failed(tid, stage=exc.stage, reason=reason, status=status,
                               partner_id=partner_id,
                               fmt=parsed.format if parsed else None,
                               standard=parsed.standard if parsed else None, events=events))
        mapped, receipts = self._receipts(mapped, partner.id, events)
        docs: list[NewDocument] = []
        failures: list[FailedMessage] = []
        warnings = list(parsed.warnings)
        for m in mapped:
            if isinstance(m, FailedMessage):
                failures.append(m)
                docs.append(failed_document(m, partner.id))
                continue
            try:
                made = self.new_documents(m, partner.id, warnings,
                                          test=is_test(partner.state))
            except MappingError as exc:
                failure = oversized(m, exc)
                failures.append(failure)
                docs.append(failed_document(failure, partner.id))
                continue
            warnings += m.warnings
            docs += made
        events.append(("identified", f"partner {partner.id} ({partner.name})"))
        if is_test(partner.state):
            events.append(test_event(partner.id))
        docs = repeated_numbers(self.store, partner, docs, events, self._policy(partner))
        if warnings:
            events.append(warnings_event(warnings, len(warnings)))
        record = Processed(tid, partner.id, parsed.format, parsed.standard, docs, events,
                           interchanges=self.interchanges(parsed),
                           outbound=self.replies(parsed, partner, tid),
                           note=failure_note(failures, len(docs)) if failures else Note(),
                           receipts=receipts)
        good = len(docs) - len(failures)
        rejected = [i for i in record.interchanges if i.status == InterchangeStatus.REJECTED]
        if not docs and receipts:
            # Receipts for what we sent, and nothing else: done, nothing to publish.
            return Work(Outcome(tid, T.PROCESSED, partner.id, 0, 0), record)
        if not docs:
            # Nothing came of it: never PUBLISHED with 0 documents and no reason.
            stage, reason = nothing_read(rejected, parsed.summary)
            return Work(Outcome(tid, T.FAILED, partner.id, 0, 0, stage=stage, reason=reason),
                        replace(record, note=Note(stage, reason, failed=True)))
        if rejected and not record.note.reason:
            record = replace(record, note=rejected_note(rejected))
        status = T.PROCESSED if good else T.PUBLISHED
        if failures and not good:
            status = T.FAILED
        return Work(Outcome(tid, status, partner.id, len(docs), good, stage=record.note.stage,
                            reason=record.note.reason), record)

    def _receipts(self, mapped: list[MappedDocument | FailedMessage], partner_id: str,
                  events: list[Event]) -> tuple[list[MappedDocument | FailedMessage], int]:
        """Receipts (CONTRL, APERAK) for payloads we sent the partner recorded on them
        (``record_receipt``) and left out of the documents, with an event each; returns
        the messages left and how many receipts were recorded. A receipt naming nothing we
        sent stays an UNSUPPORTED message, as before."""
        kept: list[MappedDocument | FailedMessage] = []
        recorded = 0
        for m in mapped:
            receipt = m.receipt if isinstance(m, FailedMessage) else None
            sent = None
            if receipt is not None and receipt.control_ref:
                sent = self.store.outbound_by_control_ref(partner_id, receipt.control_ref)
            elif receipt is not None and receipt.numbers:
                sent = self.store.outbound_by_number(partner_id, receipt.numbers)
            if receipt is None or sent is None:
                kept.append(m)
                continue
            self.store.record_receipt(sent.id, ok=receipt.ok, receipt=receipt.text)
            what = sent.transmission_id or sent.id
            events.append(("receipt", f"receipt for outbound {what} ({sent.kind}"
                           + (f", interchange {sent.control_ref}" if sent.control_ref else "")
                           + f"): {'positive' if receipt.ok else 'NEGATIVE'}, {receipt.text}"))
            log.info("receipt_recorded", partner=partner_id, outbound_id=sent.id,
                     outbound_transmission=sent.transmission_id, kind=receipt.kind,
                     ok=receipt.ok)
            recorded += 1
        return kept, recorded

    def _policy(self, partner: P) -> Callable[[], tuple[str, int]] | None:
        """The partner's ``duplicate_numbers`` policy, asked for when needed."""
        policy = self.number_policy
        return None if policy is None else lambda: policy(partner)

    # -- sharing a large payload with the worker process ------------------------------------

    #: Payloads of at least this many messages (and bytes) share their judging with the
    #: worker process, which takes the last ``parallel_share`` of the messages (it reads
    #: the whole payload again first, hence less than half).
    parallel_messages = 400
    parallel_bytes = 256 * 1024
    parallel_share = 0.5

    def start_workers(self, mappings_root: Path) -> None:
        """Start the worker process now (spawned, warm before the first large file)."""
        if self.workers is None and self.offload is not None:
            self.workers = self.offload(mappings_root)

    def close_workers(self) -> None:
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def _share(self, tid: str, row: TransmissionView, data: bytes) -> bool:
        """Whether a large payload is read by the worker too (from the archive), while it
        is read here; the worker decides whether it is worth it (its format, messages)."""
        workers = self.workers
        if workers is None or len(data) < self.parallel_bytes:
            return False
        try:
            fmt = self.detect(data).format
        except PayloadError:
            return False
        return workers.share(Shared(tid, fmt, data, self.archive.path_of(row.sha256),
                                    row.sha256, row.filename),
                             min_messages=self.parallel_messages)

    def _documents(self, shared: bool, parsed: ParsedPayload[P], partner: P, tid: str,
                   filename: str | None, known: dict[str, str]
                   ) -> list[MappedDocument | FailedMessage]:
        """Every message of ``parsed`` mapped: the worker's share judged there when the
        payload was shared (``_share``), the rest here."""
        if shared and self.workers is not None:
            mapped = self.workers.documents(
                parsed, partner=partner, transmission_id=tid, filename=filename,
                known_refs=known, share=self.parallel_share,
                min_messages=self.parallel_messages, max_bytes=self.max_message_bytes)
            if mapped is not None:
                return mapped
        return parsed.documents(partner=partner, transmission_id=tid, filename=filename,
                                known_refs=known)

    # -- what a read payload gives ------------------------------------------------------------

    def new_documents(self, m: MappedDocument, partner_id: str,
                      warnings: list[str], *, test: bool = False) -> list[NewDocument]:
        """The stored form of a mapped document: one row, or its parts when its JSON is
        over ``max_message_bytes`` and its type can be published in parts (a price list).
        ``test``: its partner is in test (routed to the test queue). Raises MappingError
        when one item alone is over the limit."""
        if self.on_document is not None:
            self.on_document()
        payload = json_of(m.document)
        if len(payload) <= self.max_message_bytes:
            return [new_document(m, partner_id, payload, test=test)]
        if not isinstance(m.document, PriceList):
            warnings.append(f"{m.doc_type} {m.business_number or m.message_id} is "
                            f"{len(payload)} bytes, over the {self.max_message_bytes}-byte "
                            "message size; sent whole (only price lists go out in parts)")
            return [new_document(m, partner_id, payload, test=test)]
        parts = part_payloads(m.document, self.max_message_bytes, first=1, total=True)
        return [new_document(m, partner_id, p, part=n, test=test)
                for n, p in enumerate(parts, 1)]

    def interchanges(self, parsed: ParsedPayload[P]) -> list[NewInterchange]:
        """The interchanges read, as the store records them."""
        return [NewInterchange(
            control_ref=i.control_ref, sender_id=i.sender_id, sender_qualifier=i.sender_qualifier,
            recipient_id=i.recipient_id, prepared=i.prepared, message_count=i.message_count,
            status=InterchangeStatus.REJECTED if i.rejected else InterchangeStatus.ACCEPTED,
            reason=i.rejected)
            for i in parsed.interchanges_seen()]

    def replies(self, parsed: ParsedPayload[P], partner: P, tid: str) -> list[NewOutbound]:
        """Acknowledgements the partner wants, archived (synced) before the outcome commits."""
        replies = parsed.replies(partner=partner, transmission_id=tid)
        if not replies:
            return []
        digests = self.archive.put_many([r.data for r in replies])
        return [NewOutbound(kind=r.kind, channel=partner.outbound.channel, filename=r.filename,
                            sha256=d, size=len(r.data), detail=r.detail)
                for r, d in zip(replies, digests, strict=True)]

    # -- after a crash ------------------------------------------------------------------------

    def resume(self, limit: int = 100_000) -> int:
        """Process transmissions left RECEIVED by a crash (``recovery.resume``); returns how
        many were processed."""
        return recovery.resume(self, limit)

    def sweep(self, older_than: float = 60.0, limit: int = 256) -> int:
        """Process RECEIVED transmissions nothing is working on (``recovery.sweep``)."""
        return recovery.sweep(self, older_than, limit)

    # -- detect and identify ----------------------------------------------------------------

    def detect(self, data: bytes) -> Reader[P]:
        """The reader whose ``sniff`` takes the payload's first bytes."""
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

    def identify(self, parsed: ParsedPayload[P], hint: str | None) -> P:
        """The partner ``parsed`` is from (``identify.identify``), when its state lets its
        files in: PartnerNotLive for a partner in draft or suspended (``core.lifecycle``)."""
        def nobody() -> str:
            unidentified = getattr(parsed, "unidentified", "")  # a CSV file says why
            return str(unidentified) if unidentified else (
                "payload names no sender and the channel is not partner-specific "
                f"({parsed.summary()})")
        partner = identify(self.partners, parsed.senders, hint, nobody)
        admit(partner.id, partner.state)
        if self.disabled_mappings and isinstance(partner, NamesMappings):
            disabled_by(partner.id, partner.mappings_named(), self.disabled_mappings)
        return partner
