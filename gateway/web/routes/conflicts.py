"""Documents held as conflicts (their number came before with other content): the list,
one with every difference, and releasing or rejecting one (operator, audited by the desk)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.core.status import DocumentStatus
from gateway.store.conflicts import ConflictDesk
from gateway.web.deps import Operator, StoreDep, iso, remote
from gateway.web.paging import Limit, Offset, Paged, PartnerFilter, paged
from gateway.web.routes.transmissions import ReasonIn

router = APIRouter(tags=["conflicts"])


class OptionalReasonIn(BaseModel):
    reason: str | None = Field(None, description="why (kept in the audit trail)")


class DifferenceOut(BaseModel):
    path: str = Field(description="e.g. totals.payable, lines[2].quantity")
    before: str | None = Field(description="in the earlier document (absent: null)")
    after: str | None = Field(description="in the held document (absent: null)")


class ConflictOut(BaseModel):
    document: dict[str, Any] = Field(description="the held (or rejected) document")
    earlier: dict[str, Any] | None = Field(description="the earlier document with its number")
    summary: str
    total: int = Field(description="how many differences in all")
    differences: list[DifferenceOut] = Field(description="the first of them, in order")


def _shown(desk: ConflictDesk, document_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = iso(desk.get(document_id).as_dict())
    return shown


@router.get("/conflicts", summary="Documents held as conflicts (operator, admin), newest "
            "first, with what differs", response_model=Paged[ConflictOut])
def conflicts(who: Operator, store: StoreDep, partner_id: PartnerFilter,
              rejected: bool = False, limit: Limit = 100, offset: Offset = 0
              ) -> dict[str, Any]:
    status = DocumentStatus.REJECTED if rejected else DocumentStatus.CONFLICT
    desk = ConflictDesk(store)
    found = desk.list(partner=partner_id, status=status, limit=limit, offset=offset)
    return paged([iso(c.as_dict()) for c in found],
                 desk.count(partner=partner_id, status=status), limit, offset)


@router.get("/conflicts/{document_id}", summary="One conflict: both documents and every "
            "difference", response_model=ConflictOut,
            responses={404: {"description": "unknown"},
                       409: {"description": "never a conflict"}})
def conflict(who: Operator, store: StoreDep, document_id: str) -> dict[str, Any]:
    return _shown(ConflictDesk(store), document_id)


@router.post("/conflicts/{document_id}/release", summary="Release a held conflict: queued "
             "for publishing under its own message id", response_model=ConflictOut,
             responses={404: {"description": "unknown"}, 409: {"description": "not held"}})
def release_conflict(who: Operator, document_id: str, body: OptionalReasonIn,
                     request: Request, store: StoreDep) -> dict[str, Any]:
    desk = ConflictDesk(store)
    desk.release(document_id, by=who.username, reason=body.reason, remote=remote(request))
    return _shown(desk, document_id)


@router.post("/conflicts/{document_id}/reject", summary="Reject a held conflict (a reason "
             "is required): never published", response_model=ConflictOut,
             responses={404: {"description": "unknown"}, 409: {"description": "not held"}})
def reject_conflict(who: Operator, document_id: str, body: ReasonIn, request: Request,
                    store: StoreDep) -> dict[str, Any]:
    desk = ConflictDesk(store)
    desk.reject(document_id, by=who.username, reason=body.reason, remote=remote(request))
    return _shown(desk, document_id)
