"""Documents the ERP sends out: received durably first, then checked, rendered and recorded
for delivery — the inbound rule, reversed.

Whoever hands edigw a canonical document for a partner (the ``edigw.outbound`` queue,
``edigw send``, ``POST /api/outbound``, an automatic order response) calls
``OutboundIntake.accept`` with its bytes:

1. **Receive** — the bytes are archived (fsync'd) and an outbound transmission
   (``direction = "out"``) is committed RECEIVED. Only then may the caller acknowledge its
   source (the broker message). The same ERP message id received again answers from the
   first transmission: nothing is sent twice.
2. **Check** — JSON, the canonical model of its ``schema`` (``edigw.invoice/1`` …), the
   partner (known, enabled), the outbound mapping (``--format``, else the profile's
   ``[outbound] formats``). A failure makes the transmission FAILED with its stage
   (``parse``, ``validate``, ``partner``, ``mapping``, ``render``) and reason; nothing is sent.
3. **Render** — the mapping renders and validates the body (EDIFACT against its
   directory, XML against its XSD) before any control reference is taken.
4. **Record** — in one transaction: the partner's next interchange control reference,
   the sealed bytes archived, the document (status OUTBOUND, searchable by number), the
   outbound row PENDING and the transmission RENDERED. The dispatcher
   (``channels/outbound.OutboundDispatcher``) delivers it and follows its receipts.

A crash between 1 and 4 leaves the transmission RECEIVED: ``resume`` renders it again.

**Large price lists** (issue 16: a 100 MB list with memory that does not grow with it).
A price list above ``stream_above`` bytes (``STREAM_ABOVE``), for a mapping that renders
as a stream (EDIFACT), takes the same steps without ever holding the document: received
from a file (``accept_file``, ``Archive.put_file``) or its bytes archived as usual, it is
read back from the archive twice with ``ijson`` — once for the header (every field but
``items``), validated against ``PriceList`` without items, once item by item, each
validated against ``PriceListItem`` and written, canonical, to a spool file. The first bad
item fails the whole document (stage ``validate``, its path ``items.N.field``; the
in-memory check lists up to 10 errors of the whole document, the streamed one those of the
first bad item) and no control reference is taken. The renderer then reads the spooled
items one at a time, writes the body to a spool file and checks it against its directory
as it reads it back (``EdifactRenderer.render_stream``); ``seal`` streams UNA/UNB, the
body and UNZ into the archive. The document row holds the canonical header without its
items, with ``items_omitted``: the item count and the SHA-256 of the canonical items (one
JSON line each); the items themselves are in the archived ERP payload of the
transmission. It is found by ``price_list_number`` as any other. Other documents, and
price lists for mappings that cannot stream, are checked in memory (``MAX_DOCUMENT``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ijson
import structlog
from pydantic import ValidationError

from gateway.core import clock
from gateway.core.canonical import (
    CANONICAL_MODELS,
    OUTBOUND_TYPES,
    PriceList,
    PriceListItem,
    content_digest,
)
from gateway.core.errors import EdigwError
from gateway.core.ids import message_id as make_message_id
from gateway.core.records import NewOutboundDocument
from gateway.formats.render import (
    Body,
    OutboundMapping,
    OutboundMappings,
    RenderContext,
    RenderError,
)
from gateway.formats.render.stream import StreamedBody, StreamedList, StreamingMapping
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.outbound import Rendered, Sealed
from gateway.store.records import OutboundRow, TransmissionRow

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.channels.intake")

#: The largest document accepted from the ERP (bytes of canonical JSON).
MAX_DOCUMENT = 512 * 1024 * 1024

#: A price list larger than this (bytes of canonical JSON) is checked and rendered as a
#: stream when its mapping can (``StreamingMapping``): see "Large price lists" above.
STREAM_ABOVE = 4 << 20

#: The longest path (``items.item.prices.item…``) the streamed header pass follows: a
#: canonical document is a few levels deep; deeper nesting is refused, never walked (each
#: event's path grows with the depth).
MAX_PREFIX = 512
#: The most items a streamed price list may hold, and prices one of its items may hold:
#: checked before they drive any loop.
MAX_ITEMS = 10_000_000
MAX_PRICES = 10_000
#: Spool files (in the archive folder) older than this are left by a crash: ``resume``
#: removes them.
SPOOL_KEPT = dt.timedelta(hours=6)
_SPOOL_PREFIXES = (".items-", ".render-", ".sealed-")

#: ``schema`` value -> canonical type name, for the types the ERP may send out.
SCHEMA_TYPES = {CANONICAL_MODELS[t].model_fields["schema_"].default: t for t in OUTBOUND_TYPES}

#: An outbound transmission still RECEIVED after this long was interrupted: ``resume``.
RESUME_AFTER = dt.timedelta(seconds=60)


class OutboundRefused(EdigwError):
    """A document that cannot go out: ``stage`` (parse, validate, partner, mapping, render)
    and ``reason``."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """What became of one document handed to edigw."""

    transmission_id: str | None  # None for a dry run
    status: str  # RENDERED (or later), FAILED
    partner_id: str | None
    doc_type: str | None
    number: str | None = None
    mapping: str | None = None
    stage: str | None = None
    reason: str | None = None
    outbound: OutboundRow | None = None
    #: True when the same ERP message was received before: this is its first result.
    repeat: bool = False
    #: The rendered bytes, for a dry run.
    rendered: bytes | None = None

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"

    def as_fields(self) -> dict[str, Any]:
        """Its fields, for a copy with some changed."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def as_dict(self) -> dict[str, Any]:
        out = {"transmission_id": self.transmission_id, "status": self.status,
               "partner": self.partner_id, "doc_type": self.doc_type, "number": self.number,
               "mapping": self.mapping, "stage": self.stage, "reason": self.reason,
               "repeat": self.repeat}
        if self.outbound is not None:
            out["outbound_id"] = self.outbound.id
            out["filename"] = self.outbound.filename
            out["control_ref"] = self.outbound.control_ref
        return out


