"""Console users (admin): the list, creating one, and changing one (audited).

``"invite": true`` (creating, or changing a user) mails the user a "set your password" link
(``gateway.web.account.PasswordResets.invite``, valid 48 hours) instead of a password the
admin chose: a new user invited gets a random password nobody knows."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from pydantic import BaseModel

from gateway.web.account import link_base, mailer_of, resets_for, send_mails
from gateway.web.deps import Admin, Audit, Auth, Gateway, remote
from gateway.web.paging import Limit, Offset, Paged, PartnerFilter, page_of

router = APIRouter(tags=["users"])


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str | None = None
    email: str | None = None
    role: str
    disabled: bool
    created_at: str
    last_login_at: str | None = None
    failed_logins: int
    partner_id: str | None = None


Roles = Literal["client", "viewer", "operator", "admin"]


class UserIn(BaseModel):
    username: str
    password: str | None = None  # none with invite
    role: Roles
    display_name: str | None = None
    email: str | None = None
    partner_id: str | None = None  # a client's partner
    invite: bool = False  # mail a set-your-password link (needs email and [smtp])


class UserPatch(BaseModel):
    role: Roles | None = None
    partner_id: str | None = None  # with role client
    disabled: bool | None = None
    password: str | None = None
    display_name: str | None = None
    email: str | None = None
    invite: bool = False  # mail a new set-your-password link


def _user_audit(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in ("username", "display_name", "email", "role", "disabled",
                                 "partner_id")}


def _known_partner(gateway: Any, partner_id: str | None) -> None:
    """Refuse binding a client to a partner no profile declares (422)."""
    if partner_id is not None and gateway.partners.get(partner_id) is None:
        raise HTTPException(422, f"no partner {partner_id}")


def _invitation(gateway: Any, request: Request, email: str | None) -> Any:
    """The mailer an invitation goes through; 422 when it cannot go."""
    if not email:
        raise HTTPException(422, "an invitation needs the user's e-mail address")
    mailer = mailer_of(gateway)
    if mailer is None:
        raise HTTPException(422, "no [smtp] server is configured: cannot mail an invitation")
    return mailer


def _invite(gateway: Any, request: Request, mailer: Any, user: Any, by: str,
            background: BackgroundTasks) -> None:
    mail = resets_for(gateway).invite(
        user, link_base=link_base(gateway, request.url.scheme, request.url.netloc), by=by,
        remote=remote(request))
    background.add_task(send_mails, mailer, [mail])


@router.get("/users", summary="Users (admin)", response_model=Paged[UserOut])
def users(who: Admin, auth: Auth, partner_id: PartnerFilter, limit: Limit = 100,
          offset: Offset = 0) -> dict[str, Any]:
    return page_of([u.as_dict() for u in auth.users.list(partner_id=partner_id)], limit,
                   offset)


@router.post("/users", summary="Create a user (admin)", response_model=UserOut,
             status_code=201)
def create_user(who: Admin, body: UserIn, request: Request, auth: Auth, audit: Audit,
                gateway: Gateway, background: BackgroundTasks) -> dict[str, Any]:
    _known_partner(gateway, body.partner_id)
    mailer = _invitation(gateway, request, body.email) if body.invite else None
    if not body.invite and not body.password:
        raise HTTPException(422, "give a password, or invite the user")
    # Invited: a random password nobody knows; the user sets one through the link.
    user = auth.users.create(body.username, body.password or secrets.token_urlsafe(32),
                             body.role, display_name=body.display_name, email=body.email,
                             partner_id=body.partner_id)
    audit.record(who.username, "user.create", f"user:{user.username}",
                 after={**_user_audit(user.as_dict()), "invite": body.invite},
                 remote=remote(request))
    if mailer is not None:
        _invite(gateway, request, mailer, user, who.username, background)
    return user.as_dict()


@router.patch("/users/{username}", summary="Change a user's role, password, profile, or "
              "disable/enable it (admin)", response_model=UserOut,
              responses={404: {"description": "unknown"}})
def patch_user(who: Admin, username: str, body: UserPatch, request: Request, auth: Auth,
               audit: Audit, gateway: Gateway, background: BackgroundTasks) -> dict[str, Any]:
    old = auth.users.by_username(username)
    if old is None:
        raise HTTPException(404, f"no user {username}")
    _known_partner(gateway, body.partner_id)
    mailer = _invitation(gateway, request, body.email or old.email) if body.invite else None
    role = body.role or old.role
    if role != old.role or (body.partner_id is not None and body.partner_id != old.partner_id):
        auth.users.set_role(username, role, partner_id=body.partner_id or (
            old.partner_id if role == "client" else None))
    if body.display_name is not None or body.email is not None:
        auth.users.set_profile(username, display_name=body.display_name or old.display_name,
                               email=body.email or old.email)
    if body.password:
        auth.users.set_password(username, body.password)
    if body.disabled is True and not old.disabled:
        auth.users.disable(username)
    elif body.disabled is False and old.disabled:
        auth.users.enable(username)
    new = auth.users.by_username(username)
    if new is None:
        raise HTTPException(404, f"no user {username}")
    after = _user_audit(new.as_dict())
    if body.password:
        after["password"] = "changed"  # masked by the audit trail
    audit.record(who.username, "user.update", f"user:{username}",
                 before=_user_audit(old.as_dict()), after=after, remote=remote(request))
    if mailer is not None:
        _invite(gateway, request, mailer, new, who.username, background)
    return new.as_dict()
