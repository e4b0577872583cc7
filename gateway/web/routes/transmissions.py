"""The transmission log, one transmission's view (its documents a page at a time), its
payload (raw, or as EDIFACT segments, whole or a window), reprocessing, and a document's
canonical JSON and readable view.

The reads are open to a client user too (``Reader``) and go through ``who.scope``: the
client's partner is in every query, so another partner's id answers 404 and a filter on
another partner 404 as well."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from gateway.core.reprocess import reprocess
from gateway.core.scope import EVERYTHING, Scope
from gateway.core.status import DocumentStatus
from gateway.core.zone import zone_of
from gateway.store.db import Store
from gateway.store.read.log_export import log_csv
from gateway.store.read.transmission import (
    document_counts,
    document_of,
    documents_page,
    payload_of,
    transmission_head,
)
from gateway.store.read.transmissions import (
    LogQuery,
    document_meta,
    transmission_page,
)
from gateway.store.records import TransmissionRow
from gateway.web.deps import Audit, Gateway, Operator, Reader, StoreDep, iso, remote, utc
from gateway.web.document_view import readable
from gateway.web.numbers import Offset
from gateway.web.outcome import outcome
from gateway.web.paging import Limit, Paged, PartnerFilter, paged
from gateway.web.segments import edifact_segments, raw_window
from gateway.web.transmission_page import first_bytes

router = APIRouter(tags=["transmissions"])


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, description="why (recorded with who asked)")


class ReprocessOut(BaseModel):
    transmission_id: str
    attempt_id: str
    status: str
    partner_id: str | None = None
    documents: int
    queued: int
    stage: str | None = None
    reason: str | None = None


class TransmissionOut(BaseModel):
    id: str
    channel: str
    channel_ref: str | None = None
    partner_id: str | None = None
    filename: str | None = None
    size: int
    sha256: str
    received_at: str
    acknowledged_at: str | None = None
    status: str
    stage: str | None = None
    reason: str | None = None
    format: str | None = None
    standard: str | None = None
    document_count: int
    duplicate_of: str | None = None
    updated_at: str
    reprocess_of: str | None = None
    requested_by: str | None = None
    request_reason: str | None = None
    purged_at: str | None = None
    direction: str = "in"
    numbers: list[str] = Field(default_factory=list,
                               description="business numbers of its documents (orders …)")
    erp: str = Field(default="not applicable", description="what the ERP said of its "
                     "documents: acknowledged, rejected, waiting, not applicable (or counts)")


class TransmissionPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[TransmissionOut]


def _transmission(store: Store, tid: str, scope: Scope = EVERYTHING) -> TransmissionRow:
    t = store.get_transmission(tid, scope)
    if t is None:
        raise HTTPException(404, f"no transmission {tid}")
    return t


def _log_query(who: Reader, partner: PartnerFilter, channel: str | None = None,
               status: str | None = None, format: str | None = None,
               since: dt.datetime | None = None, until: dt.datetime | None = None,
               direction: Annotated[str | None, Query(
                   pattern="^(in|out)$", description="in: received from partners; "
                   "out: documents edigw sends them")] = None,
               q: Annotated[str | None, Query(
                   max_length=512, description="a transmission id, file name, partner or "
                   "business number (order, invoice …), matched exactly")] = None) -> LogQuery:
    return LogQuery(partner=who.scope.narrow(partner), channel=channel, format=format,
                    statuses=[x.strip().upper() for x in status.split(",")] if status else (),
                    since=utc(since), until=utc(until), direction=direction,
                    text=(q or "").strip() or None)


#: The log's filters, the same for the page of JSON and the CSV export.
LogFilters = Annotated[LogQuery, Depends(_log_query)]


@router.get("/transmissions", summary="The transmission log, newest first",
            response_model=TransmissionPage)
def transmissions(who: Reader, store: StoreDep, query: LogFilters,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Offset = 0) -> dict[str, Any]:
    page = transmission_page(store, query, limit=limit, offset=offset, scope=who.scope,
                             by_day=True)
    items = []
    for r in page.rows:
        facts = page.facts_of(r.id)
        items.append(dict(r.as_dict(), numbers=facts.numbers, erp=facts.erp_state))
    return {"total": page.total, "limit": limit, "offset": offset, "items": items}


@router.get("/transmissions.csv", summary="The transmission log as CSV: every row the "
            "filters match, newest first, streamed", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def transmissions_csv(who: Reader, gateway: Gateway, query: LogFilters) -> Response:
    lines = log_csv(gateway.store, query, zone_of(gateway.settings), who.scope)
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="transmissions.csv"'})


def _paged_documents(store: Store, tid: str, scope: Scope, *, limit: int, offset: int,
                     status: str | None) -> dict[str, Any]:
    """One page of a transmission's documents in the paging envelope (``total`` of the
    status asked for, else of all)."""
    counts = document_counts(store, tid)
    statuses = [x.strip().upper() for x in status.split(",") if x.strip()] if status else []
    total = counts.count(*statuses) if statuses else counts.total
    rows = documents_page(store, tid, limit=limit, offset=offset, statuses=statuses,
                          scope=scope)
    return paged([iso(r.as_dict()) for r in rows], total, limit, offset)


@router.get("/transmissions/{tid}", summary="One transmission with its timeline, documents "
            "(one page of them, with the ERP's answer), interchanges, outbound payloads, "
            "transport and what happened in words (outcome)",
            responses={404: {"description": "unknown"}})
def transmission(who: Reader, store: StoreDep, tid: str,
                 documents_limit: Annotated[int, Query(
                     ge=0, le=1000, description="documents in this answer (0 … 1000); the "
                     "others through documents_offset or /transmissions/{tid}/documents")] = 50,
                 documents_offset: Offset = 0) -> dict[str, Any]:
    head = transmission_head(store, tid, who.scope)
    if head is None:
        raise HTTPException(404, f"no transmission {tid}")
    t = head.transmission
    docs = (documents_page(store, t.id, limit=documents_limit, offset=documents_offset,
                           scope=who.scope) if documents_limit else [])
    said = outcome(t, head.counts)
    answer: dict[str, Any] = iso({
        "transmission": t.as_dict(), "timeline": head.events,
        "outcome": {"words": said.words, "tone": said.tone},
        "documents": [d.as_dict() for d in docs],
        "documents_total": head.counts.total, "documents_limit": documents_limit,
        "documents_offset": documents_offset,
        "document_counts": head.counts.by_status,
        "erp": {**head.counts.erp} if head.counts.count(DocumentStatus.PUBLISHED) else None,
        "interchanges": head.interchanges,
        "outbound": [o.as_dict() for o in head.outbound],
        "transport": head.transport, "reprocess_chain": head.reprocess_chain,
        "attempts": [a.id for a in head.attempts]})
    return answer


@router.get("/transmissions/{tid}/documents", summary="A transmission's documents, a page at "
            "a time, in the order they were made", response_model=Paged[dict[str, Any]],
            responses={404: {"description": "unknown"}})
def transmission_documents(who: Reader, store: StoreDep, tid: str, limit: Limit = 50,
                           offset: Offset = 0,
                           status: Annotated[str | None, Query(
                               max_length=200, description="only these statuses "
                               "(comma-separated, e.g. FAILED,UNSUPPORTED)")] = None
                           ) -> dict[str, Any]:
    t = _transmission(store, tid, who.scope)
    return _paged_documents(store, t.id, who.scope, limit=limit, offset=offset, status=status)


@router.get("/transmissions/{tid}/raw", summary="The raw payload as received (download)",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       404: {"description": "unknown"},
                       410: {"description": "purged by retention"}})
def raw(who: Reader, gateway: Gateway, tid: str) -> Response:
    t = _transmission(gateway.store, tid, who.scope)
    if t.purged_at is not None or t.sha256 not in gateway.archive:
        raise HTTPException(410, f"the payload of {t.id} is no longer archived")
    name = os.path.basename(t.filename or "") or f"{t.id}.bin"
    # Quotes, backslashes and control characters would break (or end) the header.
    ascii_name = re.sub(r'[\x00-\x1f\x7f"\\]', "_", name.encode("ascii", "replace").decode())
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    blocks: Iterator[bytes] = gateway.archive.blocks(t.sha256)
    return StreamingResponse(blocks, media_type="application/octet-stream",
                             headers={"Content-Disposition": disposition,
                                      "Content-Length": str(t.size)})


@router.get("/transmissions/{tid}/segments", summary="An EDIFACT payload, one segment per "
            "line", response_class=PlainTextResponse,
            responses={404: {"description": "unknown"},
                       409: {"description": "not EDIFACT"},
                       410: {"description": "purged by retention"}})
def segments(who: Reader, gateway: Gateway, tid: str,
             first: Annotated[int | None, Query(
                 ge=1, description="from this segment (1-based, UNA counted); with it only "
                 "count segments are read, not the whole payload")] = None,
             count: Annotated[int, Query(ge=1, le=10000,
                                         description="segments from first")] = 1000
             ) -> Response:
    t = _transmission(gateway.store, tid, who.scope)
    if t.purged_at is not None or t.sha256 not in gateway.archive:
        raise HTTPException(410, f"the payload of {t.id} is no longer archived")
    head = b"".join(first_bytes(gateway.archive.blocks(t.sha256), 64))
    if t.format not in (None, "edifact") or head.lstrip(b"\xef\xbb\xbf \r\n\t")[:3] not in (
            b"UNA", b"UNB"):
        raise HTTPException(409, f"{t.id} is not EDIFACT ({t.format or 'unread'})")
    if first is not None:
        window = raw_window(gateway.archive.blocks(t.sha256), edifact=True, first=first,
                            count=count)
        return PlainTextResponse("".join(line.text + "\n" for line in window.lines),
                                 headers={"X-Segments-More": "true" if window.more
                                          else "false"})
    data: bytes = gateway.archive.get(t.sha256)
    return PlainTextResponse("\n".join(edifact_segments(data)) + "\n")


@router.post("/transmissions/{tid}/reprocess", summary="Reprocess a failed transmission "
             "(a new attempt, with who asked and why)", response_model=ReprocessOut,
             responses={404: {"description": "unknown"},
                        409: {"description": "nothing to reprocess"},
                        410: {"description": "payload purged"}})
def reprocess_route(who: Operator, tid: str, body: ReasonIn, request: Request,
                    gateway: Gateway, audit: Audit) -> dict[str, Any]:
    done = reprocess(gateway, tid, by=who.username, reason=body.reason)
    audit.record(who.username, "transmission.reprocess", f"transmission:{done.transmission_id}",
                 after={"attempt": done.attempt_id, "status": done.status,
                        "reason": body.reason}, remote=remote(request))
    return asdict(done)


@router.get("/documents/{document_id}", summary="A document's canonical JSON",
            responses={404: {"description": "unknown"}})
def document(who: Reader, store: StoreDep, document_id: str) -> dict[str, Any]:
    meta = document_meta(store, document_id, who.scope)
    if meta is None:
        raise HTTPException(404, f"no document {document_id}")
    return {"document": {k: iso(v) for k, v in meta.items()},
            "canonical": store.document_payload(document_id)}


@router.get("/documents/{document_id}/view", summary="A document as a person reads it: "
            "parties, dates, lines (item, description, quantity, unit, price, amount) and "
            "totals", responses={404: {"description": "unknown"}})
def document_view(who: Reader, store: StoreDep, document_id: str) -> dict[str, Any]:
    row = document_of(store, document_id, who.scope)
    if row is None:
        raise HTTPException(404, f"no document {document_id}")
    return {"document": iso(row.as_dict()),
            "view": readable(payload_of(store, row.id)).as_dict()}
