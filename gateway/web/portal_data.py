"""What the client portal's pages and API share: the inbox uploads go to, the partner's
current price list, the demonstration space's sample files and test results.

Everything here reads within the client's ``Scope`` (``gateway.store.read.portal`` puts its
partner in the SQL) or from the client's own partner profile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.channels.portal.inbox import MAX_UPLOAD, PortalInbox
from gateway.core.ports import Receipt
from gateway.core.scope import Scope
from gateway.store.read import portal as q
from gateway.store.records import TransmissionRow

log = structlog.get_logger("edigw.portal")

#: The route limits of the uploads (a multipart body carries a little more than the file).
UPLOAD_BODY = MAX_UPLOAD + 64 * 1024
#: The media type of a document's bytes, by its file name's extension.
MEDIA_TYPES = {".edi": "application/EDIFACT", ".xml": "application/xml",
               ".pdf": "application/pdf", ".csv": "text/csv; charset=utf-8",
               ".txt": "text/plain; charset=utf-8", ".json": "application/json"}
#: A partner's onboarding states, in the words of the portal (``Partner.state``).
STATE_WORDS = {"draft": "being set up", "test": "in test (your files do not reach our "
               "production systems)", "live": "live", "suspended": "suspended"}


def media_type(filename: str) -> str:
    return MEDIA_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")


def partner_state(partner: Any) -> str:
    """The partner's onboarding state (``live`` for a profile that names none)."""
    return str(getattr(partner, "state", "live") or "live")


# -- uploads ----------------------------------------------------------------------------------


def _process_now(pipeline: Any) -> Callable[[list[Receipt]], None]:
    """Processing in the caller's thread, for a gateway whose processing worker does not
    run (the console over an opened gateway: tests, tools), as a reprocess is."""
    def process(receipts: list[Receipt]) -> None:
        pipeline.process_many([r.transmission_id for r in receipts])

    return process


def inbox_of(gateway: Any) -> PortalInbox:
    """The portal's inbox over the gateway's pipeline. Receipts go to the processing worker
    of ``edigw serve`` (``gateway.on_received``) when it runs, else are processed at once;
    the limit is the portal's, the server's ``[http] max_body`` and the pipeline's."""
    hand_over = getattr(gateway, "on_received", None) or _process_now(gateway.pipeline)
    limits = [MAX_UPLOAD, int(getattr(gateway.pipeline, "max_size", MAX_UPLOAD))]
    settings = getattr(gateway, "settings", None)
    if settings is not None:
        limits.append(settings.http.max_body)
    return PortalInbox(receiver=gateway.pipeline, hand_over=hand_over, max_size=min(limits))


# -- the price list ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceListFile:
    """The partner's current price list in its format: the bytes, a file name, and where
    they come from (``sent``: the copy we sent, as sent; ``rendered``: rendered now from
    the last whole list)."""

    filename: str
    data: bytes
    source: str
    list_id: str | None
    number: str | None
    at: dt.datetime | None

    @property
    def media_type(self) -> str:
        return media_type(self.filename)


class NoPriceList(LookupError):
    """The partner has no price list yet (or it cannot be rendered now); ``reason`` says."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def current_price_list(gateway: Any, scope: Scope) -> PriceListFile:
    """The partner's current price list: the last copy sent to it, as sent (a partner
    taking whole lists); else the last whole list it was sent (or, failing that, the last
    one published for a list it subscribes to) rendered now in its format. Raises
    ``NoPriceList``."""
    pid = q.partner_of(scope)
    partner = gateway.partners.get(pid)
    archive = gateway.archive
    mode = partner.outbound.price_list_mode if partner is not None else "full"
    if mode == "full":
        copy = q.latest_price_list_copy(gateway.store, scope)
        if copy is not None and copy.sha256 in archive:
            return PriceListFile(filename=copy.filename, data=archive.get(copy.sha256),
                                 source="sent", list_id=None, number=copy.business_number,
                                 at=copy.sent_at or copy.created_at)
    versions = q.held_price_lists(gateway.store, scope)
    subscribed = list(partner.outbound.price_lists) if partner is not None else []
    latest = q.latest_distribution(gateway.store, scope, subscribed)
    candidates = [*versions, *([latest] if latest is not None else [])]
    whole = next((x for x in candidates if x.sha256 in archive), None)
    if whole is None:
        raise NoPriceList("no price list has been published for you yet")
    intake = getattr(gateway, "intake", None)
    if intake is None or partner is None:
        raise NoPriceList("price lists cannot be rendered by this gateway")
    result = intake.dry_run(archive.get(whole.sha256), partner=pid, doc_type="price-list")
    if result.failed or not result.rendered:
        log.warning("portal_price_list_not_rendered", partner=pid, stage=result.stage,
                    reason=result.reason)
        raise NoPriceList("your price list cannot be prepared in your format just now; "
                          "our team has been told")
    mapping = intake.mappings.mappings.get(result.mapping or "")
    ext = {"edifact": ".edi", "xml": ".xml", "pdf": ".pdf", "csv": ".csv",
           "text": ".txt"}.get(getattr(mapping, "syntax", ""), ".bin")
    number = result.number or whole.number
    name = f"price-list-{_safe(number or whole.list_id)}{ext}"
    return PriceListFile(filename=name, data=result.rendered, source="rendered",
                         list_id=whole.list_id, number=number, at=whole.at)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:64] or "list"


# -- the demonstration space ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample file of one document type the partner sends: the mapping it shows, the
    file's name and path (never from a request: found from the mapping)."""

    mapping_id: str
    doc_type: str
    format: str
    description: str
    filename: str
    path: Path


