"""Alerts: the list (viewer), acknowledging and resolving one (operator, audited)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from gateway.tracker.alerts import AlertBook
from gateway.web.deps import Audit, Operator, StoreDep, Viewer, remote
from gateway.web.numbers import RowId

router = APIRouter(tags=["alerts"])


class NoteIn(BaseModel):
    note: str | None = None


class AlertOut(BaseModel):
    id: int
    kind: str
    partner: str | None = None
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


@router.get("/alerts", summary="Alerts, newest first", response_model=list[AlertOut])
def alerts(who: Viewer, store: StoreDep, status: str | None = None, partner: str | None = None,
           kind: str | None = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    wanted = [x.strip() for x in status.split(",")] if status else None
    return [a.as_dict() for a in AlertBook(store).list(wanted, partner, kind, limit)]


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
        shown: dict[str, Any] = after.as_dict()
        return shown

    act.__name__ = f"alert_{action}"
    return act


for _action in ("acknowledge", "resolve"):
    router.post(f"/alerts/{{alert_id}}/{_action}", summary=f"{_action.capitalize()} an alert",
                response_model=AlertOut,
                responses={404: {"description": "unknown"},
                           409: {"description": "not allowed in its status"}}
                )(_alert_action(_action))
