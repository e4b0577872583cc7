"""One's own account (anyone logged in, a client included) and the forgotten-password
requests (nobody logged in): the rules are ``gateway.web.account``'s."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from pydantic import BaseModel, Field

from gateway.web.account import Account, link_base, mailer_of, reset_later, resets_for
from gateway.web.auth import check_password
from gateway.web.deps import Gateway, Reader, remote
from gateway.web.routes.users import UserOut

router = APIRouter(tags=["account"])


class AccountOut(UserOut):
    partner_name: str | None = None


class AccountPatch(BaseModel):
    email: str | None = None
    password: str | None = Field(None, description="the new password")
    current_password: str = Field(description="needed for any change")


class ResetIn(BaseModel):
    login: str = Field(max_length=254, description="a user name or an e-mail address")


class ResetRequestedOut(BaseModel):
    detail: str = Field(description="the same sentence whatever the name or address")


class ResetConfirm(BaseModel):
    token: str = Field(max_length=256)
    password: str = Field(max_length=1024)


def _out(user: Any, gateway: Any) -> dict[str, Any]:
    partner = gateway.partners.get(user.partner_id) if user.partner_id else None
    return {**user.as_dict(), "partner_name": partner.name if partner is not None else None}


@router.get("/account", summary="Your own account", response_model=AccountOut)
def get_account(who: Reader, gateway: Gateway) -> dict[str, Any]:
    return _out(who.user, gateway)


@router.patch("/account", summary="Change your e-mail address or password (with the "
              "current password; a new password ends all your sessions)",
              response_model=AccountOut, responses={400: {"description": "refused"}})
def patch_account(who: Reader, body: AccountPatch, request: Request,
                  gateway: Gateway) -> dict[str, Any]:
    if body.email is None and body.password is None:
        raise HTTPException(422, "nothing to change: give email or password")
    if body.password is not None:
        check_password(body.password, who.username)  # refused before anything changes
    account = Account(gateway.store)
    user = who.user
    if body.email is not None:
        user = account.change_email(user, body.email, body.current_password,
                                    remote=remote(request))
    if body.password is not None:
        user = account.change_password(user, body.current_password, body.password,
                                       remote=remote(request))
    return _out(user, gateway)


@router.post("/password-reset", summary="Mail a password-reset link (always 202: it never "
             "tells whether the name or address is known)", status_code=202,
             response_model=ResetRequestedOut)
def request_reset(body: ResetIn, request: Request, gateway: Gateway,
                  background: BackgroundTasks) -> dict[str, str]:
    # The same answer, at once: looking up and mailing come after it.
    background.add_task(reset_later, resets_for(gateway), mailer_of(gateway), body.login,
                        link_base=link_base(gateway, request.url.scheme, request.url.netloc),
                        remote=remote(request))
    return {"detail": "if the name or address is known, a link was mailed to its address"}


@router.post("/password-reset/confirm", summary="Set a new password with a reset link's "
             "token", status_code=204, response_class=Response,
             responses={400: {"description": "link not valid, or password refused"}})
def confirm_reset(body: ResetConfirm, request: Request, gateway: Gateway) -> Response:
    resets_for(gateway).confirm_reset(body.token, body.password, remote=remote(request))
    return Response(status_code=204)