@dataclass(frozen=True, slots=True)
class Incoming:
    """One document handed to ``accept_many`` (the keywords of ``accept``)."""

    data: bytes
    origin: str
    ref: str | None = None
    partner: str | None = None
    doc_type: str | None = None
    fmt: str | None = None
    filename: str | None = None
    reprocess_of: str | None = None
    requested_by: str | None = None
    request_reason: str | None = None


@dataclass(slots=True)
class _Checked:
    doc_type: str
    document: dict[str, Any]  # canonical JSON, as validated (partner, message_id filled)
    payload: bytes
    number: str
    partner: Partner
    mapping: OutboundMapping
    #: Spool files of a streamed check (the canonical items), removed once recorded.
    spooled: list[Path] = field(default_factory=list)

    def discard(self) -> None:
        for path in self.spooled:
            path.unlink(missing_ok=True)


@dataclass
class OutboundIntake:
    """Receives, checks, renders and records documents for partners."""

    store: Store
    archive: Archive
    partners: Callable[[str], Partner | None]
    mappings: OutboundMappings
    #: Our UNB identity (``[outbound] sender_id`` / ``sender_qualifier``).
    sender_id: str | None = None
    sender_qualifier: str | None = "14"
    #: Called after a document was recorded for delivery (wakes the dispatcher).
    on_rendered: Callable[[], None] | None = None
    max_size: int = MAX_DOCUMENT
    #: A price list above this many bytes is checked and rendered as a stream.
    stream_above: int = STREAM_ABOVE
    _clock: Callable[[], dt.datetime] = field(default=clock.now, repr=False)

    # -- the way in ---------------------------------------------------------------------

    def accept(self, data: bytes, *, origin: str, ref: str | None = None,
               partner: str | None = None, doc_type: str | None = None,
               fmt: str | None = None, filename: str | None = None,
               reprocess_of: str | None = None, requested_by: str | None = None,
               request_reason: str | None = None) -> OutboundResult:
        """Receive one document (``origin``: erp, cli, api, ack …; ``ref``: its id at the
        source, e.g. the broker message id). Never raises for the document's faults: they
        are a FAILED result (and transmission). Raises StoreError when the store or the
        archive cannot record it: then nothing was received and the source must keep it."""
        return self.accept_many([Incoming(
            data, origin=origin, ref=ref, partner=partner, doc_type=doc_type, fmt=fmt,
            filename=filename, reprocess_of=reprocess_of, requested_by=requested_by,
            request_reason=request_reason)])[0]

    def accept_many(self, items: list[Incoming]) -> list[OutboundResult]:
        """``accept`` for a batch (the broker's prefetched messages): one archive sync and
        one commit to receive them all, one to record all the renderings. Results in the
        order of ``items``."""
        results: list[OutboundResult | None] = [None] * len(items)
        fresh: list[int] = []
        for n, it in enumerate(items):
            if it.ref is not None and it.reprocess_of is None:
                seen = self.store.outbound_by_ref(it.origin, it.ref)
                if seen is not None:
                    results[n] = self._result_of(seen, repeat=True)
                    continue
            if any(items[m].origin == it.origin and items[m].ref == it.ref
                   and it.ref is not None and it.reprocess_of is None for m in fresh):
                continue  # the same message twice in one batch: answered below
            fresh.append(n)
        if fresh:
            shas = self.archive.put_many([items[n].data for n in fresh])
            tids = self.store.record_outbound_received_many([dict(
                channel=items[n].origin, channel_ref=items[n].ref,
                filename=items[n].filename, size=len(items[n].data), sha256=sha,
                partner_id=self._known(items[n].partner),
                detail=f"{len(items[n].data)} bytes from {items[n].origin}"
                       + (f" ({items[n].ref})" if items[n].ref else ""),
                reprocess_of=items[n].reprocess_of, requested_by=items[n].requested_by,
                request_reason=items[n].request_reason) for n, sha in zip(fresh, shas,
                                                                         strict=True)])
            work = []
            for n, tid in zip(fresh, tids, strict=True):
                if tid is not None:
                    work.append((n, tid))
                    continue
                # Another instance recorded this message a moment ago: its result.
                seen = self.store.outbound_by_ref(items[n].origin, items[n].ref or "")
                if seen is not None:
                    results[n] = self._result_of(seen, repeat=True)
            done = self._process_many([(tid, items[n]) for n, tid in work])
            for (n, _), result in zip(work, done, strict=True):
                results[n] = result
            fresh = [n for n in fresh if results[n] is not None]
        final: list[OutboundResult] = []
        for n, got in enumerate(results):
            if got is None:  # a repeat inside the batch: its first's result
                first = next(r for m, r in enumerate(results) if m in fresh
                             and items[m].origin == items[n].origin
                             and items[m].ref == items[n].ref and r is not None)
                got = OutboundResult(**{**first.as_fields(), "repeat": True})
            final.append(got)
        return final

    def _known(self, partner: str | None) -> str | None:
        return partner if partner and self.partners(partner) is not None else None

    def accept_file(self, path: str | os.PathLike[str], *, origin: str, ref: str | None = None,
                    partner: str | None = None, doc_type: str | None = None,
                    fmt: str | None = None, filename: str | None = None,
                    reprocess_of: str | None = None, requested_by: str | None = None,
                    request_reason: str | None = None) -> OutboundResult:
        """``accept`` for a document in a file, never read whole into memory: archived
        block by block (``Archive.put_file``), then checked and rendered from the archive
        (a large price list as a stream, see the module docstring)."""
        if ref is not None and reprocess_of is None:
            seen = self.store.outbound_by_ref(origin, ref)
            if seen is not None:
                return self._result_of(seen, repeat=True)
        sha, size = self.archive.put_file(path)
        tid = self.store.record_outbound_received_many([dict(
            channel=origin, channel_ref=ref, filename=filename, size=size, sha256=sha,
            partner_id=self._known(partner),
            detail=f"{size} bytes from {origin}" + (f" ({ref})" if ref else ""),
            reprocess_of=reprocess_of, requested_by=requested_by,
            request_reason=request_reason)])[0]
        if tid is None:  # another instance recorded this message a moment ago
            seen = self.store.outbound_by_ref(origin, ref or "")
            if seen is None:
                raise OutboundRefused("receive", f"{origin} message {ref} vanished")
            return self._result_of(seen, repeat=True)
        return self._process_archived(tid, sha, size, partner=partner, doc_type=doc_type,
                                      fmt=fmt)

    def _process_archived(self, tid: str, sha: str, size: int, *, partner: str | None,
                          doc_type: str | None, fmt: str | None,
                          data: bytes | None = None) -> OutboundResult:
        """Check, render and record an archived document: as a stream when it is a large
        price list whose mapping can, else in memory."""
        it = Incoming(b"", origin="", partner=partner, doc_type=doc_type, fmt=fmt)
        if size > self.max_size:  # refused as ``_check`` does, without reading it
            return self._fail(tid, partner, doc_type, "parse", f"{size} bytes is more than "
                                                                f"the {self.max_size} a "
                                                                "document may have")
        if size > self.stream_above:
            try:
                checked = self._check_stream(sha, partner=partner, doc_type=doc_type, fmt=fmt)
            except OutboundRefused as exc:
                return self._fail(tid, partner, doc_type, exc.stage, exc.reason)
            if checked is not None:
                return self._render_checked(tid, it, checked, stream=True)
        if data is None:
            data = self.archive.get(sha)
        return self._process_loaded([(tid, Incoming(data, origin="", partner=partner,
                                                    doc_type=doc_type, fmt=fmt))])[0]

    def dry_run(self, data: bytes, *, partner: str | None, doc_type: str | None = None,
                fmt: str | None = None) -> OutboundResult:
        """Check and render without recording or sending anything (``edigw send
        --dry-run``): the bytes that would leave, sealed with the partner's next control
        reference (not taken)."""
        try:
            checked = self._check(data, partner=partner, doc_type=doc_type, fmt=fmt)
            body = checked.mapping.render(checked.document, self._context(checked.partner))
            ref = str(self.store.last_control_ref(checked.partner.id) + 1)
            rendered = body.seal(ref if checked.mapping.uses_control_ref else "")
        except OutboundRefused as exc:
            return OutboundResult(None, "FAILED", partner, doc_type, stage=exc.stage,
                                  reason=exc.reason)
        except RenderError as exc:
            return OutboundResult(None, "FAILED", partner, doc_type, stage="render",
                                  reason=str(exc))
        return OutboundResult(None, "RENDERED", checked.partner.id, checked.doc_type,
                              number=checked.number, mapping=checked.mapping.id,
                              rendered=rendered)

    def resume(self) -> int:
        """Render the outbound transmissions a crash left RECEIVED; returns how many."""
        done = 0
        self._sweep_spool()
        for row in self.store.outbound_to_render(self._clock() - RESUME_AFTER):
            try:
                if row.sha256 not in self.archive:
                    raise FileNotFoundError(f"{row.sha256} is not in the archive")
                data = None if row.size > self.stream_above else self.archive.get(row.sha256)
            except Exception as exc:  # purged or unreadable: fail it rather than loop
                self.store.fail_outbound(row.id, stage="receive",
                                         reason=f"archived payload unreadable: {exc}")
                continue
            self._process_archived(row.id, row.sha256, row.size, partner=row.partner_id,
                                   doc_type=None, fmt=None, data=data)
            done += 1
        return done

    def resend(self, tid: str, *, by: str, reason: str) -> OutboundResult:
        """Send an outbound transmission again (reprocess): its archived document is
        received anew under a new transmission, rendered with a new control reference
        and delivered; both timelines say so."""
        row = self.store.get_transmission(tid)
        if row is None or row.direction != "out":
            raise OutboundRefused("reprocess", f"{tid} is not an outbound transmission")
        fmt = None
        outs = self.store.outbound_of(tid)
        if outs and outs[-1].mapping:
            fmt = outs[-1].mapping
        if row.size > self.stream_above:
            return self.accept_file(self.archive.path_of(row.sha256), origin=row.channel,
                                    ref=row.channel_ref, partner=row.partner_id, fmt=fmt,
                                    filename=row.filename, reprocess_of=tid,
                                    requested_by=by, request_reason=reason)
        data = self.archive.get(row.sha256)
        return self.accept(data, origin=row.channel, ref=row.channel_ref,
                           partner=row.partner_id, fmt=fmt, filename=row.filename,
                           reprocess_of=tid, requested_by=by, request_reason=reason)

    # -- the steps ----------------------------------------------------------------------

    def _process_many(self, batch: list[tuple[str, Incoming]]) -> list[OutboundResult]:
        big = {n for n, (_, it) in enumerate(batch) if len(it.data) > self.stream_above}
        if not big:
            return self._process_loaded(batch)
        small = self._process_loaded([b for n, b in enumerate(batch) if n not in big])
        results: list[OutboundResult] = []
        for n, (tid, it) in enumerate(batch):
            if n in big:
                results.append(self._process_archived(
                    tid, hashlib.sha256(it.data).hexdigest(), len(it.data),
                    partner=it.partner, doc_type=it.doc_type, fmt=it.fmt, data=it.data))
            else:
                results.append(small.pop(0))
        return results

    def _process_loaded(self, batch: list[tuple[str, Incoming]]) -> list[OutboundResult]:
        results: list[OutboundResult | None] = [None] * len(batch)
        ready: list[tuple[int, _Checked, Body]] = []
        for n, (tid, it) in enumerate(batch):
            try:
                checked = self._check(it.data, partner=it.partner, doc_type=it.doc_type,
                                      fmt=it.fmt)
            except OutboundRefused as exc:
                results[n] = self._fail(tid, it.partner, it.doc_type, exc.stage, exc.reason)
                continue
            except Exception as exc:  # whatever a payload does, it fails alone
                log.exception("outbound_check_crashed", transmission_id=tid)
                results[n] = self._fail(tid, it.partner, it.doc_type, "validate",
                                        f"{type(exc).__name__}: {exc}")
                continue
            body = self._render(tid, it, checked, stream=False)
            if isinstance(body, OutboundResult):
                results[n] = body
                continue
            ready.append((n, checked, body))
        if ready:
            for (n, checked, _), row in zip(ready, self._record(batch, ready), strict=True):
                results[n] = self._rendered(batch[n][0], checked, row)
            if self.on_rendered is not None:
                self.on_rendered()
        return [r for r in results if r is not None]

    def _render(self, tid: str, it: Incoming, checked: _Checked, *,
                stream: bool) -> Body | OutboundResult:
        """The checked document rendered (as a stream: to a spool file), or its failure."""
        try:
            ctx = self._context(checked.partner)
            if stream and isinstance(checked.mapping, StreamingMapping):
                return checked.mapping.render_stream(checked.document, ctx,
                                                     spool=self.archive.root)
            return checked.mapping.render(checked.document, ctx)
        except OutboundRefused as exc:
            return self._fail(tid, it.partner, it.doc_type, exc.stage, exc.reason)
        except RenderError as exc:
            return self._fail(tid, it.partner, it.doc_type, "render", str(exc))
        except Exception as exc:  # a renderer's bug must not lose the document either
            log.exception("outbound_render_crashed", transmission_id=tid)
            return self._fail(tid, it.partner, it.doc_type, "render",
                              f"{type(exc).__name__}: {exc}")

    def _render_checked(self, tid: str, it: Incoming, checked: _Checked, *,
                        stream: bool) -> OutboundResult:
        """Render and record one checked document (a streamed price list)."""
        body: Body | OutboundResult | None = None
        try:
            body = self._render(tid, it, checked, stream=stream)
            if isinstance(body, OutboundResult):
                return body
            row = self._record([(tid, it)], [(0, checked, body)])[0]
        finally:
            checked.discard()
            if isinstance(body, StreamedBody):
                body.discard()
        if self.on_rendered is not None:
            self.on_rendered()
        return self._rendered(tid, checked, row)

    def _rendered(self, tid: str, checked: _Checked, row: OutboundRow) -> OutboundResult:
        log.info("outbound_rendered", transmission_id=row.transmission_id,
                 partner=checked.partner.id, doc_type=checked.doc_type,
                 number=checked.number, mapping=checked.mapping.id,
                 control_ref=row.control_ref, size=row.size)
        return OutboundResult(tid, "RENDERED", checked.partner.id, checked.doc_type,
                              number=checked.number, mapping=checked.mapping.id, outbound=row)

    def _record(self, batch: list[tuple[str, Incoming]],
                ready: list[tuple[int, _Checked, Body]]) -> list[OutboundRow]:
        """Control references, sealed bytes (one archive sync) and rows in one commit."""
        items = []
        for n, checked, _ in ready:
            items.append(Rendered(
                tid=batch[n][0], partner_id=checked.partner.id,
                channel=checked.partner.outbound.channel, kind=checked.doc_type,
                document=NewOutboundDocument(
                    schema_version=checked.document["schema"],
                    business_number=checked.number,
                    message_id=checked.document["message_id"], payload=checked.payload,
                    content_sha=content_digest(checked.payload)),
                mapping=checked.mapping.id, syntax=checked.mapping.syntax,
                uses_control_ref=checked.mapping.uses_control_ref))

        def seal(refs: list[str | None]) -> list[Sealed]:
            outs, names, files = [], [], {}
            for m, ((n, checked, body), ref) in enumerate(zip(ready, refs, strict=True)):
                if isinstance(body, StreamedBody):
                    files[m] = self._seal_file(body, ref or "")
                    outs.append(b"")
                else:
                    outs.append(body.seal(ref or ""))
                stem = f"{checked.doc_type}-{_safe(checked.number)}-{batch[n][0][-8:]}"
                names.append(stem + (f"-{ref}" if ref else "") + checked.mapping.suffix)
            loaded = [m for m in range(len(outs)) if m not in files]
            shas = dict(zip(loaded, self.archive.put_many([outs[m] for m in loaded]),
                            strict=True))
            return [Sealed(sha256=files[m][0], size=files[m][1], filename=name) if m in files
                    else Sealed(sha256=shas[m], size=len(outs[m]), filename=name)
                    for m, name in enumerate(names)]

        return self.store.record_rendered_many(items, seal)

    def _sweep_spool(self) -> None:
        """Remove the spool files a crash left in the archive folder (a streamed rendering
        takes minutes: files older than ``SPOOL_KEPT`` are nobody's)."""
        cutoff = dt.datetime.now(dt.UTC).timestamp() - SPOOL_KEPT.total_seconds()
        try:
            for path in self.archive.root.glob(".*-*"):
                if path.name.startswith(_SPOOL_PREFIXES) and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("outbound_spool_sweep_failed", error=str(exc))

    def _seal_file(self, body: StreamedBody, ref: str) -> tuple[str, int]:
        """Seal a spooled rendering into the archive block by block: (sha256, size)."""
        fd, name = tempfile.mkstemp(prefix=".sealed-", dir=self.archive.root)
        try:
            with os.fdopen(fd, "wb") as out:
                body.seal_to(ref, out.write)
            return self.archive.put_file(name)
        finally:
            os.unlink(name)

    def _fail(self, tid: str, partner: str | None, doc_type: str | None, stage: str,
              reason: str) -> OutboundResult:
        self.store.fail_outbound(tid, stage=stage, reason=reason)
        log.warning("outbound_refused", transmission_id=tid, partner=partner, stage=stage,
                    reason=reason)
        return OutboundResult(tid, "FAILED", partner, doc_type, stage=stage, reason=reason)

    def _check(self, data: bytes, *, partner: str | None, doc_type: str | None,
               fmt: str | None) -> _Checked:
        if len(data) > self.max_size:
            raise OutboundRefused("parse", f"{len(data)} bytes is more than the "
                                           f"{self.max_size} a document may have")
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OutboundRefused("parse", f"not JSON: {exc}") from None
        except RecursionError:
            raise OutboundRefused("parse", "not a document: JSON nested too deep") from None
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]  # a one-document list, as the mappings' expected files hold them
        if isinstance(raw, list):
            raise OutboundRefused("parse", f"a list of {len(raw)} documents: send them one "
                                           "by one")
        if not isinstance(raw, dict):
            raise OutboundRefused("parse", "not a JSON object")
        kind, profile = self._identify(raw, partner=partner, doc_type=doc_type,
                                       sha=hashlib.sha256(data).hexdigest())
        model = CANONICAL_MODELS[kind]
        try:
            doc = model.model_validate(raw)
        except ValidationError as exc:
            raise OutboundRefused("validate", _validation_reason(kind, exc)) from None
        payload: bytes = doc.to_json_bytes()  # type: ignore[attr-defined]
        document = json.loads(payload)
        mapping = self._mapping(profile, kind, fmt)
        self._need_sender(mapping)
        return _Checked(kind, document, payload, str(doc.business_number),  # type: ignore[attr-defined]
                        profile, mapping)

    def _check_stream(self, sha: str, *, partner: str | None, doc_type: str | None,
                      fmt: str | None) -> _Checked | None:
        """``_check`` of an archived document without holding it: a price list for a
        streaming mapping, its items validated one by one and spooled, canonical, to a
        file. None when it is not such a document (it is then checked in memory)."""
        path = self.archive.path_of(sha)
        header = _read_header(path)
        if header is None:
            return None
        raw, base = header
        try:
            kind, profile = self._identify(raw, partner=partner, doc_type=doc_type, sha=sha)
            if kind != "price-list":
                return None
            mapping = self._mapping(profile, kind, fmt)
        except OutboundRefused:
            return None  # the in-memory check says why, in its order
        if not isinstance(mapping, StreamingMapping):
            return None
        try:
            head = PriceList.model_validate({**raw, "items": []})
        except ValidationError as exc:
            raise OutboundRefused("validate", _validation_reason(kind, exc)) from None
        spool, count, digest = self._spool_items(path, base, kind)
        try:
            self._need_sender(mapping)
            document = json.loads(head.to_json_bytes())
            document.pop("items", None)
            stored = {**document, "items_omitted": {
                "count": count, "canonical_sha256": digest,
                "note": "a streamed price list: its items are in the archived payload of "
                        "the transmission"}}
            payload = json.dumps(stored, ensure_ascii=False,
                                 separators=(",", ":")).encode("utf-8")
            document["items"] = StreamedList(lambda: _spooled(spool), count)
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        return _Checked(kind, document, payload, head.business_number, profile, mapping,
                        [spool])

    def _spool_items(self, path: Path, base: str, kind: str) -> tuple[Path, int, str]:
        """Validate each item of the archived price list and write it, canonical, one
        JSON line each, to a spool file: (the file, the item count, its SHA-256)."""
        fd, name = tempfile.mkstemp(prefix=".items-", suffix=".jsonl", dir=self.archive.root)
        spool = Path(name)
        digest = hashlib.sha256()
        count = 0
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
                for item in ijson.items(source, f"{base}items.item", use_float=True):
                    if count >= MAX_ITEMS:
                        raise OutboundRefused("validate", f"not a valid {kind}: more than "
                                                          f"{MAX_ITEMS} items")
                    prices = item.get("prices") if isinstance(item, dict) else None
                    if isinstance(prices, list) and len(prices) > MAX_PRICES:
                        raise OutboundRefused("validate", f"not a valid {kind}: items.{count}"
                                              f".prices: more than {MAX_PRICES} prices")
                    try:
                        model = PriceListItem.model_validate(item)
                    except ValidationError as exc:
                        raise OutboundRefused("validate", _validation_reason(
                            kind, exc, ("items", count))) from None
                    line = model.model_dump_json(by_alias=True, exclude_none=True).encode()
                    digest.update(line)
                    out.write(line + b"\n")
                    count += 1
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            spool.unlink(missing_ok=True)
            raise OutboundRefused("parse", f"not JSON: {exc}") from None
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        return spool, count, digest.hexdigest()

    def _need_sender(self, mapping: OutboundMapping) -> None:
        if mapping.uses_control_ref and not self.sender_id:
            raise OutboundRefused("mapping", f"{mapping.id} needs our UNB identity: set "
                                             "[outbound] sender_id in gateway.toml")

    def _identify(self, raw: dict[str, Any], *, partner: str | None, doc_type: str | None,
                  sha: str) -> tuple[str, Partner]:
        """The canonical type and the partner of a parsed document (``raw`` is completed:
        schema, partner, source, message_id from ``sha``, the digest of its bytes)."""
        schema = raw.get("schema")
        kind = SCHEMA_TYPES.get(schema) if isinstance(schema, str) else None
        if kind is None and schema is None and doc_type in OUTBOUND_TYPES:
            kind = doc_type
            raw["schema"] = CANONICAL_MODELS[kind].model_fields["schema_"].default
        if kind is None:
            raise OutboundRefused(
                "validate", f"'schema' must be one of {', '.join(sorted(SCHEMA_TYPES))}, "
                            f"not {schema!r}")
        if doc_type is not None and doc_type != kind:
            raise OutboundRefused("validate", f"the document is {kind}, not {doc_type} "
                                              "as its routing key says")
        named = raw.get("partner")
        pid = partner or (named if isinstance(named, str) else None)
        if not pid:
            raise OutboundRefused("partner", "no partner: give one (routing key "
                                             "<doctype>.<partner>, --partner, or 'partner')")
        # The address it was sent to (routing key, --partner) wins over the document's own
        # ``partner`` (a document received from one partner may be answered to another).
        profile = self.partners(pid)
        if profile is None:
            raise OutboundRefused("partner", f"unknown partner {pid!r}")
        if not profile.enabled:
            raise OutboundRefused("partner", f"partner {pid!r} is disabled")
        raw["partner"] = pid
        # Where it comes from is the ERP, whatever a copied document said; its id is ours.
        raw["source"] = {"format": "erp", "standard": "edigw", "version": "1",
                         "mapping": "erp"}
        raw.pop("message_id", None)
        model = CANONICAL_MODELS[kind]
        number_field: str = getattr(model, "business_field")  # noqa: B009  (a ClassVar)
        number = raw.get(number_field)
        # Stable: the same bytes for the same partner give the same id; a corrected
        # document under the same number another.
        raw["message_id"] = make_message_id(pid, kind, "erp", str(number), sha)
        return kind, profile

    def _mapping(self, partner: Partner, kind: str, fmt: str | None) -> OutboundMapping:
        chosen = fmt or partner.outbound.formats.get(kind)  # type: ignore[call-overload]
        if not chosen:
            raise OutboundRefused("mapping", f"partner {partner.id}'s profile names no format "
                                             f"for {kind} ([outbound] formats) and none "
                                             "was given")
        try:
            return self.mappings.choose(kind, chosen)
        except RenderError as exc:
            raise OutboundRefused("mapping", exc.reason) from None

    def _context(self, partner: Partner) -> RenderContext:
        out = partner.outbound
        recipient, qualifier = out.recipient_id, out.recipient_qualifier
        if recipient is None and partner.identifiers.unb:
            first = partner.identifiers.unb[0]
            recipient, qualifier = first.id, qualifier or first.qualifier
        return RenderContext(
            partner_id=partner.id, sender_id=self.sender_id or "",
            sender_qualifier=self.sender_qualifier, recipient_id=recipient or partner.id,
            recipient_qualifier=qualifier, test=partner.test_indicator, ack_requested=out.contrl,
            now=self._clock(), options=dict(out.options))

    def _result_of(self, row: TransmissionRow, *, repeat: bool) -> OutboundResult:
        outs = self.store.outbound_of(row.id)
        return OutboundResult(row.id, row.status, row.partner_id, outs[-1].kind if outs else None,
                              mapping=row.standard, stage=row.stage, reason=row.reason,
                              outbound=outs[-1] if outs else None, repeat=repeat)


