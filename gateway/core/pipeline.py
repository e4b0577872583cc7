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
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import structlog

from gateway.config import Partner, PartnerDirectory
from gateway.core import clock, deadline
from gateway.core.canonical import content_digest
from gateway.core.errors import (
    ArchivedPayloadUnreadable,
    FormatNotRecognised,
    MappingError,
    PayloadError,
    TimeLimitExceeded,
    UnknownPartner,
)
from gateway.core.gcpause import gc_paused
from gateway.core.ids import content_message_id
from gateway.core.ports import (
    FailedMessage,
    Incoming,
    MappedDocument,
    ParsedPayload,
    Reader,
    Receipt,
)
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import NewDocument, Store, TransmissionRow, is_outage
from gateway.store.records import NewInterchange, NewOutbound

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


class Pipeline:
    """Receive and process payloads against one store, archive and partner directory."""

    def __init__(self, *, store: Store, archive: Archive, partners: PartnerDirectory,
                 readers: Sequence[Reader], on_queued: Callable[[], None] | None = None,
                 on_outbound: Callable[[], None] | None = None,
                 max_size: int = 200 * 1024 * 1024, stream_above: int = 16 * 1024 * 1024,
                 max_message_bytes: int = 1024 * 1024, time_limit: float | None = None,
                 max_attempts: int = 3) -> None:
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
        self.number_policy: Callable[[Partner], tuple[str, int]] | None = None
        #: A worker process judging the tail of large payloads (``start_workers``).
        self.workers: Any = None

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
            if is_outage(exc) or len(tids) == 1:
                raise
            # Something of the batch's own machinery broke (not one payload: that is
            # handled inside): each is taken alone, so only the culprit is concerned.
            log.error("batch_failed", transmissions=len(tids), error=_describe(exc),
                      exc_info=exc)
            return [self._alone(tid) for tid in tids]

    def _alone(self, tid: str) -> Outcome:
        """Process ``tid`` by itself; what still raises (not an outage) fails it, and when
        even that cannot be recorded it stays RECEIVED for the sweep, with the reason."""
        try:
            return self.process_many([tid])[0]
        except Exception as exc:
            if is_outage(exc):
                raise
            reason = _describe(exc)
            log.error("transmission_crashed", transmission_id=tid, error=reason, exc_info=exc)
            try:
                self.store.record_failed(tid, stage="process", reason=reason)
            except Exception as again:
                if is_outage(again):
                    raise
                log.critical("transmission_not_recorded", transmission_id=tid,
                             error=_describe(again))
                return Outcome(tid, s.RECEIVED, stage="process", reason=reason)
            return Outcome(tid, s.FAILED, stage="process", reason=reason)

    def _settled(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Outcomes with nothing queued take the status the store settled on (PUBLISHED,
        or PARTIAL, HELD when a document failed or is held as a conflict): one look, only
        when some transmission queued nothing."""
        done = [o.transmission_id for o in outcomes if o.status == s.PUBLISHED]
        if not done:
            return outcomes
        rows = self.store.get_transmissions(done)
        return [replace(o, status=rows[o.transmission_id].status)
                if o.status == s.PUBLISHED and o.transmission_id in rows else o
                for o in outcomes]

    def _process_rows(self, tids: Sequence[str], rows: dict[str, TransmissionRow]
                      ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        batch: list[tuple[int, dict]] = []
        queued = 0
        outbound = False
        for tid in tids:
            try:
                with deadline.limit(self.time_limit):
                    work = self._work(tid, rows.get(tid))
            except Exception as exc:
                if is_outage(exc):
                    raise  # the store is away: the batch stays RECEIVED, taken again later
                work = self._crashed(tid, rows.get(tid), exc)
            finally:
                if self.workers is not None:
                    self.workers.end()
            if isinstance(work, Outcome):  # nothing to do (already processed)
                outcomes.append(work)
                continue
            outcome, record = work
            outbound = outbound or bool(record.get("outbound"))
            if record["kind"] == "processed" and len(record["docs"]) > self.chunk_size:
                try:
                    n = self._record_in_chunks(record)
                except Exception as exc:
                    if is_outage(exc):
                        raise
                    outcomes.append(self._record_crash(tid, record.get("partner_id"), exc,
                                                       stage="record"))
                    continue
                queued += n
                outcome = replace(outcome, queued=n, status=s.PROCESSED if n else s.PUBLISHED)
            else:
                batch.append((len(outcomes), record))
            outcomes.append(outcome)
        if batch:
            counts = self._record_batch(batch, outcomes)
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

    def _record_batch(self, batch: list[tuple[int, dict]], outcomes: list[Outcome]
                      ) -> list[int]:
        """Commit the batch's records together; when the store refuses the batch (not an
        outage: a value one transmission brought), each is committed alone, and the one
        refused fails alone."""
        try:
            return self.store.record_batch([r for _, r in batch])
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("batch_refused", transmissions=len(batch), error=repr(exc)[:300])
        counts = []
        for i, record in batch:
            try:
                counts.append(self.store.record_batch([record])[0])
            except Exception as exc:
                if is_outage(exc):
                    raise
                outcomes[i] = self._record_crash(record["tid"], record.get("partner_id"), exc,
                                                 stage="record")
                record["failed"] = True
                counts.append(0)
        return counts

    def _crashed(self, tid: str, row: TransmissionRow | None, exc: Exception
                 ) -> Outcome | tuple[Outcome, dict]:
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
            stage, reason = "process", _describe(exc)
            log.error("transmission_crashed", transmission_id=tid, partner=partner_id,
                      error=reason, exc_info=exc)
        record: dict[str, Any] = dict(
            kind="failed", tid=tid, stage=stage, reason=reason, status=s.FAILED,
            partner_id=partner_id, fmt=None, standard=None, events=[])
        if row is not None and row.size > self.stream_above:
            # A streamed run records as it goes: what it held is failed here, at once.
            self._record_streamed_crash(tid, record)
            return Outcome(tid, s.FAILED, partner_id, stage=stage, reason=reason)
        return Outcome(tid, s.FAILED, partner_id, stage=stage, reason=reason), record

    def _record_streamed_crash(self, tid: str, record: dict) -> None:
        self.store.fail_held(tid, stage=record["stage"],
                             reason=f"not released: {record['reason']}")
        self.store.record_failed(tid, stage=record["stage"], reason=record["reason"],
                                 partner_id=record["partner_id"])

    def _record_crash(self, tid: str, partner_id: str | None, exc: Exception, *,
                      stage: str) -> Outcome:
        """The store refused what one transmission brought: it fails alone."""
        reason = f"the store refused its outcome: {_describe(exc)}"
        log.error("transmission_not_recorded", transmission_id=tid, error=reason,
                  exc_info=exc)
        self.store.fail_held(tid, stage=stage, reason=f"not released: {reason}")
        self.store.record_failed(tid, stage=stage, reason=reason, partner_id=partner_id)
        return Outcome(tid, s.FAILED, partner_id, stage=stage, reason=reason)

    def _attributed(self, exc: BaseException, row: TransmissionRow | None) -> str | None:
        """The partner a failed payload is attributed to: the channel's, or the one its
        envelope named before it broke (``PayloadError.senders``), when that is known."""
        if row is not None and row.partner_id:
            return row.partner_id
        senders = getattr(exc, "senders", ()) or ()
        if not senders:
            return None
        try:
            return self._identify(cast("ParsedPayload", _Named(senders)), None).id
        except PayloadError:
            return None

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
                row.status in (s.PROCESSED, s.PUBLISHED, s.PARTIAL) and row.reason):
            # Done (a partly failed transmission, with a reason, may be processed again).
            return Outcome(tid, row.status, row.partner_id, row.document_count)
        if row.status != s.RECEIVED:
            self.store.clear_outcome(tid)  # processed again: its failed messages anew
        with structlog.contextvars.bound_contextvars(transmission_id=tid, filename=row.filename,
                                                    partner=row.partner_id):
            if row.size > self.stream_above:
                streamed = self._work_streamed(tid, row)
                if streamed is not None:
                    return streamed
            data = self.archive.get(row.sha256)
            prepared = self._prepare(tid, row, data)
            partner: Partner | None = None
            parsed: ParsedPayload | None = None
            events: list[tuple[str, str]] = []  # written with the outcome, in one commit
            record: dict[str, Any]
            try:
                reader = self._detect(data)
                parsed = reader.parse(data, filename=row.filename)
                events.append(("parsed", parsed.summary()))
                partner = self._identify(parsed, row.partner_id)
                known = self._known_refs(partner, parsed, tid)
                outsourced = self._outsource(prepared, row.filename, partner, tid, known,
                                             parsed)
                if outsourced is None:
                    mapped = parsed.documents(partner=partner, transmission_id=tid,
                                              filename=row.filename, known_refs=known)
                else:
                    mapped = parsed.documents(partner=partner, transmission_id=tid,
                                              filename=row.filename, known_refs=known,
                                              outsourced=outsourced)
            except PayloadError as exc:
                status = s.QUARANTINED if isinstance(exc, UnknownPartner) else s.FAILED
                reason = str(exc)
                if partner is None and status == s.FAILED:
                    partner = self.partners.get(self._attributed(exc, row) or "")
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
                try:
                    made = self._new_documents(m, partner.id, warnings)
                except MappingError as exc:
                    failure = _oversized(m, exc)
                    failures.append(failure)
                    docs.append(_failed_document(failure, partner.id))
                    continue
                warnings += m.warnings
                docs += made
            events.append(("identified", f"partner {partner.id} ({partner.name})"))
            docs = self._repeated_numbers(partner, docs, events)
            if warnings:
                events.append(_warnings_event(warnings, len(warnings)))
            record = dict(
                kind="processed", tid=tid, partner_id=partner.id, fmt=parsed.format,
                standard=parsed.standard, docs=docs, events=events,
                interchanges=self._interchanges(parsed, partner.id),
                outbound=self._replies(parsed, partner, tid))
            good = len(docs) - len(failures)
            if failures:
                record.update(_failure_note(failures, len(docs)))
            rejected = [i for i in record["interchanges"] if i.status == s.IC_REJECTED]
            if not docs:
                # Nothing came of it: never PUBLISHED with 0 documents and no reason.
                stage, reason = _nothing_read(rejected, parsed)
                record.update(stage=stage, reason=reason, failed=True)
                return Outcome(tid, s.FAILED, partner.id, 0, 0, stage=stage,
                               reason=reason), record
            if rejected and not record.get("reason"):
                record.update(_rejected_note(rejected))
            if failures and not good:
                return Outcome(tid, s.FAILED, partner.id, len(docs), 0, stage=record["stage"],
                               reason=record["reason"]), record
            status = s.PROCESSED if good else s.PUBLISHED
            return Outcome(tid, status, partner.id, len(docs), good,
                           stage=record.get("stage"), reason=record.get("reason")), record

    #: Payloads of at least this many messages (and bytes) share their judging with the
    #: worker process, which takes the last ``parallel_share`` of the messages (it reads
    #: the whole payload again first, hence less than half).
    parallel_messages = 400
    parallel_bytes = 256 * 1024
    parallel_share = 0.5

    def start_workers(self, mappings_root: Any) -> None:
        """Start the worker process now (spawned, warm before the first large file)."""
        from gateway.core.parallel import Workers

        if self.workers is None:
            self.workers = Workers(mappings_root)

    def close_workers(self) -> None:
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def _prepare(self, tid: str, row: TransmissionRow, data: bytes) -> str | None:
        """A large EDIFACT payload of many messages is read by the worker too (from the
        archive), while it is read here; returns the key ``_outsource`` hands on, or None.
        A large file of few messages (a price list) is not: only messages are shared."""
        workers = self.workers
        if (workers is None or len(data) < self.parallel_bytes or not workers.usable()
                or data.count(b"UNH") < self.parallel_messages):
            return None
        try:
            if getattr(self._detect(data), "format", None) != "edifact":
                return None
        except PayloadError:
            return None
        if not workers.begin():
            return None
        try:
            workers.call("prepare", tid, str(self.archive.path_of(row.sha256)), row.sha256,
                         row.filename)
        except Exception as exc:  # the worker is gone: judge everything here
            log.warning("worker_unavailable", reason=repr(exc))
            return None
        return tid

    def _outsource(self, key: str | None, filename: str | None, partner: Partner, tid: str,
                   known: dict[str, str], parsed: Any) -> Callable[[int], Any] | None:
        """For a large EDIFACT payload: the last messages judged in the worker meanwhile;
        returns what ``EdifactPayload.documents`` asks for them, None when not worth it."""
        workers = self.workers
        if key is None or workers is None or not hasattr(parsed, "verdicts"):
            return None
        n = sum(len(i.messages) for i in parsed.interchanges)
        start = n - int(n * self.parallel_share) if n >= self.parallel_messages else n
        try:  # (fewer messages than it looked: the worker only drops what it read)
            workers.call("judge_tail", key, filename, partner, tid, known, start,
                         self.max_message_bytes)
        except Exception as exc:  # the worker is gone: judge everything here
            log.warning("worker_unavailable", reason=repr(exc))
            return None
        if start == n:
            return None
        results: list[Any] | None = None

        def outsourced(i: int) -> Any:
            nonlocal results
            if i < start:
                return None
            if results is None:
                try:
                    from gateway.core.parallel import take

                    prepared = workers.result()
                    results = take(workers.result()) if prepared else []
                except Exception as exc:  # judged here instead, same outcome
                    log.warning("worker_failed", reason=repr(exc))
                    results = []
            j = i - start
            return results[j] if j < len(results) else None
        return outsourced

    # -- the streamed path (large payloads) ---------------------------------------------------

    def _work_streamed(self, tid: str, row: TransmissionRow) -> Outcome | None:
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
        events: list[tuple[str, str]] = []
        partner: Partner | None = None
        parsed: Any = None
        try:
            head = next(blocks, b"")
            reader = self._detect(head)
            if not hasattr(reader, "stream"):
                blocks.close()
                return None
            parsed = reader.stream(itertools.chain([head], blocks), filename=row.filename,
                                   window=self.stream_window, slice_segments=self.slice_segments)
            parsed.open()
            partner = self._identify(parsed, row.partner_id)
        except PayloadError as exc:
            blocks.close()
            status = s.QUARANTINED if isinstance(exc, UnknownPartner) else s.FAILED
            self.store.record_failed(tid, stage=exc.stage, reason=str(exc), status=status,
                                     partner_id=partner.id if partner else None,
                                     fmt=parsed.format if parsed else None,
                                     standard=parsed.standard if parsed else None,
                                     events=events)
            return Outcome(tid, status, partner.id if partner else None, stage=exc.stage,
                           reason=str(exc))
        self.store.clear_outcome(tid)  # documents held by a run cut short by a crash
        run = _StreamRun(self, tid, partner.id)
        broken: PayloadError | None = None
        try:
            for event in parsed.events(
                    partner=partner, transmission_id=tid, filename=row.filename,
                    known=lambda ref: self._known_refs_for(partner, [ref], tid).get(ref)):
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
            events.append(_warnings_event(warnings, len(parsed.warnings) + run.warning_count))
        outcome: dict[str, Any] = dict(
            interchanges=self._interchanges(parsed, partner.id),
            outbound=self._replies(parsed, partner, tid))
        if broken is not None:
            queued = (f"; {run.queued} document(s) of the complete interchanges before it "
                      "were queued") if run.queued else ""
            outcome.update(stage=broken.stage, reason=f"{broken}{queued}", failed=True)
        elif run.first_failure is not None:
            stage, reason = run.first_failure
            outcome.update(_note(stage, reason, run.bad, run.unsupported, run.messages))
            outcome["failed"] = not run.queued and not run.duplicates
        rejected = [i for i in outcome["interchanges"] if i.status == s.IC_REJECTED]
        if not run.stored and not run.messages and broken is None:
            stage, reason = _nothing_read(rejected, parsed)
            outcome.update(stage=stage, reason=reason, failed=True)
        elif rejected and not outcome.get("reason"):
            outcome.update(_rejected_note(rejected))
        self.store.record_processed(tid, partner_id=partner.id, fmt=parsed.format,
                                    standard=parsed.standard, docs=[], events=events,
                                    final=True, **outcome)
        if outcome["outbound"]:
            self.on_outbound()
        if outcome.get("failed"):
            return Outcome(tid, s.FAILED, partner.id, run.stored, 0, stage=outcome["stage"],
                           reason=outcome["reason"])
        return Outcome(tid, s.PROCESSED if run.queued else s.PUBLISHED, partner.id, run.stored,
                       run.queued, stage=outcome.get("stage"), reason=outcome.get("reason"))

    def _new_documents(self, m: MappedDocument, partner_id: str,
                       warnings: list[str]) -> list[NewDocument]:
        """The stored form of a mapped document: one row, or its parts when its JSON is
        over ``max_message_bytes`` and its type can be published in parts (a price list).
        Raises MappingError when one item alone is over the limit."""
        payload: bytes = m.document.to_json_bytes()  # type: ignore[attr-defined]
        if len(payload) <= self.max_message_bytes:
            return [_new_document(m, partner_id, payload)]
        if not _has_parts(m.document):
            warnings.append(f"{m.doc_type} {m.business_number or m.message_id} is "
                            f"{len(payload)} bytes, over the {self.max_message_bytes}-byte "
                            "message size; sent whole (only price lists go out in parts)")
            return [_new_document(m, partner_id, payload)]
        parts = _part_payloads(m.document, self.max_message_bytes, first=1, total=True)
        return [_new_document(m, partner_id, p, part=n) for n, p in enumerate(parts, 1)]

    def _repeated_numbers(self, partner: Partner, docs: list[NewDocument],
                          events: list[tuple[str, str]]) -> list[NewDocument]:
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
        found = self.store.numbers_seen(partner.id, sorted(wanted), since,
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
            out.append(replace(d, status=s.DOC_DUPLICATE, stage="duplicate", reason=reason))
            events.append(("duplicate-number", reason))
        return out

    def _known_refs(self, partner: Partner, parsed: ParsedPayload, tid: str) -> dict[str, str]:
        """Control references of ``parsed`` this partner sent before (duplicate check)."""
        refs = parsed.control_refs() if hasattr(parsed, "control_refs") else []
        return self._known_refs_for(partner, refs, tid)

    def _known_refs_for(self, partner: Partner, refs: list[str], tid: str) -> dict[str, str]:
        if partner.edifact.duplicate_interchange == "accept":
            return {}
        if not refs:
            return {}
        since = clock.now() - dt.timedelta(days=partner.edifact.duplicate_window_days)
        replayed = self._replays.get(tid, ())  # a reprocess is no duplicate of its original
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

    def _give_up(self, row: TransmissionRow) -> None:
        reason = (f"processing started {row.attempts} times without finishing (the process "
                  "crashed, hung or was killed on it); not tried again ([processing] "
                  f"max_attempts = {self.max_attempts}); reprocess it once the cause is fixed")
        log.error("transmission_given_up", transmission_id=row.id, filename=row.filename,
                  attempts=row.attempts)
        self.store.fail_held(row.id, stage="process", reason=f"not released: {reason}")
        self.store.record_failed(row.id, stage="process", reason=reason)

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
        schemes = (*self.partners.SCHEMES, "unb")
        # XML and CSV senders name their scheme (gln, vat, siren …) as qualifier; EDIFACT's
        # are UNB ids with their 0007 qualifier (14, ZZ …).
        by_scheme = any(s.qualifier in schemes for s in parsed.senders)
        for sender in parsed.senders:
            if sender.id is None:
                continue
            if sender.qualifier in schemes:
                p = self.partners.by_identifier(sender.qualifier, sender.id)
            else:
                p = self.partners.by_unb_sender(sender.id, sender.qualifier)
            if p is None:
                unknown.append(sender)
            elif by_scheme and found:
                continue  # one document, several ids of its sender: the first match decides
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
        if unknown and by_scheme:
            ids = ", ".join(f"{u.qualifier or 'id'} {u.id}" for u in unknown[:5])
            raise UnknownPartner(f"unknown sender ({ids}): no partner profile lists these "
                                 "identifiers", sender_id=unknown[0].id,
                                 qualifier=unknown[0].qualifier)
        if unknown:
            u = unknown[0]
            q = f" (qualifier {u.qualifier})" if u.qualifier else ""
            raise UnknownPartner(f"unknown sender id {u.id}{q}: no partner profile lists it "
                                 "under identifiers.unb", sender_id=u.id, qualifier=u.qualifier)
        raise UnknownPartner(getattr(parsed, "unidentified", None)
                             or "payload names no sender and the channel is not "
                             f"partner-specific ({parsed.summary()})")


@dataclass(frozen=True, slots=True)
class _Named:
    """The senders a broken payload named, in the shape ``_identify`` reads."""

    senders: tuple[Any, ...]

    def summary(self) -> str:
        return "broken payload"


def _describe(exc: BaseException) -> str:
    """An exception named for an operator: its type, its message (cut), and where in the
    gateway's code it was raised."""
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + " …"
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "/gateway/" in name:
            where = f" (in {name[name.rindex('/gateway/') + 1:]}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"internal error: {type(exc).__name__}: {text}{where}"


