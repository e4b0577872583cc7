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

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic

import structlog

from gateway.core import clock, deadline
from gateway.core.canonical import PriceList
from gateway.core.documents import (
    describe,
    failed_document,
    failure_note,
    json_of,
    new_document,
    note,
    nothing_read,
    oversized,
    part_payloads,
    rejected_note,
    warnings_event,
)
from gateway.core.errors import (
    ArchivedPayloadUnreadable,
    FormatNotRecognised,
    MappingError,
    PayloadError,
    TimeLimitExceeded,
    UnknownPartner,
)
from gateway.core.gcpause import gc_paused
from gateway.core.identify import identify
from gateway.core.ids import new_id
from gateway.core.ports import (
    ArchivePort,
    FailedMessage,
    Incoming,
    MappedDocument,
    Offload,
    P,
    ParsedPayload,
    Partners,
    Reader,
    Receipt,
    Sender,
    Shared,
    StorePort,
    StreamedPayload,
    StreamingReader,
    TransmissionView,
)
from gateway.core.records import (
    Event,
    Failed,
    NewDocument,
    NewInterchange,
    NewOutbound,
    NewTransmission,
    Note,
    Processed,
    Recorded,
)
from gateway.core.status import DocumentStatus as D
from gateway.core.status import InterchangeStatus
from gateway.core.status import TransmissionStatus as T
from gateway.core.streaming import StreamRun

log = structlog.get_logger("edigw.pipeline")


#: Document types whose business number identifies one business document (a price list's
#: parts share theirs).
_NUMBERED = ("order", "invoice")


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


