"""The console's page of one transmission (``/transmissions/{tid}``), for support, bounded
whatever the transmission's size.

What it shows: a badge saying what happened (``web.outcome``); the facts, timeline,
interchanges, outbound payloads, transport and reprocessing (as before); the documents 50
per page with a pager, counted by status (``store.read.transmission``); one document
rendered as a person reads it (``web.document_view``: the one asked for with
``?document=``, else the first that failed, else the first); and the raw payload a window
at a time (``web.segments``): EDIFACT one segment per line, the line a failure reason
points at marked and shown in context, a Factur-X PDF as its embedded XML. Nothing reads
all documents nor the whole payload (a PDF, at most 25 MiB, is read whole to open it).

Query parameters: ``offset`` and ``status`` (the documents' page and filter), ``document``
(the one to read), ``line`` (the first line of the payload's window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import Response

from gateway.core.status import DocumentStatus, can_process_again, can_send_again
from gateway.core.zone import shown, zone_of
from gateway.store.read.transmission import (
    TransmissionHead,
    document_of,
    documents_page,
    first_document,
    payload_of,
    transmission_head,
)
from gateway.store.records import DocumentRow, TransmissionRow
from gateway.web.document_view import Readable, readable
from gateway.web.numbers import BadNumber, url_int
from gateway.web.outcome import NOT_GONE_ON, outcome
from gateway.web.segments import (
    Failing,
    RawWindow,
    failing_position,
    is_edifact,
    locate,
    raw_window,
)

if TYPE_CHECKING:
    from gateway.web.pages import Page

#: Documents per page of the table.
PAGE = 50
#: Lines (segments) of the payload per window, and how many before a failing one.
RAW_LINES = 100
CONTEXT = 20
#: A failing line is also shown alone near the top, with this many lines around it.
NEAR = 3


@dataclass(frozen=True, slots=True)
class Raw:
    """The payload's part shown: a window, or why there is none (``note``)."""

    window: RawWindow | None
    note: str | None
    #: "Factur-X XML (factur-x.xml)" when the window shows a PDF's embedded XML.
    shown_as: str | None = None
    failing: int | None = None


@dataclass(frozen=True, slots=True)
class Pager:
    """Where a page is in a list: ``offset`` … of ``total``, the links' query strings."""

    offset: int
    limit: int
    total: int
    links: dict[str, str]

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)


