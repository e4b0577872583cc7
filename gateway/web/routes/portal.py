"""The client portal's API, under ``/api/portal`` (role ``client`` only: a partner's own
user; staff get 403 and use the rest of the API). Every read is within the client's
``Scope``: another partner's id answers 404, as one that does not exist.

- ``POST /api/portal/upload``: a file for the client's partner, as multipart (field
  ``file``) or as the raw body with ``?filename=``; received first (201 once stored), then
  processed;
- ``GET /api/portal/price-list``: the current price list in the partner's format;
- ``GET /api/portal/documents`` and ``GET /api/portal/documents/{ref}/download``: what was
  sent to the partner, and its bytes as sent;
- ``GET /api/portal/demo`` (and ``/demo/samples/{mapping}``): sample files of its document
  types and the result of its latest files, line by line;
- ``GET /api/portal/search?number=``: where is my order, in the client's words.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.channels.portal.inbox import (
    MAX_UPLOAD,
    Upload,
    Uploaded,
    UploadRefused,
    UploadTooLarge,
)
from gateway.core.errors import StoreError
from gateway.core.status import Role
from gateway.store.read import portal as q
from gateway.web import portal_data as data
from gateway.web import portal_words as words
from gateway.web.auth import Principal
from gateway.web.deps import Gateway, StoreDep, guard, iso
from gateway.web.paging import Offset, Paged, PartnerFilter, paged
from gateway.web.portal import STAFF_REFUSAL, attachment, client_sentence

router = APIRouter(prefix="/portal", tags=["client portal"])

#: The upload routes take files bigger than the server's ``max_json``.
BODY_LIMITS = [(r"/api/portal/upload", data.UPLOAD_BODY),
               (r"/portal/upload", data.UPLOAD_BODY)]


def client_only(who: Annotated[Principal, Depends(guard(Role.CLIENT))],
                partner_id: PartnerFilter) -> Principal:
    """A client user bound to its partner; 403 for staff, 404 for a ``partner_id`` filter
    (or the older ``partner``) naming another partner (as on the shared routes)."""
    if not who.is_client or not who.partner:
        raise HTTPException(403, STAFF_REFUSAL)
    who.scope.narrow(partner_id)  # OutOfScope: 404
    return who


Client = Annotated[Principal, Depends(client_only)]


class UploadOut(BaseModel):
    transmission_id: str
    upload_id: str
    filename: str
    size: int
    duplicate_of: str | None = Field(description="the transmission of the same bytes sent "
                                                 "before, if any")
    partner_id: str


class SentOut(BaseModel):
    id: str
    kind: str = Field(description="contrl, order-response, invoice, price-list …")
    label: str = Field(description="the kind, in words")
    filename: str
    sha256: str
    size: int
    status: str
    status_words: str
    created_at: str
    sent_at: str | None
    delivered_at: str | None
    transmission_id: str | None
    direction: str | None
    business_number: str | None
    control_ref: str | None
    download: str = Field(description="the API path of its bytes, as sent")


class SampleOut(BaseModel):
    mapping: str
    doc_type: str
    format: str
    description: str
    filename: str
    download: str


class DemoDocumentOut(BaseModel):
    id: str
    doc_type: str | None
    number: str | None
    status: str
    status_words: str
    reason: str | None
    lines: list[Any]
    more_lines: int


class DemoResultOut(BaseModel):
    transmission_id: str
    filename: str | None
    received_at: str
    status: str
    status_words: str
    reason: str | None
    documents: list[DemoDocumentOut]


class DemoOut(BaseModel):
    partner_id: str | None
    state: str = Field(description="the partner's onboarding state (draft, test, live, "
                                   "suspended)")
    samples: list[SampleOut]
    results: list[DemoResultOut]


class PortalSearchOut(BaseModel):
    number: str
    verdict: str
    sentence: str = Field(description="the verdict, in the client's words")
    transmissions: list[str]


@router.post("/upload", status_code=201, response_model=UploadOut,
             summary="Send a file for your partner (received first, then processed)",
             responses={400: {"description": "empty, or no file"},
                        413: {"description": "over the portal's limit"},
                        503: {"description": "not stored: nothing received, send again"}})
async def upload(who: Client, request: Request, gateway: Gateway,
                 filename: Annotated[str | None, Query(max_length=255)] = None
                 ) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5)
        field = form.get("file")
        if not isinstance(field, UploadFile):
            raise HTTPException(400, "no file: send it as the multipart field 'file'")
        body = await field.read(MAX_UPLOAD + 1)
        name = filename or field.filename
    else:
        body, name = await request.body(), filename
    item = Upload(partner_id=who.partner or "", uploaded_by=who.username, filename=name,
                  data=body)
    try:
        received: Uploaded = await run_in_threadpool(
            lambda: data.inbox_of(gateway).accept(item))
    except UploadTooLarge as exc:
        raise HTTPException(413, exc.reason) from exc
    except UploadRefused as exc:
        raise HTTPException(400, exc.reason) from exc
    except StoreError as exc:
        raise HTTPException(503, "not stored, so not received: send it again") from exc
    return {"transmission_id": received.transmission_id, "upload_id": received.upload_id,
            "filename": received.filename, "size": received.size,
            "duplicate_of": received.duplicate_of, "partner_id": who.partner}


@router.get("/price-list", summary="Your current price list, in your format",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       404: {"description": "no price list yet"}})
def price_list(who: Client, gateway: Gateway) -> Response:
    try:
        found = data.current_price_list(gateway, who.scope)
    except data.NoPriceList as exc:
        raise HTTPException(404, f"no price list yet: {exc.reason}") from exc
    response = attachment(found.data, found.filename, found.media_type)
    response.headers["X-Edigw-Price-List-Source"] = found.source
    return response


def _sent(doc: q.SentDocument) -> dict[str, Any]:
    w = words.sent_words(doc.status)
    return {**doc.as_dict(), "label": words.kind_label(doc.kind), "status_words": w.label,
            "download": f"/api/portal/documents/{doc.id}/download"}


@router.get("/documents", summary="Acknowledgements, order responses, invoices and price "
            "lists sent to you, newest first", response_model=Paged[SentOut])
def documents(who: Client, store: StoreDep, kind: str | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              offset: Offset = 0) -> dict[str, Any]:
    kinds = [k.strip() for k in kind.split(",") if k.strip()] if kind else []
    return paged([_sent(d) for d in q.sent_documents(store, who.scope, kinds=kinds,
                                                     limit=limit, offset=offset)],
                 q.sent_document_count(store, who.scope, kinds=kinds), limit, offset)


@router.get("/documents/{ref}/download", summary="A document sent to you, as sent",
            response_class=Response,
            responses={404: {"description": "not one of yours"},
                       410: {"description": "no longer kept"}})
def document_download(who: Client, gateway: Gateway, ref: str) -> Response:
    doc = q.sent_document(gateway.store, who.scope, ref)
    if doc is None:
        raise HTTPException(404, f"no document {ref} sent to you")
    if doc.sha256 not in gateway.archive:
        raise HTTPException(410, f"{doc.filename} is no longer kept")
    return attachment(gateway.archive.get(doc.sha256), doc.filename,
                      data.media_type(doc.filename))


@router.get("/demo", summary="Sample files of your document types and the result of your "
            "latest files, line by line", response_model=DemoOut)
def demo(who: Client, gateway: Gateway,
         limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    partner = gateway.partners.get(who.partner)
    samples = data.samples_for(gateway, partner) if partner is not None else []
    results = []
    for f in data.demo_results(gateway, who.scope, limit=limit):
        t = f.transmission
        tw = words.transmission_words(t.status, t.reason)
        results.append(iso({
            "transmission_id": t.id, "filename": t.filename, "received_at": t.received_at,
            "status": t.status, "status_words": tw.label,
            "reason": words.plain_reason(t.reason) if tw.tone == "bad" else None,
            "documents": [{
                "id": d.document.id, "doc_type": d.document.doc_type,
                "number": d.document.business_number, "status": d.document.status,
                "status_words": words.document_words(d.document.status,
                                                     d.document.erp_status).label,
                "reason": words.plain_reason(d.document.erp_reason or d.document.reason),
                "lines": d.lines, "more_lines": d.more_lines} for d in f.documents]}))
    return {"partner_id": who.partner, "state": data.partner_state(partner),
            "samples": [{"mapping": s.mapping_id, "doc_type": s.doc_type, "format": s.format,
                         "description": s.description, "filename": s.filename,
                         "download": f"/api/portal/demo/samples/{s.mapping_id}"}
                        for s in samples],
            "results": results}


@router.get("/demo/samples/{mapping}", summary="One sample file, as if you sent it",
            response_class=Response, responses={404: {"description": "no such sample"}})
def demo_sample(who: Client, gateway: Gateway, mapping: str) -> Response:
    partner = gateway.partners.get(who.partner)
    sample = next((s for s in (data.samples_for(gateway, partner) if partner else [])
                   if s.mapping_id == mapping), None)
    if sample is None:
        raise HTTPException(404, f"no sample {mapping} for you")
    return attachment(data.sample_bytes(sample, partner), sample.filename,
                      data.media_type(sample.filename))


@router.get("/search", summary="Where is my order N: the tracker's verdict in your words",
            response_model=PortalSearchOut)
def search(who: Client, gateway: Gateway,
           number: Annotated[str, Query(min_length=1, max_length=128)]) -> dict[str, Any]:
    from gateway.tracker.explain import explain

    found = explain(gateway.store, gateway.partners, gateway.settings, number=number,
                    archive=gateway.archive, scope=who.scope)
    return {"number": number, "verdict": found.verdict,
            "sentence": client_sentence(found, number),
            "transmissions": [t.id for t in found.transmissions]}