def _nothing_read(rejected: list[NewInterchange], parsed: ParsedPayload) -> tuple[str, str]:
    """Stage and reason of a payload that gave no document at all."""
    if rejected:
        return "envelope", "; ".join(
            f"interchange {i.control_ref or '?'} rejected: {i.reason}" for i in rejected[:5])
    return "map", f"no document in the payload ({parsed.summary()})"


def _rejected_note(rejected: list[NewInterchange]) -> dict[str, Any]:
    return dict(stage="envelope", reason=f"{len(rejected)} interchange(s) rejected; first: "
                f"{rejected[0].control_ref or '?'}: {rejected[0].reason}")


class _StreamRun:
    """What a streamed transmission has made so far: documents waiting for the next commit,
    the held parts of the price lists being read, and the counts of the outcome."""

    #: Commit the held documents when their payloads reach this many bytes.
    flush_bytes = 8 * 1024 * 1024

    def __init__(self, pipeline: Pipeline, tid: str, partner_id: str) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.tid = tid
        self.partner_id = partner_id
        self.buffer: list[tuple[NewDocument, str | None]] = []
        self.buffer_bytes = 0
        #: Sliced message key -> ids of its parts stored so far, and the next part number.
        self.parts: dict[str, list[str]] = {}
        self.next_part: dict[str, int] = {}
        #: Sliced messages that failed while being cut in parts (an item over the size).
        self.broken: dict[str, FailedMessage] = {}
        self.stored = self.queued = self.duplicates = self.bad = self.unsupported = 0
        self.messages = 0  # messages complete (a price list in parts counts once)
        self.first_failure: tuple[str, str] | None = None
        self.warnings: list[str] = []
        self.warning_count = 0

    def take(self, event: Any) -> None:
        """One event of ``StreamedPayload.events`` (duck-typed: the core imports no format)."""
        kind = type(event).__name__
        if kind == "Done":
            self.done(event.result)
        elif kind == "Slice":
            self.slice(event.key, event.result)
        elif kind == "SlicedEnd":
            self.sliced_end(event.key, event.failed)
        elif kind == "InterchangeEnd":
            self.interchange_end(event.control_ref, event.rejected)
        else:  # pragma: no cover - a reader bug
            raise TypeError(f"unknown stream event {event!r}")

    def done(self, m: MappedDocument | FailedMessage) -> None:
        self.messages += 1
        if isinstance(m, FailedMessage):
            self.failed(m)
            return
        try:
            made = self.pipeline._new_documents(m, self.partner_id, self.warnings)
        except MappingError as exc:
            self.failed(_oversized(m, exc))
            return
        self.warn(m.warnings)
        for doc in made:
            self.add(doc)

    def slice(self, key: str, m: MappedDocument) -> None:
        if key in self.broken:
            return
        first = self.next_part.get(key, 1)
        try:
            payloads = _part_payloads(m.document, self.pipeline.max_message_bytes, first=first,
                                      total=False)
        except MappingError as exc:
            self.broken[key] = _oversized(m, exc)
            return
        self.warn(m.warnings)
        self.parts.setdefault(key, [])
        self.next_part[key] = first + len(payloads)
        for n, payload in enumerate(payloads, first):
            self.add(_new_document(m, self.partner_id, payload, part=n), key)

    def sliced_end(self, key: str, failed: FailedMessage | None) -> None:
        self.messages += 1
        self.flush()
        ids = self.parts.pop(key, [])
        count = self.next_part.pop(key, 1) - 1
        failed = failed or self.broken.pop(key, None)
        if failed is None:
            self.store.patch_held(ids, _UNKNOWN_TOTAL, b'"part_count":%d' % count)
            return
        self.note_failure(failed)
        if ids:
            self.store.fail_held(self.tid, stage=failed.stage, reason=failed.reason,
                                 document_ids=ids)
        else:
            self.add(_failed_document(failed, self.partner_id))

    def interchange_end(self, control_ref: str | None, rejected: PayloadError | None) -> None:
        self.flush()
        if rejected is not None:
            reason = f"interchange {control_ref or '-'} rejected: {rejected}"
            failed = self.fail_held(rejected.stage, reason)
            if failed and self.first_failure is None:
                self.first_failure = (rejected.stage, reason)
            return
        partner = self.pipeline.partners.get(self.partner_id)
        queued, duplicates = self.store.release_held(
            self.tid, on_conflict=partner.on_conflict if partner else "hold")
        self.queued += queued
        self.duplicates += duplicates
        if queued:
            self.pipeline.on_queued()  # the publisher starts while the rest is read

    def fail_held(self, stage: str, reason: str) -> int:
        failed = self.store.fail_held(self.tid, stage=stage, reason=reason)
        self.bad += failed
        return failed

    def failed(self, m: FailedMessage) -> None:
        self.note_failure(m)
        self.add(_failed_document(m, self.partner_id))

    def note_failure(self, m: FailedMessage) -> None:
        if m.status == s.DOC_FAILED:
            self.bad += 1
        else:
            self.unsupported += 1
        if self.first_failure is None:
            self.first_failure = (m.stage if m.status == s.DOC_FAILED else "unsupported",
                                  m.reason)

    def add(self, doc: NewDocument, key: str | None = None) -> None:
        self.buffer.append((doc, key))
        self.buffer_bytes += len(doc.payload)
        if len(self.buffer) >= self.pipeline.chunk_size or self.buffer_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        ids = self.store.hold_documents(self.tid, partner_id=self.partner_id,
                                        docs=[d for d, _ in self.buffer])
        for (_, key), doc_id in zip(self.buffer, ids, strict=True):
            if key is not None:
                self.parts[key].append(doc_id)
        self.stored += len(ids)
        self.buffer = []
        self.buffer_bytes = 0

    def warn(self, warnings: list[str]) -> None:
        self.warning_count += len(warnings)
        if len(self.warnings) < 20:
            self.warnings += warnings[:20 - len(self.warnings)]


