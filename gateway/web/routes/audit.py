"""The audit trail (operator, admin), newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.web.deps import Audit, Operator, utc
from gateway.web.numbers import Offset

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str | None = None
    before: Any = None
    after: Any = None
    remote: str | None = None


@router.get("/audit", summary="The audit trail, newest first (operator, admin)",
            response_model=list[AuditOut])
def audit_trail(who: Operator, audit: Audit, target: str | None = None,
                actor: str | None = None, action: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Offset = 0) -> list[dict[str, Any]]:
    return [e.as_dict() for e in audit.list(target=target, actor=actor, action=action,
                                            since=utc(since), until=utc(until),
                                            limit=limit, offset=offset)]
