"""The streamed path: a large payload processed as a stream, recorded as its events come.

Documents are stored HELD as their messages complete, in chunks, and released to the
outbox in one commit when their interchange has closed cleanly; the parts of a price list
sliced on the way wait for its UNT, their total written into each before release.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic

from gateway.core.canonical import PriceList
from gateway.core.documents import (
    UNKNOWN_TOTAL,
    failed_document,
    new_document,
    note,
    nothing_read,
    oversized,
    part_payloads,
    rejected_note,
    warnings_event,
)
from gateway.core.errors import MappingError, PartnerNotLive, PayloadError
from gateway.core.lifecycle import is_test, quarantines, test_event
from gateway.core.ports import (
    Done,
    FailedMessage,
    InterchangeEnd,
    MappedDocument,
    P,
    Slice,
    SlicedEnd,
    StreamedPayload,
    StreamEvent,
    StreamingReader,
    TransmissionView,
)
from gateway.core.records import Event, NewDocument, NewInterchange, Note, Outcome, Processed
from gateway.core.status import DocumentStatus, InterchangeStatus
from gateway.core.status import TransmissionStatus as T

if TYPE_CHECKING:
    from gateway.core.pipeline import Pipeline


class StreamRun(Generic[P]):
    """What a streamed transmission has made so far: documents waiting for the next commit,
    the held parts of the price lists being read, and the counts of the outcome."""

    #: Commit the held documents when their payloads reach this many bytes.
    flush_bytes = 8 * 1024 * 1024

    def __init__(self, pipeline: Pipeline[P], tid: str, partner_id: str) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.tid = tid
        self.partner_id = partner_id
        partner = pipeline.partners.get(partner_id)
        #: The partner is in test: its documents go to the test queue.
        self.test = partner is not None and is_test(partner.state)
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

    def take(self, event: StreamEvent) -> None:
        """One event of ``StreamedPayload.events``."""
        match event:
            case Done(result=result):
                self.done(result)
            case Slice(key=key, result=result):
                self.slice(key, result)
            case SlicedEnd(key=key, failed=failed):
                self.sliced_end(key, failed)
            case InterchangeEnd(control_ref=ref, rejected=rejected):
                self.interchange_end(ref, rejected)
            case _:  # pragma: no cover - a reader bug
                raise TypeError(f"unknown stream event {event!r}")

    def done(self, m: MappedDocument | FailedMessage) -> None:
        self.messages += 1
        if isinstance(m, FailedMessage):
            self.failed(m)
            return
        try:
            made = self.pipeline.new_documents(m, self.partner_id, self.warnings,
                                               test=self.test)
        except MappingError as exc:
            self.failed(oversized(m, exc))
            return
        self.warn(m.warnings)
        for doc in made:
            self.add(doc)

    def slice(self, key: str, m: MappedDocument) -> None:
        if key in self.broken:
            return
        document = m.document
        if not isinstance(document, PriceList):  # pragma: no cover - a reader bug
            raise TypeError(f"only a price list is sliced, not a {type(document).__name__}")
        first = self.next_part.get(key, 1)
        try:
            payloads = part_payloads(document, self.pipeline.max_message_bytes, first=first,
                                     total=False)
        except MappingError as exc:
            self.broken[key] = oversized(m, exc)
            return
        self.warn(m.warnings)
        self.parts.setdefault(key, [])
        self.next_part[key] = first + len(payloads)
        for n, payload in enumerate(payloads, first):
            self.add(new_document(m, self.partner_id, payload, part=n, test=self.test), key)

    def sliced_end(self, key: str, failed: FailedMessage | None) -> None:
        self.messages += 1
        self.flush()
        ids = self.parts.pop(key, [])
        count = self.next_part.pop(key, 1) - 1
        failed = failed or self.broken.pop(key, None)
        if failed is None:
            self.store.patch_held(ids, UNKNOWN_TOTAL, b'"part_count":%d' % count)
            return
        self.note_failure(failed)
        if ids:
            self.store.fail_held(self.tid, stage=failed.stage, reason=failed.reason,
                                 document_ids=ids)
        else:
            self.add(failed_document(failed, self.partner_id))

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
            self.tid, on_conflict=partner.on_conflict if partner else "hold", test=self.test)
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
        self.add(failed_document(m, self.partner_id))

    def note_failure(self, m: FailedMessage) -> None:
        if m.status == DocumentStatus.FAILED:
            self.bad += 1
        else:
            self.unsupported += 1
        if self.first_failure is None:
            self.first_failure = (m.stage if m.status == DocumentStatus.FAILED
                                  else "unsupported", m.reason)

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

    def note(self, broken: PayloadError | None, interchanges: list[NewInterchange],
             summary: Callable[[], str]) -> Note:
        """The stage and reason the transmission is noted with once read to its end (or
        to where it broke): what failed first, and how many failed of how many."""
        outcome = Note()
        if broken is not None:
            queued = (f"; {self.queued} document(s) of the complete interchanges before it "
                      "were queued") if self.queued else ""
            outcome = Note(broken.stage, f"{broken}{queued}", failed=True)
        elif self.first_failure is not None:
            stage, reason = note(*self.first_failure, self.bad, self.unsupported,
                                 self.messages)
            outcome = Note(stage, reason, failed=not self.queued and not self.duplicates)
        rejected = [i for i in interchanges if i.status == InterchangeStatus.REJECTED]
        if not self.stored and not self.messages and broken is None:
            stage, reason = nothing_read(rejected, summary)
            outcome = Note(stage, reason, failed=True)
        elif rejected and not outcome.reason:
            outcome = rejected_note(rejected)
        return outcome


def work_streamed(pipeline: Pipeline[P], tid: str, row: TransmissionView) -> Outcome | None:
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
    store = pipeline.store
    blocks = pipeline.archive.blocks(row.sha256)
    events: list[Event] = []
    partner: P | None = None
    parsed: StreamedPayload[P] | None = None
    try:
        head = next(blocks, b"")
        reader = pipeline.detect(head)
        if not isinstance(reader, StreamingReader):
            blocks.close()
            return None
        parsed = reader.stream(itertools.chain([head], blocks), filename=row.filename,
                               window=pipeline.stream_window,
                               slice_segments=pipeline.slice_segments)
        parsed.open()
        partner = pipeline.identify(parsed, row.partner_id)
    except PayloadError as exc:
        blocks.close()
        status = T.QUARANTINED if quarantines(exc) else T.FAILED
        if isinstance(exc, PartnerNotLive):
            partner = pipeline.partners.get(exc.partner_id)
        store.record_failed(tid, stage=exc.stage, reason=str(exc), status=status,
                            partner_id=partner.id if partner else None,
                            fmt=parsed.format if parsed else None,
                            standard=parsed.standard if parsed else None, events=events)
        return Outcome(tid, status, partner.id if partner else None, stage=exc.stage,
                       reason=str(exc))
    store.clear_outcome(tid)  # documents held by a run cut short by a crash
    run = StreamRun(pipeline, tid, partner.id)
    broken: PayloadError | None = None
    known_partner = partner
    try:
        for event in parsed.events(
                partner=partner, transmission_id=tid, filename=row.filename,
                known=lambda ref: pipeline.refs.known(known_partner, [ref], tid).get(ref)):
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
    if run.test:
        events.append(test_event(partner.id))
    warnings = parsed.warnings + run.warnings
    if warnings:
        events.append(warnings_event(warnings, len(parsed.warnings) + run.warning_count))
    interchanges = pipeline.interchanges(parsed)
    outbound = pipeline.replies(parsed, partner, tid)
    outcome = run.note(broken, interchanges, parsed.summary)
    store.record_outcome(Processed(tid, partner.id, parsed.format, parsed.standard, (),
                                   events, interchanges, outbound, outcome), final=True)
    if outbound:
        pipeline.on_outbound()
    if outcome.failed:
        return Outcome(tid, T.FAILED, partner.id, run.stored, 0, stage=outcome.stage,
                       reason=outcome.reason)
    return Outcome(tid, T.PROCESSED if run.queued else T.PUBLISHED, partner.id,
                   run.stored, run.queued, stage=outcome.stage, reason=outcome.reason)
