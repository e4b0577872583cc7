"""The transmission log, one transmission's view, its payload (raw or as EDIFACT segments),
reprocessing, and a document's canonical JSON.

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
from gateway.core.zone import zone_of
from gateway.store.db import Store
from gateway.store.read.log_export import log_csv
from gateway.store.read.transmissions import (
    LogQuery,
    TransmissionView,
    document_meta,
    transmission_page,
    transmission_view,
)
from gateway.store.records import TransmissionRow
from gateway.web.deps import Audit, Gateway, Operator, Reader, StoreDep, iso, remote, utc
from gateway.web.numbers import Offset
from gateway.web.paging import PartnerFilter
from gateway.web.segments import edifact_segments

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


def view_as_dict(view: TransmissionView) -> dict[str, Any]:
    """A transmission's view as the API answers it (datetimes as ISO 8601 text)."""
    shown: dict[str, Any] = iso({
                "transmission": view.transmission.as_dict(), "timeline": view.events,
                "documents": [d.as_dict() for d in view.documents], "erp": view.erp,
                "interchanges": view.interchanges,
                "outbound": [o.as_dict() for o in view.outbound],
                "transport": view.transport, "reprocess_chain": view.reprocess_chain,
                "attempts": [a.id for a in view.attempts]})
    return shown


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
    page = transmission_page(store, query, limit=limit, offset=offset, scope=who.scope)
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


@router.get("/transmissions/{tid}", summary="One transmission with its timeline, documents "
            "(with the ERP's answer), interchanges, outbound payloads and transport",
            responses={404: {"description": "unknown"}})
def transmission(who: Reader, store: StoreDep, tid: str) -> dict[str, Any]:
    view = transmission_view(store, tid, who.scope)
    if view is None:
        raise HTTPException(404, f"no transmission {tid}")
    return view_as_dict(view)


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
def segments(who: Reader, gateway: Gateway, tid: str) -> Response:
    t = _transmission(gateway.store, tid, who.scope)
    if t.purged_at is not None or t.sha256 not in gateway.archive:
        raise HTTPException(410, f"the payload of {t.id} is no longer archived")
    data: bytes = gateway.archive.get(t.sha256)
    head = data.lstrip(b"\xef\xbb\xbf \r\n\t")[:3]
    if t.format not in (None, "edifact") or head not in (b"UNA", b"UNB"):
        raise HTTPException(409, f"{t.id} is not EDIFACT ({t.format or 'unread'})")
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
