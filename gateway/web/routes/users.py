"""Console users (admin): the list, creating one, and changing one (audited)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from gateway.web.deps import Admin, Audit, Auth, remote

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


class UserIn(BaseModel):
    username: str
    password: str
    role: Literal["viewer", "operator", "admin"]
    display_name: str | None = None
    email: str | None = None


class UserPatch(BaseModel):
    role: Literal["viewer", "operator", "admin"] | None = None
    disabled: bool | None = None
    password: str | None = None
    display_name: str | None = None
    email: str | None = None


def _user_audit(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in ("username", "display_name", "email", "role", "disabled")}


@router.get("/users", summary="Users (admin)", response_model=list[UserOut])
def users(who: Admin, auth: Auth) -> list[dict[str, Any]]:
    return [u.as_dict() for u in auth.users.list()]


@router.post("/users", summary="Create a user (admin)", response_model=UserOut,
             status_code=201)
def create_user(who: Admin, body: UserIn, request: Request, auth: Auth,
                audit: Audit) -> dict[str, Any]:
    user = auth.users.create(body.username, body.password, body.role,
                             display_name=body.display_name, email=body.email)
    audit.record(who.username, "user.create", f"user:{user.username}",
                 after=_user_audit(user.as_dict()), remote=remote(request))
    return user.as_dict()


@router.patch("/users/{username}", summary="Change a user's role, password, profile, or "
              "disable/enable it (admin)", response_model=UserOut,
              responses={404: {"description": "unknown"}})
def patch_user(who: Admin, username: str, body: UserPatch, request: Request, auth: Auth,
               audit: Audit) -> dict[str, Any]:
    old = auth.users.by_username(username)
    if old is None:
        raise HTTPException(404, f"no user {username}")
    if body.role is not None and body.role != old.role:
        auth.users.set_role(username, body.role)
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
    return new.as_dict()
