"""The audit trail (operator, admin), newest first."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.web.deps import Audit, Operator, utc
from gateway.web.paging import Limit, Offset, Paged, paged

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
            response_model=Paged[AuditOut])
def audit_trail(who: Operator, audit: Audit, target: str | None = None,
                actor: str | None = None, action: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None,
                limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    where: dict[str, Any] = {"target": target, "actor": actor, "action": action,
                             "since": utc(since), "until": utc(until)}
    return paged([e.as_dict() for e in audit.list(**where, limit=limit, offset=offset)],
                 audit.count(**where), limit, offset)
