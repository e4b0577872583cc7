"""Logging in and out, who is logged in, and the OpenAPI document (for the logged in, a
client user included)."""

from __future__ import annotations

from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from gateway.web.auth import LoginRefused
from gateway.web.deps import Auth, Reader, remote
from gateway.web.routes.users import UserOut

log = structlog.get_logger("edigw.web")

router = APIRouter()


class LoginIn(BaseModel):
    username: str
    password: str


class MeOut(BaseModel):
    user: UserOut
    via: Literal["session", "token"]
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token (cookie sessions)")


@router.get("/openapi.json", include_in_schema=False)
def openapi(who: Reader, request: Request) -> dict[str, Any]:
    document: dict[str, Any] = request.app.openapi()
    return document


@router.post("/login", summary="Log in (sets the session cookie)", response_model=MeOut,
             tags=["session"], responses={401: {"description": "login refused"}})
def login(body: LoginIn, request: Request, response: Response, auth: Auth) -> dict[str, Any]:
    try:
        principal = auth.login(request, response, body.username, body.password)
    except LoginRefused as exc:
        log.warning("login_refused", reason=exc.reason, remote=remote(request))
        raise
    return {"user": principal.user.as_dict(), "via": principal.via,
            "csrf_token": principal.csrf_token}


@router.post("/logout", summary="Log out (ends the session)", status_code=204,
             tags=["session"], response_class=Response)
def logout(who: Reader, request: Request, auth: Auth) -> Response:
    response = Response(status_code=204)
    auth.logout(request, response)
    return response


@router.get("/me", summary="Who is logged in", response_model=MeOut, tags=["session"])
def me(who: Reader) -> dict[str, Any]:
    return {"user": who.user.as_dict(), "via": who.via, "csrf_token": who.csrf_token}
