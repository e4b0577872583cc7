"""API tokens: anyone manages their own; an admin sees and revokes everyone's and may create
one for another user (audited)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from gateway.core.status import Role
from gateway.web.deps import Audit, Auth, Reader, iso, remote, utc
from gateway.web.numbers import RowId
from gateway.web.paging import Limit, Offset, Paged, page_of

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    name: str
    user: str | None = Field(None, description="admin only: create it for this user")
    expires_at: dt.datetime | None = None


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: str | None
    last_used_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself, shown only now")


@router.get("/tokens", summary="API tokens: your own (an admin sees all)",
            response_model=Paged[TokenOut])
def tokens(who: Reader, auth: Auth, limit: Limit = 100, offset: Offset = 0
           ) -> dict[str, Any]:
    user_id = None if who.may(Role.ADMIN) else who.user.id
    return page_of([t.as_dict() for t in auth.tokens.list(user_id=user_id)], limit, offset)


@router.post("/tokens", summary="Create an API token (shown once); an admin may name "
             "another user", response_model=NewTokenOut, status_code=201)
def create_token(who: Reader, body: TokenIn, request: Request, auth: Auth,
                 audit: Audit) -> dict[str, Any]:
    owner = who.user
    if body.user and body.user != who.username:
        if not who.may(Role.ADMIN):
            raise HTTPException(403, "only an admin creates tokens for others")
        found = auth.users.by_username(body.user)
        if found is None:
            raise HTTPException(404, f"no user {body.user}")
        owner = found
    token, record = auth.tokens.create(owner, body.name, expires_at=utc(body.expires_at))
    audit.record(who.username, "token.create", f"user:{owner.username}",
                 after={"id": record.id, "name": record.name, "prefix": record.prefix},
                 remote=remote(request))
    return {**record.as_dict(), "token": token}


@router.delete("/tokens/{token_id}", summary="Revoke an API token (your own; an admin any)",
               response_model=TokenOut, responses={404: {"description": "unknown"}})
def revoke_token(who: Reader, token_id: RowId, request: Request, auth: Auth,
                 audit: Audit) -> dict[str, Any]:
    record = auth.tokens.get(token_id)
    if record is None or (record.user_id != who.user.id and not who.may(Role.ADMIN)):
        raise HTTPException(404, f"no token {token_id}")
    done = auth.tokens.revoke(token_id)
    audit.record(who.username, "token.revoke", f"user:{record.username}",
                 before={"id": record.id, "name": record.name, "prefix": record.prefix},
                 after={"revoked_at": iso(done.revoked_at)}, remote=remote(request))
    return done.as_dict()