def samples_for(gateway: Any, partner: Any) -> list[Sample]:
    """The sample files for each document type the partner's profile declares: the named
    mapping's sample, else every mapping of that type and format that is chosen by match.
    A profile declaring none gets the EDIFACT samples of every type."""
    from gateway.formats.mapping.samples import sample_paths

    mappings = getattr(gateway, "mappings", None)
    if mappings is None:
        return []
    declared = [(d.type, d.format, d.mapping) for d in partner.documents] or [
        (t, "edifact", None) for t in ("order", "invoice", "price-list")]
    out: dict[str, Sample] = {}
    for doc_type, fmt, mapping_id in declared:
        if mapping_id:
            chosen = [m for m in mappings if m.id == mapping_id]
        else:
            chosen = [m for m in mappings if m.document == doc_type
                      and getattr(m, "format", "edifact") == fmt and m.auto_match]
        for m in sorted(chosen, key=lambda m: m.id):
            sample, _expected = sample_paths(m)
            if sample.is_file() and m.id not in out:
                out[m.id] = Sample(mapping_id=m.id, doc_type=doc_type,
                                   format=getattr(m, "format", "edifact"),
                                   description=str(getattr(m, "description", "") or m.id),
                                   filename=sample.name, path=sample)
    return list(out.values())


def sample_bytes(sample: Sample, partner: Any) -> bytes:
    """The sample's bytes, an EDIFACT one sent as from the partner (its first UNB id in the
    interchange header), so that the partner can upload it back as its own."""
    data = sample.path.read_bytes()
    if sample.format != "edifact" or not partner.identifiers.unb:
        return data
    first = partner.identifiers.unb[0]
    return with_unb_sender(data, first.id, first.qualifier)


def with_unb_sender(data: bytes, sender: str, qualifier: str | None) -> bytes:
    """``data`` with the interchange sender (UNB S002 0004, and 0007 when given) replaced;
    unchanged when it has no UNB or the id holds a separator."""
    if data.startswith(b"UNA") and len(data) >= 9:
        comp, elem, rel, term = data[3:4], data[4:5], data[6:7], data[8:9]
    else:
        comp, elem, rel, term = b":", b"+", b"?", b"'"
    raw = sender.encode("ascii", "replace")
    qual = (qualifier or "").encode("ascii", "replace")
    if any(sep in raw + qual for sep in (comp, elem, rel, term)):
        return data
    start = data.find(b"UNB" + elem)
    end = data.find(term, start) if start >= 0 else -1
    if start < 0 or end < 0:
        return data
    elements = data[start:end].split(elem)
    if len(elements) < 3:
        return data
    s002 = elements[2].split(comp)
    s002[0] = raw
    if qual:
        s002 = [*s002, b""][: max(2, len(s002))]
        s002[1] = qual
    elements[2] = comp.join(s002)
    return data[:start] + elem.join(elements) + data[end:]


@dataclass(frozen=True, slots=True)
class DemoFile:
    """One file the partner sent, with its documents and their lines (the demonstration
    space's results)."""

    transmission: TransmissionRow
    documents: list[q.DocumentLines]


def demo_results(gateway: Any, scope: Scope, *, limit: int = 20) -> list[DemoFile]:
    """The partner's latest files (newest first), each with its documents' lines."""
    rows = q.own_transmissions(gateway.store, scope, direction="in", limit=limit)
    docs = q.documents_with_lines(gateway.store, scope, [t.id for t in rows])
    return [DemoFile(t, docs.get(t.id, [])) for t in rows]
