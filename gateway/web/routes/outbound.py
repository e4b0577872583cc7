"""``POST /api/outbound``: hand a canonical document (the ERP's JSON) to a partner over HTTP,
as ``edigw send`` does from the command line (operators and admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.channels.intake import OutboundIntake, OutboundResult
from gateway.channels.intake_routes import distributor_of
from gateway.core.errors import StoreError
from gateway.web.deps import Audit, Gateway, Operator, remote
from gateway.web.errors import ProblemResponse, problem
from gateway.web.paging import PartnerFilter, partner_named

router = APIRouter(tags=["outbound"])

#: The largest document this route takes (the server's ``max_json`` is for forms and JSON
#: requests; a price list is bigger).
MAX_DOCUMENT = 32 * 1024 * 1024
BODY_LIMITS = [(r"/api/outbound", MAX_DOCUMENT)]

#: The media type of a dry run's bytes, by the mapping's syntax.
CONTENT_TYPES = {"edifact": "application/EDIFACT", "xml": "application/xml",
                 "pdf": "application/pdf", "csv": "text/csv; charset=utf-8"}

RESULT_EXAMPLE = {"transmission_id": "01a2508…", "status": "RENDERED", "partner_id": "acme",
                  "doc_type": "invoice", "number": "INV-1", "mapping": "eancom-invoic-d96a",
                  "stage": None, "reason": None, "repeat": False, "outbound_id": "01a2…",
                  "filename": "invoice-INV-1-…-7.edi", "control_ref": "7"}


class OutboundResultOut(BaseModel):
    """A document received for one partner: its transmission and what became of it."""

    transmission_id: str
    status: str = Field(description="the transmission's: RENDERED, or FAILED when refused")
    partner_id: str | None = None
    doc_type: str | None = None
    number: str | None = None
    mapping: str | None = None
    stage: str | None = None
    reason: str | None = None
    repeat: bool = Field(False, description="the same document was sent before")
    outbound_id: str | None = None
    filename: str | None = None
    control_ref: str | None = None


class DistributionOut(BaseModel):
    """A price list sent to every partner subscribing to it: one result each."""

    results: list[OutboundResultOut]


def _intake(gateway: Any) -> OutboundIntake:
    intake: OutboundIntake | None = getattr(gateway, "intake", None)
    if intake is None:
        raise HTTPException(503, "this gateway has no outbound intake")
    return intake


def _result(result: OutboundResult) -> dict[str, Any]:
    return partner_named(result.as_dict())


def _refused(request: Request, result: OutboundResult) -> ProblemResponse:
    """A document refused (recorded FAILED): a problem document whose members are the
    result's (its own status as ``transmission_status``: ``status`` is the HTTP one)."""
    members = _result(result)
    members["transmission_status"] = members.pop("status")
    return problem(request, 422, f"{result.stage}: {result.reason}", kind="document-refused",
                   **members)


@router.post(
    "/outbound", status_code=202,
    summary="Send a canonical document (invoice, order response, despatch advice, price "
            "list) to a partner",
    description="The body is the document's canonical JSON (`schema` says its type). It is "
                "received (archived and recorded) first, then checked, rendered in the "
                "partner's format (or `format`: an outbound mapping id or a syntax: ubl, "
                "cii, factur-x, csv, edifact) and queued for delivery. A refused document "
                "is still recorded, FAILED with its stage and reason (422). `dry_run` "
                "records nothing and answers the rendered bytes. `price_list`: send a price "
                "list to every partner subscribing to that list.",
    responses={202: {"description": "received and rendered; delivery follows (a price "
                                    "list: one result per subscriber)",
                     "model": OutboundResultOut | DistributionOut,
                     "content": {"application/json": {"example": RESULT_EXAMPLE}}},
               200: {"description": "dry run: the rendered bytes",
                     "content": {t: {} for t in CONTENT_TYPES.values()}},
               400: {"description": "neither partner nor price_list"},
               422: {"description": "refused (recorded FAILED): a problem document of type "
                                    "document-refused with the result's members (stage, "
                                    "reason, transmission_id …)"},
               503: {"description": "the store cannot record it now; try again"}})
async def send_outbound(
        who: Operator, request: Request, gateway: Gateway, audit: Audit,
        partner: PartnerFilter,
        fmt: Annotated[str | None, Query(alias="format", max_length=64)] = None,
        dry_run: bool = False,
        price_list: Annotated[str | None, Query(max_length=128)] = None) -> Response:
    intake = _intake(gateway)
    data = await request.body()
    if not partner and not price_list:
        raise HTTPException(400, "give partner (or price_list for a price list's subscribers)")
    if dry_run:
        return await run_in_threadpool(_dry_run, request, gateway, intake, data, partner,
                                       price_list, fmt)
    try:
        if partner:
            results = [await run_in_threadpool(
                lambda: intake.accept(data, origin="api", ref=None, partner=partner, fmt=fmt))]
        else:
            assert price_list is not None
            lists = distributor_of(gateway)
            if lists is None:
                raise HTTPException(409, "price lists are not distributed by this gateway")
            results = await run_in_threadpool(
                lambda: lists.distribute(data, list_id=price_list, origin="api", ref=None))
            if not results:
                raise HTTPException(422, f"no partner subscribes to price list "
                                         f"{price_list!r}")
    except StoreError as exc:
        raise HTTPException(503, f"not recorded, try again: {exc}") from exc
    for result in results:
        audit.record(who.username, "outbound.send", f"transmission:{result.transmission_id}",
                     after={"partner": result.partner_id, "doc_type": result.doc_type,
                            "number": result.number, "status": result.status,
                            "price_list": price_list, "format": fmt},
                     remote=remote(request))
    if not partner:
        body = {"results": [_result(r) for r in results]}
        failed = [r for r in results if r.failed]
        if failed:
            return problem(request, 422, "; ".join(f"{r.partner_id}: {r.stage}: {r.reason}"
                                                   for r in failed),
                           kind="document-refused", results=body["results"])
        return JSONResponse(body, status_code=202)
    if results[0].failed:
        return _refused(request, results[0])
    return JSONResponse(_result(results[0]), status_code=202)


def _dry_run(request: Request, gateway: Any, intake: OutboundIntake, data: bytes,
             partner: str | None, price_list: str | None, fmt: str | None) -> Response:
    headers: dict[str, str] = {}
    if not partner:
        subscribers = sorted(p.id for p in gateway.partners
                             if p.enabled and price_list in p.outbound.price_lists)
        if not subscribers:
            raise HTTPException(422, f"no partner subscribes to price list {price_list!r}")
        partner = subscribers[0]
    result = intake.dry_run(data, partner=partner, fmt=fmt)
    if result.failed:
        return _refused(request, result)
    mapping = intake.mappings.mappings.get(result.mapping or "")
    media = CONTENT_TYPES.get(mapping.syntax if mapping else "", "application/octet-stream")
    headers["X-Edigw-Partner"] = result.partner_id or ""
    headers["X-Edigw-Mapping"] = result.mapping or ""
    return Response(result.rendered or b"", media_type=media, headers=headers)
