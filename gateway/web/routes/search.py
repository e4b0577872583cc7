"""Where is order X: the one search (``?q=``), the tracker's verdict about what it matched,
with the matches first and the evidence after.

``GET /api/search?q=`` recognises the text (``gateway.tracker.search``: a document number,
a file name, an interchange reference, a transmission or document id, an AS2 Message-ID)
and says which kind matched; the older criteria (``number``, ``interchange``, ``file``,
dates, ``doc_type``, ``direction``) still work. ``GET /api/explain`` asks by document type
(as ``edigw explain``). The partner is ``partner_id`` (or the older ``partner``); an
unknown one answers 404 naming it.

Open to a client user (``Reader``): its partner is the one asked about, whatever the query
says, and the evidence stays within that partner's own rows (``Scope``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from gateway.core.scope import Scope
from gateway.tracker import explain as tracker_explain
from gateway.tracker.search import answer
from gateway.tracker.verdicts import NoSuchPartner
from gateway.web.deps import ConsoleGateway, Gateway, Reader, utc
from gateway.web.paging import PartnerFilter

router = APIRouter(tags=["search"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown partner (no profile, nothing on record)"},
              422: {"description": "no criterion given"}}


class SearchOut(BaseModel):
    """The matches first, then the verdict (in words; ``code`` for scripts) and evidence."""

    model_config = ConfigDict(extra="allow")

    q: str | None = None
    matched: str | None = None
    matched_as: str | None = None
    also_matched: list[str] = []
    hits: list[dict[str, Any]]
    verdict: str
    code: str
    outcome: str
    exit_code: int
    summary: str
    evidence: list[dict[str, Any]]
    more_evidence: int
    documents: list[dict[str, Any]]
    transmissions: list[dict[str, Any]]
    query: dict[str, Any]


@router.get("/search", summary="Where is order X: what the text matched and the tracker's "
            "verdict about it", response_model=SearchOut, responses=_NOT_FOUND)
def search(who: Reader, gateway: Gateway, partner: PartnerFilter,
           q: Annotated[str | None, Query(max_length=998, description=(
               "a document number, file name, interchange reference, transmission or "
               "document id, or AS2 Message-ID"))] = None,
           number: str | None = None, interchange: str | None = None,
           file: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, doc_type: str | None = None,
           direction: Annotated[str | None, Query(
               pattern="^(in|out)$", description="out: a document edigw sends (was it "
               "delivered?)")] = None) -> dict[str, Any]:
    if q and q.strip():
        try:
            return answer(gateway.store, gateway.partners, gateway.settings, q,
                          partner=partner, scope=who.scope, archive=gateway.archive).as_dict()
        except NoSuchPartner as exc:
            raise HTTPException(404, str(exc)) from None
    if not any((number, partner, interchange, file)):
        raise HTTPException(422, "give q (a number, file name, reference or id), or a "
                                 "number, partner, interchange or file")
    return _explained(gateway, dict(number=number, partner=partner, interchange_ref=interchange,
                                    filename=file, since=utc(since), until=utc(until),
                                    doc_type=doc_type), direction, who.scope)


@router.get("/explain", summary="Where is order X, was invoice Y delivered: the tracker's "
            "verdict with its evidence (as edigw explain)", response_model=SearchOut,
            responses=_NOT_FOUND)
def explain(who: Reader, gateway: Gateway, partner: PartnerFilter,
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
    try:
        verdict = tracker_explain.explain(gateway.store, gateway.partners, gateway.settings,
                                          archive=gateway.archive, direction=direction,
                                          scope=scope, **criteria)
    except NoSuchPartner as exc:
        raise HTTPException(404, str(exc)) from None
    return verdict.as_dict()