@dataclass(frozen=True, slots=True)
class Work:
    """What working on one transmission gave: its outcome, and what to record for it
    (None when there is nothing to record: done already, or recorded as it went)."""

    outcome: Outcome
    record: Recorded | None = None


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
        #: Payloads larger than this are processed as a stream (``_work_streamed``).
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
        #: Control references taken by transmissions of the batch being processed, not yet
        #: committed: (partner, ref) -> where (the duplicate check must see them too).
        self._batch_refs: dict[tuple[str, str], str] = {}
        #: Transmissions of the batch that are reprocessing attempts -> those they replay.
        self._replays: dict[str, set[str]] = {}
        #: The partner's policy on a repeated order or invoice number and its window in
        #: days (the tracker's ``duplicate_numbers`` rule); None: not checked here.
        self.number_policy: Callable[[P], tuple[str, int]] | None = None
        #: Starts the worker process that judges the tail of large payloads, given the
        #: mappings root (``start_workers``); None: every payload is judged here.
        self.offload = offload
        #: That worker process, once started.
        self.workers: Offload[P] | None = None

    # -- step 1: durable receive ----------------------------------------------------------

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        """Archive every payload (one sync for the batch), then record all in one commit."""
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
        rows: list[NewTransmission] = []
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
            rows.append(NewTransmission(
                id=tid, channel=item.channel, channel_ref=item.channel_ref,
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
        self._batch_refs = {}
        rows = self.store.get_transmissions(tids)
        self._replays = {tid: set(self.store.reprocess_chain(tid))
                         for tid, r in rows.items() if r.reprocess_of}
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
                work = self._crashed(tid, rows.get(tid), exc)
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
                    n = self._record_in_chunks(record)
                except Exception as exc:
                    if self.store.is_outage(exc):
                        raise
                    outcomes.append(self._record_crash(tid, record.partner_id, exc,
                                                       stage="record"))
                    continue
                queued += n
                outcome = replace(outcome, queued=n, status=T.PROCESSED if n else T.PUBLISHED)
            else:
                batch.append((len(outcomes), record))
            outcomes.append(outcome)
        if batch:
            counts = self._record_batch(batch, outcomes)
            for (i, record), count in zip(batch, counts, strict=True):
                if count is None:  # refused: failed alone
                    continue
                queued += count
                if isinstance(record, Processed) and not record.note.failed:
                    outcomes[i] = replace(outcomes[i], queued=count,
                                          status=T.PROCESSED if count else T.PUBLISHED)
        _log_outcomes(outcomes)
        if queued:
            self.on_queued()
        if outbound:
            self.on_outbound()
        self._batch_refs = {}
        return outcomes

    def _record_batch(self, batch: list[tuple[int, Recorded]], outcomes: list[Outcome]
                      ) -> list[int | None]:
        """Commit the batch's records together; when the store refuses the batch (not an
        outage: a value one transmission brought), each is committed alone, and the one
        refused fails alone (its count None)."""
        try:
            return list(self.store.record_batch([r for _, r in batch]))
        except Exception as exc:
            if self.store.is_outage(exc):
                raise
            log.warning("batch_refused", transmissions=len(batch), error=repr(exc)[:300])
        counts: list[int | None] = []
        for i, record in batch:
            try:
                counts.append(self.store.record_batch([record])[0])
            except Exception as exc:
                if self.store.is_outage(exc):
                    raise
                outcomes[i] = self._record_crash(record.tid, record.partner_id, exc,
                                                 stage="record")
                counts.append(None)
        return counts

    def _crashed(self, tid: str, row: TransmissionView | None, exc: Exception) -> Work:
        """What working on ``tid`` gives when it raised: a failed record, with the stage
        and the exception named (a PayloadError escaping the reader's own handling, the
        time limit, or any other exception, whose traceback goes to the log)."""
        partner_id = self._attributed(exc, row)
        if isinstance(exc, ArchivedPayloadUnreadable):
            stage, reason = "archive", str(exc)
            log.error("transmission_payload_unreadable", transmission_id=tid, reason=reason)
        elif isinstance(exc, PayloadError):
            stage, reason = exc.stage, str(exc)
            if isinstance(exc, TimeLimitExceeded):
                log.warning("transmission_time_limit", transmission_id=tid, reason=reason)
        else:
            stage, reason = "process", describe(exc)
            log.error("transmission_crashed", transmission_id=tid, partner=partner_id,
                      error=reason, exc_info=exc)
        outcome = Outcome(tid, T.FAILED, partner_id, stage=stage, reason=reason)
        record = Failed(tid, stage=stage, reason=reason, partner_id=partner_id)
        if row is not None and row.size > self.stream_above:
            # A streamed run records as it goes: what it held is failed here, at once.
            self.store.fail_held(tid, stage=stage, reason=f"not released: {reason}")
            self.store.record_failed(tid, stage=stage, reason=reason, partner_id=partner_id)
            return Work(outcome)
        return Work(outcome, record)

    def _record_crash(self, tid: str, partner_id: str | None, exc: Exception, *,
                      stage: str) -> Outcome:
        """The store refused what one transmission brought: it fails alone."""
        reason = f"the store refused its outcome: {describe(exc)}"
        log.error("transmission_not_recorded", transmission_id=tid, error=reason,
                  exc_info=exc)
        self.store.fail_held(tid, stage=stage, reason=f"not released: {reason}")
        self.store.record_failed(tid, stage=stage, reason=reason, partner_id=partner_id)
        return Outcome(tid, T.FAILED, partner_id, stage=stage, reason=reason)

    def _attributed(self, exc: BaseException, row: TransmissionView | None) -> str | None:
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

    def _record_in_chunks(self, record: Processed) -> int:
        """A large transmission's documents committed ``chunk_size`` at a time; its events,
        interchanges, replies and note with the last chunk."""
        docs = record.docs
        queued = 0
        size = self.chunk_size
        for start in range(0, len(docs), size):
            last = start + size >= len(docs)
            chunk = docs[start:start + size]
            queued += self.store.record_outcome(
                replace(record, docs=chunk) if last else
                Processed(record.tid, record.partner_id, record.fmt, record.standard, chunk),
                final=last)
            if queued and not last:
                self.on_queued()  # the publisher starts while the rest is written
        return queued

    def _work(self, tid: str, row: TransmissionView | None = None) -> Work:
        """Read, identify and map one transmission in memory; returns its outcome and what
        to record (nothing when there is nothing to do)."""
        row = row or self.store.get_transmission(tid)
        if row is None:
            raise KeyError(f"no transmission {tid}")
        if row.status not in (T.RECEIVED, T.FAILED, T.QUARANTINED) and not (
                row.status in (T.PROCESSED, T.PUBLISHED, T.PARTIAL) and row.reason):
            # Done (a partly failed transmission, with a reason, may be processed again).
            return Work(Outcome(tid, row.status, row.partner_id, row.document_count))
        if row.status != T.RECEIVED:
            self.store.clear_outcome(tid)  # processed again: its failed messages anew
        with structlog.contextvars.bound_contextvars(transmission_id=tid, filename=row.filename,
                                                    partner=row.partner_id):
            if row.size > self.stream_above:
                streamed = self._work_streamed(tid, row)
                if streamed is not None:
                    return Work(streamed)
            return self._work_in_memory(tid, row)

    def _work_in_memory(self, tid: str, row: TransmissionView) -> Work:
        data = self.archive.get(row.sha256)
        shared = self._share(tid, row, data)
        partner: P | None = None
        parsed: ParsedPayload[P] | None = None
        events: list[Event] = []  # written with the outcome, in one commit
        try:
            reader = self._detect(data)
            parsed = reader.parse(data, filename=row.filename)
            events.append(("parsed", parsed.summary()))
            partner = self._identify(parsed, row.partner_id)
            known = self._known_refs(partner, parsed, tid)
            mapped = self._documents(shared, parsed, partner, tid, row.filename, known)
        except PayloadError as exc:
            status = T.QUARANTINED if isinstance(exc, UnknownPartner) else T.FAILED
            reason = str(exc)
            if partner is None and status == T.FAILED:
                partner = self.partners.get(self._attributed(exc, row) or "")
            partner_id = partner.id if partner else None
            return Work(Outcome(tid, status, partner_id, stage=exc.stage, reason=reason),
                        Failed(tid, stage=exc.stage, reason=reason, status=status,
                               partner_id=partner_id,
                               fmt=parsed.format if parsed else None,
                               standard=parsed.standard if parsed else None, events=events))
        docs: list[NewDocument] = []
        failures: list[FailedMessage] = []
        warnings = list(parsed.warnings)
        for m in mapped:
            if isinstance(m, FailedMessage):
                failures.append(m)
                docs.append(failed_document(m, partner.id))
                continue
            try:
                made = self.new_documents(m, partner.id, warnings)
            except MappingError as exc:
                failure = oversized(m, exc)
                failures.append(failure)
                docs.append(failed_document(failure, partner.id))
                continue
            warnings += m.warnings
            docs += made
        events.append(("identified", f"partner {partner.id} ({partner.name})"))
        docs = self._repeated_numbers(partner, docs, events)
        if warnings:
            events.append(warnings_event(warnings, len(warnings)))
        record = Processed(tid, partner.id, parsed.format, parsed.standard, docs, events,
                           interchanges=self._interchanges(parsed),
                           outbound=self._replies(parsed, partner, tid),
                           note=failure_note(failures, len(docs)) if failures else Note())
        good = len(docs) - len(failures)
        rejected = [i for i in record.interchanges if i.status == InterchangeStatus.REJECTED]
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
            fmt = self._detect(data).format
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

    # -- the streamed path (large payloads) ---------------------------------------------------

    def _work_streamed(self, tid: str, row: TransmissionView) -> Outcome | None:
        """Process a large payload as a stream, recording as it goes; None when its reader
        cannot stream (the caller then reads it whole).

        Documents are stored HELD as their messages complete, in chunks, and released to
        the outbox in one commit when their interchange has closed cleanly (UNZ): an
        interchange rejected at its end publishes nothing, as in memory. The parts of a
        price list sliced on the way wait for its UNT; their total (``part_count``) is
        written into each before release. Memory holds a window of text, one slice and one
        chunk of documents, whatever the file's size. The outcome recorded at the end is
        the in-memory path's: status, failed messages, interchanges, CONTRL, warnings.
        """
        blocks = self.archive.blocks(row.sha256)
        events: list[Event] = []
        partner: P | None = None
        parsed: StreamedPayload[P] | None = None
        try:
            head = next(blocks, b"")
            reader = self._detect(head)
            if not isinstance(reader, StreamingReader):
                blocks.close()
                return None
            parsed = reader.stream(itertools.chain([head], blocks), filename=row.filename,
                                   window=self.stream_window, slice_segments=self.slice_segments)
            parsed.open()
            partner = self._identify(parsed, row.partner_id)
        except PayloadError as exc:
            blocks.close()
            status = T.QUARANTINED if isinstance(exc, UnknownPartner) else T.FAILED
            self.store.record_failed(tid, stage=exc.stage, reason=str(exc), status=status,
                                     partner_id=partner.id if partner else None,
                                     fmt=parsed.format if parsed else None,
                                     standard=parsed.standard if parsed else None,
                                     events=events)
            return Outcome(tid, status, partner.id if partner else None, stage=exc.stage,
                           reason=str(exc))
        self.store.clear_outcome(tid)  # documents held by a run cut short by a crash
        run = StreamRun(self, tid, partner.id)
        broken: PayloadError | None = None
        known_partner = partner
        try:
            for event in parsed.events(
                    partner=partner, transmission_id=tid, filename=row.filename,
                    known=lambda ref: self._known_refs_for(known_partner, [ref], tid).get(ref)):
                run.take(event)
        except PayloadError as exc:  # the file as a whole cannot be read on (truncated …)
            broken = exc
        finally:
            blocks.close()
        run.flush()
        if broken is not None:
            run.fail_held(broken.stage, f"not released: {broken}")
        events.append(("parsed", parsed.summary()))
        events.append(("identified", f"partner {partner.id} ({partner.name})"))
        warnings = parsed.warnings + run.warnings
        if warnings:
            events.append(warnings_event(warnings, len(parsed.warnings) + run.warning_count))
        interchanges = self._interchanges(parsed)
        outbound = self._replies(parsed, partner, tid)
        outcome = Note()
        if broken is not None:
            queued = (f"; {run.queued} document(s) of the complete interchanges before it "
                      "were queued") if run.queued else ""
            outcome = Note(broken.stage, f"{broken}{queued}", failed=True)
        elif run.first_failure is not None:
            stage, reason = note(*run.first_failure, run.bad, run.unsupported, run.messages)
            outcome = Note(stage, reason, failed=not run.queued and not run.duplicates)
        rejected = [i for i in interchanges if i.status == InterchangeStatus.REJECTED]
        if not run.stored and not run.messages and broken is None:
            stage, reason = nothing_read(rejected, parsed.summary)
            outcome = Note(stage, reason, failed=True)
        elif rejected and not outcome.reason:
            outcome = rejected_note(rejected)
        self.store.record_outcome(Processed(
            tid, partner.id, parsed.format, parsed.standard, (), events, interchanges,
            outbound, outcome), final=True)
        if outbound:
            self.on_outbound()
        if outcome.failed:
            return Outcome(tid, T.FAILED, partner.id, run.stored, 0, stage=outcome.stage,
                           reason=outcome.reason)
        return Outcome(tid, T.PROCESSED if run.queued else T.PUBLISHED, partner.id,
                       run.stored, run.queued, stage=outcome.stage, reason=outcome.reason)

    def new_documents(self, m: MappedDocument, partner_id: str,
                      warnings: list[str]) -> list[NewDocument]:
        """The stored form of a mapped document: one row, or its parts when its JSON is
        over ``max_message_bytes`` and its type can be published in parts (a price list).
        Raises MappingError when one item alone is over the limit."""
        payload = json_of(m.document)
        if len(payload) <= self.max_message_bytes:
            return [new_document(m, partner_id, payload)]
        if not isinstance(m.document, PriceList):
            warnings.append(f"{m.doc_type} {m.business_number or m.message_id} is "
                            f"{len(payload)} bytes, over the {self.max_message_bytes}-byte "
                            "message size; sent whole (only price lists go out in parts)")
            return [new_document(m, partner_id, payload)]
        parts = part_payloads(m.document, self.max_message_bytes, first=1, total=True)
        return [new_document(m, partner_id, p, part=n) for n, p in enumerate(parts, 1)]

    def _repeated_numbers(self, partner: P, docs: list[NewDocument],
                          events: list[Event]) -> list[NewDocument]:
        """Under the partner's ``duplicate_numbers = "reject"``: an order or invoice whose
        number this partner sent before (in a document of another message id, within the
        window) is kept as DUPLICATE with the reason, and not published. Under the
        partner's ``on_conflict = "publish"`` its documents are marked so for the store."""
        if partner.on_conflict != "hold":
            docs = [d if d.status is not None else replace(d, on_conflict=partner.on_conflict)
                    for d in docs]
        if self.number_policy is None:
            return docs
        policy, days = self.number_policy(partner)
        if policy != "reject":
            return docs
        wanted = {(d.doc_type, d.business_number) for d in docs
                  if d.status is None and d.business_number and d.doc_type in _NUMBERED}
        if not wanted:
            return docs
        since = clock.now() - dt.timedelta(days=days)
        found = self.store.numbers_seen(partner.id, sorted(wanted, key=_number_order), since,
                                        exclude_message_ids={d.message_id for d in docs})
        out: list[NewDocument] = []
        first_here: dict[tuple[str, str | None], str] = {}
        for d in docs:
            key = (d.doc_type, d.business_number)
            if d.status is not None or key not in wanted:
                out.append(d)
                continue
            where = found.get(key)
            if where is None and first_here.setdefault(key, d.message_id) != d.message_id:
                where = "earlier in this transmission"
            if where is None:
                out.append(d)
                continue
            reason = (f"{d.doc_type} number {d.business_number} already received {where}; "
                      "not published (partner policy duplicate_numbers = reject)")
            out.append(replace(d, status=D.DUPLICATE, stage="duplicate", reason=reason))
            events.append(("duplicate-number", reason))
        return out

    def _known_refs(self, partner: P, parsed: ParsedPayload[P], tid: str) -> dict[str, str]:
        """Control references of ``parsed`` this partner sent before (duplicate check)."""
        return self._known_refs_for(partner, parsed.control_refs(), tid)

    def _known_refs_for(self, partner: P, refs: list[str], tid: str) -> dict[str, str]:
        if partner.edifact.duplicate_interchange == "accept":
            return {}
        if not refs:
            return {}
        since = clock.now() - dt.timedelta(days=partner.edifact.duplicate_window_days)
        replayed = self._replays.get(tid, set())  # a reprocess is no duplicate of its original
        known = {ref: f"in transmission {t} on {at:%Y-%m-%d %H:%M} UTC"
                 for ref, (t, at) in self.store.interchange_refs_seen(partner.id, refs,
                                                                      since).items()
                 if t != tid and t not in replayed}
        for ref in refs:
            where = self._batch_refs.get((partner.id, ref))
            if where and ref not in known:
                known[ref] = where
            self._batch_refs.setdefault((partner.id, ref), f"in transmission {tid}")
        return known

    def _interchanges(self, parsed: ParsedPayload[P]) -> list[NewInterchange]:
        return [NewInterchange(
            control_ref=i.control_ref, sender_id=i.sender_id, sender_qualifier=i.sender_qualifier,
            recipient_id=i.recipient_id, prepared=i.prepared, message_count=i.message_count,
            status=InterchangeStatus.REJECTED if i.rejected else InterchangeStatus.ACCEPTED,
            reason=i.rejected)
            for i in parsed.interchanges_seen()]

    def _replies(self, parsed: ParsedPayload[P], partner: P, tid: str) -> list[NewOutbound]:
        """Acknowledgements the partner wants, archived (synced) before the outcome commits."""
        replies = parsed.replies(partner=partner, transmission_id=tid)
        if not replies:
            return []
        digests = self.archive.put_many([r.data for r in replies])
        return [NewOutbound(kind=r.kind, channel=partner.outbound.channel, filename=r.filename,
                            sha256=d, size=len(r.data), detail=r.detail)
                for r, d in zip(replies, digests, strict=True)]

    # -- after a crash: resume and sweep --------------------------------------------------------

    def resume(self, limit: int = 100_000) -> int:
        """Process transmissions left RECEIVED by a crash; returns how many were processed.

        Each start is counted (committed before the work). Those never started before go
        in batches; one started before without finishing (the process crashed, hung or was
        killed while on it, or on its batch) goes alone, so that a poison file cannot take
        its batch down with it, and after ``max_attempts`` starts it is marked FAILED."""
        done = 0
        while done < limit:
            rows = self.store.transmissions_to_process(limit=64)
            if not rows:
                break
            # A start is counted once per process: the supervisor running this again after
            # a store outage is not another crash.
            fresh = [r.id for r in rows if not r.attempts or r.id in self._started]
            if fresh:
                self._count_starts(fresh)
                self.process_many(fresh)
            for r in rows:
                if r.id in fresh:
                    continue
                if r.attempts >= self.max_attempts:
                    self._give_up(r)
                else:
                    self._count_starts([r.id])
                    self.process_many([r.id])
            done += len(rows)
        self._started.clear()
        return done

    def _count_starts(self, tids: list[str]) -> None:
        new = [t for t in tids if t not in self._started]
        if new:
            self.store.start_attempts(new)
            self._started.update(new)

    def sweep(self, older_than: float = 60.0, limit: int = 256) -> int:
        """Process RECEIVED transmissions received more than ``older_than`` seconds ago that
        nothing is working on (a reprocess cut short by an outage, an ``edigw ingest``
        killed half-way); no start is counted (this is not a restart). Returns how many."""
        since = clock.now() - dt.timedelta(seconds=older_than)
        tids = [r.id for r in self.store.transmissions_to_process(limit=limit)
                if r.received_at < since]
        if tids:
            log.warning("received_swept", transmissions=len(tids))
            self.process_many(tids)
        return len(tids)

    def _give_up(self, row: TransmissionView) -> None:
        reason = (f"processing started {row.attempts} times without finishing (the process "
                  "crashed, hung or was killed on it); not tried again ([processing] "
                  f"max_attempts = {self.max_attempts}); reprocess it once the cause is fixed")
        log.error("transmission_given_up", transmission_id=row.id, filename=row.filename,
                  attempts=row.attempts)
        self.store.fail_held(row.id, stage="process", reason=f"not released: {reason}")
        self.store.record_failed(row.id, stage="process", reason=reason)

    # -- detect and identify ----------------------------------------------------------------

    def _detect(self, data: bytes) -> Reader[P]:
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

    def _identify(self, parsed: ParsedPayload[P], hint: str | None) -> P:
        def nobody() -> str:
            unidentified = getattr(parsed, "unidentified", "")  # a CSV file says why
            return str(unidentified) if unidentified else (
                "payload names no sender and the channel is not partner-specific "
                f"({parsed.summary()})")
        return identify(self.partners, parsed.senders, hint, nobody)


def _number_order(key: tuple[str, str | None]) -> tuple[str, str]:
    return key[0], key[1] or ""


def _log_outcomes(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.reason:
            log.warning("transmission_failed", transmission_id=o.transmission_id,
                        partner=o.partner_id, stage=o.stage, reason=o.reason,
                        status=o.status)
        elif o.queued or o.documents:
            log.info("transmission_processed", transmission_id=o.transmission_id,
                     partner=o.partner_id, documents=o.documents, queued=o.queued)