def _validation_reason(kind: str, exc: ValidationError, within: tuple[str | int, ...] = ()
                       ) -> str:
    parts = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in (*within, *err["loc"]))
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return f"not a valid {kind}: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _spooled(path: Path) -> Iterator[dict[str, Any]]:
    """The canonical items of a spool file, one at a time."""
    with open(path, "rb") as lines:
        for line in lines:
            yield json.loads(line)


def _read_header(path: Path) -> tuple[dict[str, Any], str] | None:
    """Every top-level field of a JSON document but ``items``, read with ``ijson`` without
    building the items, and the ``ijson`` prefix of the document (``""``, or ``"item."``
    for a one-document list). None when the document must be read whole to be judged
    (not JSON, not one object, ``items`` not one list): the in-memory check then says why.
    """
    raw: dict[str, Any] = {}
    base: str | None = None
    documents = 0
    items = 0
    key: str | None = None
    builder: Any = None
    depth = 0
    skipping = False
    try:
        with open(path, "rb") as source:
            for prefix, event, value in ijson.parse(source, use_float=True):
                if len(prefix) > MAX_PREFIX:
                    return None  # nested too deep for a document: the in-memory check says so
                if base is None:
                    if event == "start_map":
                        base, documents = "", 1
                        continue
                    if event != "start_array":
                        return None
                    base = "item"
                    continue
                if builder is not None or skipping:
                    if builder is not None:
                        builder.event(event, value)
                    if event in ("start_map", "start_array"):
                        depth += 1
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                    if depth == 0:
                        if builder is not None and key is not None:
                            raw[key] = builder.value
                        builder, skipping = None, False
                    continue
                if base == "item" and prefix == "item" and event in (
                        "start_map", "start_array", "string", "number", "boolean", "null"):
                    documents += 1
                    if event != "start_map" or documents > 1:
                        return None
                    continue
                if prefix == base and event == "map_key":
                    key = value
                    continue
                if key is not None and prefix == (f"{base}.{key}" if base else key):
                    depth = 1 if event in ("start_map", "start_array") else 0
                    if key == "items":
                        items += 1
                        if event != "start_array":
                            return None
                        skipping = True
                        continue
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    if depth == 0:
                        raw[key] = builder.value
                        builder = None
    except (ijson.JSONError, UnicodeDecodeError, OSError):
        return None
    if documents != 1 or items > 1:
        return None
    return raw, f"{base}." if base else ""


