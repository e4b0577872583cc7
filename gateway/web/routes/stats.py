"""Statistics: volume, failures, order value and electronic share per partner and channel
over time (see ``gateway.store.read.stats``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.core import clock
from gateway.store.read import stats
from gateway.web.deps import StoreDep, Viewer, utc
from gateway.web.paging import PartnerFilter, partner_named

router = APIRouter(tags=["stats"])


class VolumeOut(BaseModel):
    bucket: str = Field(description="the day or week's first day (ISO 8601 date)")
    partner_id: str | None
    channel: str
    format: str | None
    transmissions: int
    documents: int
    failures: int = Field(description="transmissions FAILED or QUARANTINED")


class ValueOut(BaseModel):
    bucket: str
    partner_id: str
    currency: str | None
    orders: int
    amount: str = Field(description="a decimal, as text")


class ShareOut(BaseModel):
    bucket: str = Field(description="the week's first day")
    orders: int
    electronic: int
    manual: int
    share: float | None = Field(description="electronic / orders (0 … 1); null without orders")


class StatsOut(BaseModel):
    since: str
    until: str
    bucket: Literal["day", "week"]
    volume: list[VolumeOut]
    value: list[ValueOut]
    electronic_share: list[ShareOut]


@router.get("/stats", summary="Volume, failures, order value and electronic share per "
            "partner and channel over time", response_model=StatsOut)
def statistics(who: Viewer, store: StoreDep, partner_id: PartnerFilter, since: dt.datetime | None = None,
               until: dt.datetime | None = None, bucket: Literal["day", "week"] = "day",
               ) -> dict[str, Any]:
    end = utc(until) or clock.now().astimezone(dt.UTC)
    start = utc(since) or end - dt.timedelta(weeks=12)
    return {"since": start.isoformat(), "until": end.isoformat(), "bucket": bucket,
            "volume": [partner_named(r.as_dict())
                       for r in stats.volume(store, start, end, bucket, partner_id)],
            "value": [partner_named(r.as_dict())
                      for r in stats.value(store, start, end, bucket, partner_id)],
            "electronic_share": [r.as_dict() for r in stats.electronic_share(
                store, start, end, "week", partner_id)]}
