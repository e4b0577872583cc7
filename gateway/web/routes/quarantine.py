"""``/api/quarantine``: the unknown senders of quarantined files, and making one a partner
whose held files are then processed again (``gateway.web.adopt``).

Routes (mounted under ``/api``)::

    GET   /quarantine/senders   viewer  the unknown senders (paging envelope): key, label,
                                        count, first and last received, sample file names
    POST  /quarantine/adopt     admin   {sender, new: {id, name, state?, channels?,
                                        documents?} | partner_id}: the partner created or
                                        extended, each held file replayed, their outcomes

Refusals: 404 no waiting file of that sender (or no such partner), 409 an identifier or id
taken, 422 a value refused or a configuration ``edigw check-config`` would refuse
(``{"field", "reason"}``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from gateway.config import ChannelName
from gateway.web.adopt import NewPartner, UnknownSenderKey, adopt, unknown_senders
from gateway.web.deps import Admin, Gateway, Viewer, remote
from gateway.web.paging import Limit, Offset, Paged, paged
from gateway.web.partners_admin import PartnerAdmin, PartnerAdminError
from gateway.web.routes.partners import _refused, partner_admin

router = APIRouter(prefix="/quarantine", tags=["quarantine"])


class SenderOut(BaseModel):
    key: str
    scheme: str
    value: str
    qualifier: str | None = None
    label: str
    also: list[str]
    count: int
    first_at: str
    last_at: str
    samples: list[str]


class NewPartnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: Annotated[str, Field(min_length=1)]
    state: Literal["live", "test"] = "live"
    channels: list[ChannelName] = Field(default_factory=lambda: ["folder"])
    documents: list[dict[str, Any]] = Field(default_factory=list)


class AdoptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: Annotated[str, Field(min_length=3, max_length=300)]
    new: NewPartnerIn | None = None
    partner_id: str | None = None  # an existing partner to extend

    @model_validator(mode="after")
    def _one(self) -> AdoptIn:
        if (self.new is None) == (self.partner_id is None):
            raise ValueError("give either new (a partner to create) or partner_id (one to "
                             "extend)")
        return self


@router.get("/senders", response_model=Paged[SenderOut],
            summary="Unknown senders of quarantined files, the latest first")
def senders(gateway: Gateway, who: Viewer, limit: Limit = 100, offset: Offset = 0
            ) -> dict[str, Any]:
    found = unknown_senders(gateway.store)
    return paged([g.as_dict() for g in found[offset:offset + limit]], len(found), limit,
                 offset)


class AttemptOut(BaseModel):
    transmission_id: str
    attempt_id: str | None = None
    status: str
    partner_id: str | None = None
    documents: int | None = None
    reason: str | None = None


class NotReplayedOut(BaseModel):
    transmission_id: str
    reason: str


class AdoptionOut(BaseModel):
    sender: str
    partner_id: str
    created: bool
    identifiers: list[str]
    reprocessed: int
    outcomes: dict[str, int]
    attempts: list[AttemptOut]
    failed: list[NotReplayedOut]


@router.post("/adopt", summary="Make an unknown sender a partner and process its held "
             "files again", response_model=AdoptionOut)
async def adopt_sender(body: AdoptIn, request: Request, gateway: Gateway, who: Admin,
                       admin: Annotated[PartnerAdmin, Depends(partner_admin)]
                       ) -> dict[str, Any]:
    new = None if body.new is None else NewPartner(
        id=body.new.id, name=body.new.name, state=body.new.state,
        channels=tuple(body.new.channels), documents=tuple(body.new.documents))

    def run() -> dict[str, Any]:
        try:
            return adopt(gateway, admin, who.username, body.sender, new=new,
                         extend=body.partner_id, remote=remote(request)).as_dict()
        except UnknownSenderKey as exc:
            raise HTTPException(404, str(exc)) from exc
        except PartnerAdminError as exc:
            raise _refused(exc) from exc
    return await run_in_threadpool(run)