def _safe(number: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_" else "_" for c in number)
    return kept[:40] or "document"


def outbound_problems(partners: Iterable[Partner], mappings: OutboundMappings, *,
                      sender_id: str | None, senders: Iterable[str]) -> list[str]:
    """What ``edigw check-config`` refuses in what partners are to be sent: a format no
    outbound mapping renders, EDIFACT without our UNB identity, a channel this gateway
    cannot send on (``senders``: the channels with a sender), a subscription or an
    automatic response without the format to send it in."""
    problems: list[str] = []
    can_send = set(senders)
    for p in partners:
        out = p.outbound
        where = p.source or p.id
        for kind, fmt in out.formats.items():
            try:
                mapping = mappings.choose(kind, fmt)
            except RenderError as exc:
                problems.append(f"{where}: [outbound] formats: {exc.reason}")
                continue
            if mapping.uses_control_ref and not sender_id:
                problems.append(f"{where}: [outbound] formats: {mapping.id} needs our UNB "
                                "identity: set [outbound] sender_id in gateway.toml")
        if not out.formats and not out.price_lists and out.order_responses == "off":
            continue  # sends nothing: its channel does not matter
        if out.channel not in can_send:
            problems.append(f"{where}: [outbound] channel {out.channel!r}: this gateway has no "
                            f"sender for it (configure [{_SECTION.get(out.channel, out.channel)}])")
        elif out.channel == "as2" and (p.as2 is None or not p.as2.url):
            problems.append(f"{where}: [outbound] channel 'as2' needs [as2] url")
        elif out.channel == "sftp" and (p.sftp is None or not p.sftp.outbound_folder):
            problems.append(f"{where}: [outbound] channel 'sftp' needs [sftp] outbound_folder")
        if out.price_lists and "price-list" not in out.formats:
            problems.append(f"{where}: [outbound] price_lists needs formats.price-list")
        if out.order_responses == "auto" and "order-response" not in out.formats:
            problems.append(f"{where}: [outbound] order_responses = \"auto\" needs "
                            "formats.order-response")
    return problems


#: The section of gateway.toml that gives a channel its sender.
_SECTION = {"as2": "as2] identities", "email": "smtp"}
