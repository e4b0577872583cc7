"""Where is order X: the tracker's verdict with its evidence, and the matching documents.

Open to a client user (``Reader``): its partner is the one asked about, whatever the query
says, and the evidence stays within that partner's own rows (``Scope``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from gateway.core.scope import Scope
from gateway.tracker import explain as tracker_explain
from gateway.web.deps import ConsoleGateway, Gateway, Reader, utc

router = APIRouter(tags=["search"])


class SearchOut(BaseModel):
    verdict: str
    summary: str
    evidence: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    transmissions: list[dict[str, Any]]
    query: dict[str, Any]
    hits: list[dict[str, Any]]


@router.get("/search", summary="Where is order X: the tracker's verdict with its evidence",
            response_model=SearchOut, responses={422: {"description": "no criterion given"}})
def search(who: Reader, gateway: Gateway, number: str | None = None,
           partner: str | None = None, interchange: str | None = None,
           file: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, doc_type: str | None = None,
           direction: Annotated[str | None, Query(
               pattern="^(in|out)$", description="out: a document edigw sends (was it "
               "delivered?)")] = None) -> dict[str, Any]:
    if not any((number, partner, interchange, file)):
        raise HTTPException(422, "give a number, partner, interchange or file")
    return _explained(gateway, dict(number=number, partner=partner, interchange_ref=interchange,
                                    filename=file, since=utc(since), until=utc(until),
                                    doc_type=doc_type), direction, who.scope)


@router.get("/explain", summary="Where is order X, was invoice Y delivered: the tracker's "
            "verdict with its evidence (as edigw explain)", response_model=SearchOut,
            responses={422: {"description": "no criterion given"}})
def explain(who: Reader, gateway: Gateway, partner: str | None = None,
            order: str | None = None, invoice: str | None = None,
            despatch: str | None = None, price_list: str | None = None,
            order_response: str | None = None, number: str | None = None,
            interchange: str | None = None, file: str | None = None,
            since: dt.datetime | None = None, until: dt.datetime | None = None,
            direction: Annotated[str | None, Query(pattern="^(in|out)$")] = None
            ) -> dict[str, Any]:
    numbers = [(t, n) for t, n in (("order", order), ("invoice", invoice),
                                    ("despatch-advice", despatch), ("price-list", price_list),
                                    ("order-response", order_response), (None, number)) if n]
    if len(numbers) > 1:
        raise HTTPException(422, "give one of order, invoice, despatch, price_list, "
                                 "order_response and number")
    if not (numbers or partner or interchange or file):
        raise HTTPException(422, "give a number, partner, interchange or file")
    doc_type, wanted = numbers[0] if numbers else (None, None)
    return _explained(gateway, dict(number=wanted, partner=partner, interchange_ref=interchange,
                                    filename=file, since=utc(since), until=utc(until),
                                    doc_type=doc_type), direction, who.scope)


def _explained(gateway: ConsoleGateway, criteria: dict[str, Any], direction: str | None,
               scope: Scope) -> dict[str, Any]:
    verdict = tracker_explain.explain(gateway.store, gateway.partners, gateway.settings,
                                      archive=gateway.archive, direction=direction,
                                      scope=scope, **criteria)
    hits = tracker_explain.search(gateway.store, scope=scope, **criteria)
    return {**verdict.as_dict(), "hits": [h.as_dict() for h in hits]}
