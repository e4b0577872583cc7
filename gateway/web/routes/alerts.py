"""Alerts: the list (viewer, paged and filtered), acknowledging and resolving one or many
(operator, each audited)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from gateway.core.status import AlertState
from gateway.tracker.alerts import AlertBook
from gateway.web.deps import Audit, Operator, StoreDep, Viewer, remote, utc
from gateway.web.numbers import RowId
from gateway.web.paging import Limit, Offset, Paged, PartnerFilter, paged

router = APIRouter(tags=["alerts"])

#: Alerts acted on by one bulk request, at most.
BULK_MAX = 1000
STATUSES = tuple(str(x) for x in AlertState)


class NoteIn(BaseModel):
    note: str | None = None


class BulkIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=BULK_MAX,
                           description="the alerts to act on")
    note: str | None = Field(default=None, description="why (kept on each alert)")


class AlertOut(BaseModel):
    id: int
    kind: str
    partner_id: str | None = None
    partner: str | None = Field(default=None, description="the same as partner_id (older "
                                "name)")
    key: str
    status: str
    summary: str
    detail: dict[str, Any]
    opened_at: str
    last_seen_at: str
    occurrences: int
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    note: str | None = None
    mailed_at: str | None = None


class Refused(BaseModel):
    id: int
    reason: str


class BulkOut(BaseModel):
    done: list[AlertOut]
    refused: list[Refused]


def _shown(alert: Any) -> dict[str, Any]:
    out: dict[str, Any] = alert.as_dict()
    out["partner_id"] = out["partner"]
    return out


@router.get("/alerts", summary="Alerts, newest first (paged)", response_model=Paged[AlertOut])
def alerts(who: Viewer, store: StoreDep, partner_id: PartnerFilter,
           status: Annotated[str | None, Query(
               description="open, acknowledged, resolved; several comma-separated")] = None,
           kind: Annotated[str | None, Query(max_length=64,
                                             description="quarantine, failure, gap …")] = None,
           since: Annotated[dt.datetime | None, Query(
               description="seen at or after this time (ISO 8601)")] = None,
           limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    wanted = [x.strip().lower() for x in status.split(",") if x.strip()] if status else []
    unknown = [x for x in wanted if x not in STATUSES]
    if unknown:
        raise HTTPException(422, f"unknown alert status {', '.join(unknown)}: one of "
                                 f"{', '.join(STATUSES)}")
    book = AlertBook(store)
    items = book.list(wanted, partner_id, kind, limit, offset=offset, since=utc(since))
    total = book.count(wanted, partner_id, kind, since=utc(since))
    return paged([_shown(a) for a in items], total, limit, offset)


def _alert_action(action: str) -> Callable[..., dict[str, Any]]:
    def act(who: Operator, alert_id: RowId, body: NoteIn, request: Request,
            store: StoreDep, audit: Audit) -> dict[str, Any]:
        book = AlertBook(store)
        before = book.get(alert_id)
        after = book.acknowledge(alert_id, who.username, body.note) if action == "acknowledge" \
            else book.resolve(alert_id, who.username, body.note)
        audit.record(who.username, f"alert.{action}", f"alert:{alert_id}",
                     before={"status": before.status},
                     after={"status": after.status, "note": body.note}, remote=remote(request))
        return _shown(after)

    act.__name__ = f"alert_{action}"
    return act


def _bulk_action(action: str) -> Callable[..., dict[str, Any]]:
    def act(who: Operator, body: BulkIn, request: Request, store: StoreDep,
            audit: Audit) -> dict[str, Any]:
        result = AlertBook(store).act_on_many(body.ids, who.username, body.note, action=action)
        for before, after in result.done:
            audit.record(who.username, f"alert.{action}", f"alert:{after.id}",
                         before={"status": before.status},
                         after={"status": after.status, "note": body.note, "bulk": True},
                         remote=remote(request))
        return {"done": [_shown(after) for _before, after in result.done],
                "refused": [{"id": i, "reason": why} for i, why in result.refused]}

    act.__name__ = f"alerts_{action}"
    return act


for _action in ("acknowledge", "resolve"):
    router.post(f"/alerts/{_action}", summary=f"{_action.capitalize()} several alerts (each "
                "audited; those that cannot be are listed as refused)",
                response_model=BulkOut)(_bulk_action(_action))
    router.post(f"/alerts/{{alert_id}}/{_action}", summary=f"{_action.capitalize()} an alert",
                response_model=AlertOut,
                responses={404: {"description": "unknown"},
                           409: {"description": "not allowed in its status"}}
                )(_alert_action(_action))