def _pager(offset: int, limit: int, total: int, keep: dict[str, str]) -> Pager:
    def at(o: int) -> str:
        return "?" + urlencode({**keep, "offset": str(o)} if o else keep) + "#documents"

    links: dict[str, str] = {}
    if offset > 0:
        links["first"] = at(0)
        links["previous"] = at(max(0, offset - limit))
    if offset + limit < total:
        links["next"] = at(offset + limit)
        links["last"] = at((total - 1) // limit * limit)
    return Pager(offset=offset, limit=limit, total=total, links=links)


def first_bytes(blocks: Iterable[bytes], limit: int) -> list[bytes]:
    """The first ``limit`` bytes of ``blocks``, block by block (the rest is not read)."""
    out, size = [], 0
    for b in blocks:
        out.append(b[: limit - size])
        size += len(out[-1])
        if size >= limit:
            break
    return out


def _pdf_xml(data: bytes) -> tuple[bytes, str] | str:
    """A Factur-X / ZUGFeRD / Order-X PDF's XML, pretty-printed when it came on one or two
    lines (else as attached, so that a reason's line numbers still match), and its name;
    or why it cannot be shown."""
    from gateway.core.errors import PayloadError
    from gateway.formats.pdf.extract import extract_embedded_xml

    try:
        found = extract_embedded_xml(data)
    except PayloadError as exc:
        return f"no invoice XML to show: {exc}"
    xml = found.data
    if xml.count(b"\n") < 3:
        from lxml import etree

        from gateway.formats.xml.safe import parse_xml
        try:
            xml = etree.tostring(parse_xml(xml), pretty_print=True, xml_declaration=True,
                                 encoding="UTF-8")
        except PayloadError:
            pass  # shown as attached; the reason says what is wrong with it
    return xml, found.filename


@dataclass(frozen=True, slots=True)
class Payload:
    """An archived payload to show: the transmission's own, or one sent for it."""

    sha256: str
    size: int
    format: str | None
    purged_at: Any = None
    #: What it is when not the transmission's payload ("outbound invoice.pdf").
    label: str | None = None

    @classmethod
    def of(cls, t: TransmissionRow) -> Payload:
        return cls(sha256=t.sha256, size=t.size, format=t.format, purged_at=t.purged_at)


def raw_part(gateway: Any, t: Payload, failing: Failing | None, first: int | None) -> Raw:
    """The window of payload ``t`` to show: from line ``first``, else around the failing
    line, else from the start."""
    if t.purged_at is not None:
        return Raw(None, f"payload purged on {shown(t.purged_at, zone_of(gateway.settings))} "
                         "(retention)")
    if t.sha256 not in gateway.archive:
        return Raw(None, "payload not in the archive")
    archive = gateway.archive
    head = b"".join(first_bytes(archive.blocks(t.sha256), 512))
    shown_as = t.label
    blocks: list[bytes] | None
    if head.lstrip()[:5] == b"%PDF-":
        from gateway.formats.pdf.extract import MAX_PDF_BYTES

        if t.size > MAX_PDF_BYTES:
            return Raw(None, f"a PDF of {t.size:,} bytes, over the {MAX_PDF_BYTES:,} bytes "
                             "edigw opens; download it")
        got = _pdf_xml(archive.get(t.sha256))
        if isinstance(got, str):
            return Raw(None, got)
        xml, name = got
        blocks, edifact = [xml], False
        shown_as = ((t.label + ": ") if t.label else "") + f"the Factur-X XML attached as {name}"
    else:
        edifact = t.format == "edifact" or is_edifact(head)
        blocks = None
    mark = failing.line_in(edifact=edifact) if failing else None

    def read() -> Iterable[bytes]:
        return blocks if blocks is not None else archive.blocks(t.sha256)

    if failing is not None and mark is None and failing.byte is not None:
        mark = locate(read(), failing.byte, edifact=edifact)
    start = first if first is not None else (max(1, mark - CONTEXT) if mark else 1)
    window = raw_window(read(), edifact=edifact, first=start, count=RAW_LINES, failing=mark)
    return Raw(window, None, shown_as, mark)


def _chosen(p: Page, tid: str, asked: str | None, counts_failed: int,
            first: DocumentRow | None) -> DocumentRow | None:
    """The document to read: the one asked for (of this transmission), else the first that
    did not go on, else the first (``first`` when the page shown starts with it)."""
    if asked:
        doc = document_of(p.store, asked, p.who.scope)
        return doc if doc is not None and doc.transmission_id == tid else None
    if counts_failed:
        found = first_document(p.store, tid, NOT_GONE_ON)
        if found is not None:
            return found
    return first if first is not None else first_document(p.store, tid)


def _failing(t: TransmissionRow, doc: DocumentRow | None) -> tuple[Failing | None, str | None]:
    """Where the failure points, and the reason naming it: the document's own error, else
    the transmission's."""
    for reason in ((doc.reason if doc else None), t.reason):
        found = failing_position(reason)
        if found is not None:
            return found, reason
    return None, None


def _read(p: Page, doc: DocumentRow | None) -> Readable | None:
    """``doc`` to read, or None when it has no canonical document (a message that failed or
    is unsupported is stored with its error, schema version "-")."""
    if doc is None or doc.schema_version == "-" or doc.status in (DocumentStatus.FAILED,
                                                                   DocumentStatus.UNSUPPORTED):
        return None
    try:
        return readable(payload_of(p.store, doc.id))
    except ValueError:  # a payload that is not JSON (never written so; shown raw below)
        return None


def transmission(p: Page) -> Response:
    """The page."""
    tid = p.request.path_params["tid"]
    q = p.request.query_params
    try:
        offset = url_int(q.get("offset", "0") or "0", lo=0, name="offset")
        line = url_int(q["line"], lo=1, name="line") if q.get("line") else None
    except BadNumber as exc:
        return p.render("not_found.html", exc.status, what=f"such page: {exc}")
    head: TransmissionHead | None = transmission_head(p.store, tid, p.who.scope)
    if head is None:
        return p.render("not_found.html", 404, what=f"transmission {tid}")
    t, counts = head.transmission, head.counts
    status = q.get("status", "").strip().upper()
    statuses = (status,) if status in counts.by_status else ()
    total = counts.count(*statuses) if statuses else counts.total
    offset = min(offset, max(0, (total - 1) // PAGE * PAGE))
    docs = documents_page(p.store, t.id, limit=PAGE, offset=offset, statuses=statuses,
                          scope=p.who.scope)
    doc = _chosen(p, t.id, q.get("document") or None, counts.count(*NOT_GONE_ON),
                  docs[0] if docs and not offset and not statuses else None)
    failing, failing_reason = _failing(t, doc)
    sent = next((o for o in head.outbound if o.id == q.get("sent")), None)
    if sent is not None:  # what edigw sent for it (a CONTRL, a rendered invoice …)
        raw = raw_part(p.gateway, Payload(sha256=sent.sha256, size=sent.size, format=None,
                                          purged_at=t.purged_at,
                                          label=f"sent: {sent.kind} {sent.filename}"),
                       None, line)
    else:
        raw = raw_part(p.gateway, Payload.of(t), failing, line)
    keep = {k: v for k, v in (("status", status if statuses else ""),
                              ("document", q.get("document", "")),
                              ("sent", sent.id if sent else "")) if v}
    zone = zone_of(p.gateway.settings)
    reprocessable = (can_send_again(t.status) if t.direction == "out"
                     else can_process_again(t.status, t.reason))
    from gateway.web.pages import STATUS_CLASS

    return p.render(
        "transmission.html", t=t, head=head, events=head.events, counts=counts,
        outcome=outcome(t, counts), documents=docs,
        pager=_pager(offset, PAGE, total, keep), status_filter=status if statuses else "",
        keep_docs={k: v for k, v in (("status", status if statuses else ""),
                                     ("offset", str(offset) if offset else "")) if v},
        doc=doc, doc_view=_read(p, doc), failing=failing, failing_reason=failing_reason,
        raw=raw, raw_links=_raw_links(raw, keep, offset), near=NEAR,
        interchanges=head.interchanges, outbound=head.outbound, transport=head.transport,
        attempts=head.attempts, status_class=STATUS_CLASS,
        when=lambda at: shown(at, zone),
        reprocessable=reprocessable and t.purged_at is None,
        message=q.get("message"))


def _raw_links(raw: Raw, keep: dict[str, str], offset: int) -> dict[str, str]:
    """The payload window's links: earlier and later lines, and back to the failing one."""
    w = raw.window
    if w is None:
        return {}
    base = {**keep, **({"offset": str(offset)} if offset else {})}

    def at(line: int) -> str:
        return "?" + urlencode({**base, "line": str(line)}) + "#raw"

    links = {}
    if w.first > 1:
        links["earlier"] = at(max(1, w.first - RAW_LINES))
    if w.more:
        links["later"] = at(w.last + 1)
    if raw.failing and not any(x.failing for x in w.lines):
        links["failing"] = at(max(1, raw.failing - CONTEXT))
    return links


__all__ = ["CONTEXT", "PAGE", "RAW_LINES", "Pager", "Payload", "Raw", "first_bytes", "raw_part",
           "transmission"]