#: ``part_count`` of a part whose total is not known yet (a price list still being read):
#: replaced in place when the message is complete. Its digits are as many as any total's.
_UNKNOWN_TOTAL_VALUE = 999_999_999
_UNKNOWN_TOTAL = b'"part_count":%d' % _UNKNOWN_TOTAL_VALUE


def _has_parts(document: Any) -> bool:
    """Whether a canonical model can be published in parts (``PriceList``)."""
    fields = type(document).model_fields
    return "part_number" in fields and "part_count" in fields and "items" in fields


def _part_payloads(document: Any, max_bytes: int, *, first: int, total: bool) -> list[bytes]:
    """The JSON of ``document`` cut into parts of at most ``max_bytes``, numbered from
    ``first``; ``part_count`` is their number when ``total``, else ``_UNKNOWN_TOTAL`` (set
    later). Each part repeats the header (number, parties, validity …) with a run of the
    items. Raises MappingError when one item alone does not fit."""
    items = list(document.items)
    unknown = _UNKNOWN_TOTAL_VALUE

    def dump(run: list[Any], number: int, count: int) -> bytes:
        return document.model_copy(update={"items": run, "part_number": number,
                                           "part_count": count}).to_json_bytes()

    empty = len(dump([], unknown, unknown))
    full = len(dump(items, unknown, unknown))
    room = max_bytes - empty
    per_item = (full - empty) / max(len(items), 1)
    size = max(1, int(room * 0.95 / per_item)) if per_item else max(len(items), 1)
    runs = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
    fitted: list[list[Any]] = []
    while runs:
        run = runs.pop(0)
        if len(dump(run, unknown, unknown)) <= max_bytes:
            fitted.append(run)
        elif len(run) == 1:
            item = run[0]
            raise MappingError(
                f"item {item.line_number or item.gtin or item.item_code or '?'} alone makes a "
                f"part of {len(dump(run, unknown, unknown))} bytes, over the {max_bytes}-byte "
                "message size (broker.max_message_bytes)")
        else:
            half = len(run) // 2
            runs[:0] = [run[:half], run[half:]]
    count = len(fitted) if total else unknown
    return [dump(run, n, count) for n, run in enumerate(fitted, first)]


