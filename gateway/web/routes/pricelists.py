"""Price lists: per list and partner, the version sent, the version held (its copy
delivered) and when, and the copies that failed — ``GET /api/price-lists`` (viewer) and the
console page ``/price-lists`` (``price_lists_page``, mounted by ``gateway.web.pages``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.channels.pricelists import Standing, price_list_standings
from gateway.web.deps import Gateway, Viewer
from gateway.web.paging import Limit, Offset, Paged, PartnerFilter, page_of, partner_named

if TYPE_CHECKING:
    from starlette.responses import Response

    from gateway.web.pages import Page

router = APIRouter(tags=["price lists"])


class VersionOut(BaseModel):
    number: str | None = None
    at: str | None = None
    transmission_id: str


class FailedOut(BaseModel):
    transmission_id: str
    at: str | None = None
    stage: str | None = None
    reason: str | None = None
    distribution: str


class StandingOut(BaseModel):
    list_: str = Field(alias="list")
    partner_id: str
    subscribed: bool
    enabled: bool
    mode: str | None = None
    sent: VersionOut | None = None
    held: VersionOut | None = None
    failed: list[FailedOut]


def standings(gateway: Any, list_id: str | None) -> list[Standing]:
    """What the page and the API show, from the gateway's store and partner profiles."""
    return price_list_standings(gateway.store, list(gateway.partners), list_id or None)


@router.get("/price-lists", summary="Which partner holds which version of each price list",
            response_model=Paged[StandingOut])
def price_lists(who: Viewer, gateway: Gateway, partner_id: PartnerFilter,
                list_id: Annotated[str | None, Query(alias="list", max_length=128)] = None,
                limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    rows = [partner_named(s.as_dict()) for s in standings(gateway, list_id)
            if partner_id is None or s.partner_id == partner_id]
    return page_of(rows, limit, offset)


def price_lists_page(p: Page) -> Response:
    """The console page: one table per list, failed copies linked to their transmissions."""
    list_id = p.request.query_params.get("list") or None
    found = standings(p.gateway, list_id)
    lists: dict[str, list[Standing]] = {}
    for s in found:
        lists.setdefault(s.list_id, []).append(s)
    return p.render("price_lists.html", lists=lists, list_id=list_id)
