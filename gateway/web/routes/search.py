"""Where is order X: the tracker's verdict with its evidence, and the matching documents."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from gateway.tracker import explain as tracker_explain
from gateway.web.deps import Gateway, Viewer, utc

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
def search(who: Viewer, gateway: Gateway, number: str | None = None,
           partner: str | None = None, interchange: str | None = None,
           file: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, doc_type: str | None = None) -> dict[str, Any]:
    if not any((number, partner, interchange, file)):
        raise HTTPException(422, "give a number, partner, interchange or file")
    criteria: dict[str, Any] = dict(number=number, partner=partner, interchange_ref=interchange,
                                    filename=file, since=utc(since), until=utc(until),
                                    doc_type=doc_type)
    verdict = tracker_explain.explain(gateway.store, gateway.partners, gateway.settings,
                                      archive=gateway.archive, **criteria)
    hits = tracker_explain.search(gateway.store, **criteria)
    return {**verdict.as_dict(), "hits": [h.as_dict() for h in hits]}
