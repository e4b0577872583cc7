"""Statistics: volume, failures, order value and electronic share per partner and channel
over time (see ``gateway.store.read.stats``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.core import clock
from gateway.store.read import stats
from gateway.web.deps import StoreDep, Viewer, utc

router = APIRouter(tags=["stats"])


class StatsOut(BaseModel):
    since: str
    until: str
    bucket: Literal["day", "week"]
    volume: list[dict[str, Any]]
    value: list[dict[str, Any]]
    electronic_share: list[dict[str, Any]]


@router.get("/stats", summary="Volume, failures, order value and electronic share per "
            "partner and channel over time", response_model=StatsOut)
def statistics(who: Viewer, store: StoreDep, since: dt.datetime | None = None,
               until: dt.datetime | None = None, bucket: Literal["day", "week"] = "day",
               partner: str | None = None) -> dict[str, Any]:
    end = utc(until) or clock.now().astimezone(dt.UTC)
    start = utc(since) or end - dt.timedelta(weeks=12)
    return {"since": start.isoformat(), "until": end.isoformat(), "bucket": bucket,
            "volume": [r.as_dict() for r in stats.volume(store, start, end, bucket, partner)],
            "value": [r.as_dict() for r in stats.value(store, start, end, bucket, partner)],
            "electronic_share": [r.as_dict() for r in stats.electronic_share(
                store, start, end, "week", partner)]}