def _new_document(m: MappedDocument, partner_id: str, payload: bytes, *,
                  part: int | None = None) -> NewDocument:
    """A mapped document (or one part of it) as the store keeps it, with the digest of its
    content. A whole document's message id combines the reader's (reference-based) id with
    that digest, here and inside its JSON: a corrected document sent under the same
    references is not dropped by a consumer as a repeat. A part's message id (the AMQP
    message id a consumer drops repeats by) is the list's with ``-p<n>``; the canonical
    ``message_id`` inside stays the list's, the same in every part."""
    sha = content_digest(payload)
    if part is None:
        mid = content_message_id(m.message_id, sha)
        payload = payload.replace(b'"message_id":"%s"' % m.message_id.encode(),
                                  b'"message_id":"%s"' % mid.encode(), 1)
    else:
        mid = f"{m.message_id}-p{part}"
    return NewDocument(
        doc_type=m.doc_type, schema_version=m.schema_version,
        business_number=m.business_number, interchange_ref=m.interchange_ref,
        message_ref=m.message_ref, message_id=mid, payload=payload,
        routing_key=f"{m.doc_type}.{partner_id}", content_sha=sha, part=part)


def _oversized(m: MappedDocument, exc: MappingError) -> FailedMessage:
    description = f"{m.doc_type} {m.business_number or m.message_id}"
    return FailedMessage(status=s.DOC_FAILED, stage="map", reason=f"{description}: {exc}",
                         message_id=m.message_id, description=description,
                         doc_type=m.doc_type, business_number=m.business_number,
                         interchange_ref=m.interchange_ref, message_ref=m.message_ref)


def _warnings_event(warnings: list[str], count: int) -> tuple[str, str]:
    shown = warnings[:20]
    more = count - len(shown)
    return ("warnings", "; ".join(shown) + (f" … and {more} more" if more > 0 else ""))


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
    note = _note(first.stage if bad else "unsupported", first.reason, bad,
                 len(failures) - bad, total)
    note["failed"] = len(failures) == total
    return note


def _note(stage: str, first_reason: str, bad: int, unsupported: int,
          total: int) -> dict[str, Any]:
    """Stage and reason of a transmission whose messages failed: ``bad`` failed and
    ``unsupported`` unsupported of ``total``, the first failure's stage and reason."""
    parts = []
    if bad:
        parts.append(f"{bad} of {total} message(s) failed")
    if unsupported:
        parts.append(f"{unsupported} of {total} message(s) unsupported")
    reason = first_reason if bad + unsupported == 1 and total == 1 else \
        f"{' and '.join(parts)}; first: {first_reason}"
    return dict(stage=stage, reason=reason)
