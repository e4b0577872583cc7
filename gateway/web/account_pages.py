"""The console's account pages: one's own account, the forgotten-password pages, and the
admins' list of users where they open and close accounts.

- ``/account`` (anyone logged in, a client included): who I am (user name, role, partner,
  e-mail); change the e-mail address or the password, each with the current password. A
  new password ends every session: the page sends the user to log in again.
- ``/password-reset`` (nobody logged in needed): asks for a user name or an e-mail address
  and always answers the same ("if it is known, a link was mailed").
  ``/password-reset/{token}``: the new password, twice. Both forms carry a token matched
  against a short-lived cookie (double submit, as the login form), since no session exists.
- ``/users`` (admin): every user with role, partner, e-mail and state; a form opening an
  account (a client user for a partner, or staff: viewer, operator, admin), who gets a "set
  your password" link by mail (no password is chosen by the admin); changing a user's role,
  disabling and enabling a user, each after a confirmation page; sending a new
  set-your-password link (the password reset an admin gives).

The rules live in ``gateway.web.account``; these handlers read forms and render.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from urllib.parse import quote, urlencode

import structlog
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.core.status import Role
from gateway.store.audit import AuditLog
from gateway.web.account import (
    Account,
    AccountError,
    ResetRefused,
    check_email,
    link_base,
    mailer_of,
    reset_later,
    resets_for,
    send_mails,
)
from gateway.web.auth import CSRF_FIELD, LOCK_AFTER, Authenticator, UserError
from gateway.web.pages import Handler, Page, _guard, templates

log = structlog.get_logger("edigw.web.account")

#: The cookie holding the forgotten-password forms' CSRF token (no session exists there).
RESET_COOKIE = "edigw_reset_csrf"
#: Headers of the pages whose URL holds a reset token: no Referer, no cache.
PRIVATE = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _base(request: Request, gateway: object) -> str:
    return link_base(gateway, request.url.scheme, request.url.netloc)


# -- /account ---------------------------------------------------------------------------------


def account(p: Page, error: str | None = None, status: int = 200) -> Response:
    user = p.who.user
    partner = p.gateway.partners.get(user.partner_id) if user.partner_id else None
    return p.render("account.html", status, user=user, partner=partner, error=error,
                    message=p.request.query_params.get("message"))


def account_email(p: Page) -> Response:
    try:
        Account(p.store).change_email(p.who.user, p.field("email"), p.field("current_password"),
                                      remote=_remote(p.request))
    except (AccountError, UserError) as exc:
        return account(p, str(exc), 400)
    return RedirectResponse("/account?message=" + quote("e-mail address changed"), 303)


def account_password(p: Page) -> Response:
    new = p.form.get("new_password") if p.form is not None else None
    again = p.form.get("new_password_again") if p.form is not None else None
    if not isinstance(new, str) or new != again:
        return account(p, "the two new passwords differ", 400)
    current = p.form.get("current_password") if p.form is not None else None
    try:
        Account(p.store).change_password(p.who.user, current if isinstance(current, str) else "",
                                         new, remote=_remote(p.request))
    except (AccountError, UserError) as exc:
        return account(p, str(exc), 400)
    # Every session of the user ended with the old password, this one included.
    return RedirectResponse("/login?done=password-changed", 303)


# -- /password-reset --------------------------------------------------------------------------


def _public_form(request: Request, name: str, status: int = 200, **context: object
                 ) -> Response:
    """A page for nobody logged in, with a fresh CSRF token in the form and the cookie."""
    token = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request, name, dict(who=None, csrf=token, path="/password-reset", **context),
        status_code=status, headers=PRIVATE)
    response.set_cookie(RESET_COOKIE, token, max_age=1800, path="/password-reset",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def _csrf_ok(request: Request, sent: object) -> bool:
    kept = request.cookies.get(RESET_COOKIE, "")
    return bool(kept) and isinstance(sent, str) and hmac.compare_digest(sent.encode(),
                                                                         kept.encode())


def _reset_routes() -> list[Route]:
    async def ask(request: Request) -> Response:
        gateway = request.app.state.gateway
        resets = resets_for(gateway)
        minutes = int(resets.validity.total_seconds() // 60)
        if request.method == "GET":
            return _public_form(request, "password_reset.html", minutes=minutes,
                                sent=request.query_params.get("sent") == "1")
        form = await request.form()
        if not _csrf_ok(request, form.get(CSRF_FIELD)):
            return _public_form(request, "password_reset.html", 403, minutes=minutes,
                                sent=False, error="The form expired; please try again.")
        login = form.get("login")
        # The same answer, at once, whatever is found: looking up and mailing come after.
        return RedirectResponse("/password-reset?sent=1", 303, background=BackgroundTask(
            reset_later, resets, mailer_of(gateway), login if isinstance(login, str) else "",
            link_base=_base(request, gateway), remote=_remote(request)))

    async def use(request: Request) -> Response:
        token = request.path_params["token"]
        resets = resets_for(request.app.state.gateway)
        if request.method == "GET":
            try:
                user = await run_in_threadpool(resets.check, token)
            except ResetRefused as exc:
                return _public_form(request, "password_reset_invalid.html", 400,
                                    reason=str(exc))
            return _public_form(request, "password_reset_form.html", username=user.username,
                                token=token)
        form = await request.form()
        if not _csrf_ok(request, form.get(CSRF_FIELD)):
            return _public_form(request, "password_reset_form.html", 403, username=None,
                                token=token, error="The form expired; please try again.")
        new, again = form.get("password"), form.get("password_again")
        try:
            if not isinstance(new, str) or new != again:
                user = await run_in_threadpool(resets.check, token)
                return _public_form(request, "password_reset_form.html", 400,
                                    username=user.username, token=token,
                                    error="The two passwords differ.")
            await run_in_threadpool(resets.confirm_reset, token, new, remote=_remote(request))
        except ResetRefused as exc:
            return _public_form(request, "password_reset_invalid.html", 400, reason=str(exc))
        except UserError as exc:  # the policy refused it: the link is still good
            return _public_form(request, "password_reset_form.html", 400, username=None,
                                token=token, error=str(exc))
        response = RedirectResponse("/login?done=password-reset", 303, headers=PRIVATE)
        response.delete_cookie(RESET_COOKIE, path="/password-reset")
        return response

    return [Route("/password-reset", ask, methods=["GET", "POST"], name="password_reset"),
            Route("/password-reset/{token}", use, methods=["GET", "POST"],
                  name="password_reset_use")]


# -- /users (admin) ---------------------------------------------------------------------------


def _state(user: object) -> str:
    if getattr(user, "disabled", False):
        return "disabled"
    if getattr(user, "failed_logins", 0) >= LOCK_AFTER:
        return "locked (failed logins)"
    return "active"


def users(p: Page, error: str | None = None, status: int = 200,
          form: dict[str, str] | None = None) -> Response:
    auth: Authenticator = p.request.app.state.auth
    return p.render("users.html", status, users=auth.users.list(), state=_state,
                    partners=list(p.gateway.partners), error=error, form=form or {},
                    roles=ROLES,
                    mail=mailer_of(p.gateway) is not None,
                    message=p.request.query_params.get("message"))


def _invite(p: Page, username: str) -> str:
    """Mail a set-your-password link to ``username``; what the admin is told."""
    auth: Authenticator = p.request.app.state.auth
    user = auth.users.by_username(username)
    if user is None:
        raise AccountError(f"no user {username}")
    mailer = mailer_of(p.gateway)
    if mailer is None:
        raise AccountError("no [smtp] server is configured: the link cannot be mailed")
    mail = resets_for(p.gateway).invite(user, link_base=_base(p.request, p.gateway),
                                        by=p.who.username, remote=_remote(p.request))
    if asyncio.run(send_mails(mailer, [mail])) != 1:
        return (f"the link to {user.email} could not be mailed (see the smtp channel's "
                "health); send it again later")
    return f"a set-your-password link was mailed to {user.email}"


#: The roles an admin gives, the lowest first.
ROLES = (Role.CLIENT, Role.VIEWER, Role.OPERATOR, Role.ADMIN)


def user_create(p: Page) -> Response:
    """Open an account: a client user for a partner, or staff (viewer, operator, admin); the
    user sets a password through the mailed link."""
    auth: Authenticator = p.request.app.state.auth
    form = {k: p.field(k) for k in ("username", "email", "partner_id", "display_name",
                                    "role")}
    role = form["role"] or Role.CLIENT
    try:
        if role not in ROLES:
            raise AccountError(f"no role {role!r}: one of {', '.join(ROLES)}")
        if role == Role.CLIENT and p.gateway.partners.get(form["partner_id"]) is None:
            raise AccountError(f"no partner {form['partner_id']!r}")
        email = check_email(form["email"])
        if mailer_of(p.gateway) is None:
            raise AccountError("no [smtp] server is configured: the set-your-password link "
                               "cannot be mailed (use edigw users add with a password)")
        # Nobody knows this password: the user chooses one through the link.
        user = auth.users.create(form["username"], secrets.token_urlsafe(32), role,
                                 display_name=form["display_name"] or None, email=email,
                                 partner_id=form["partner_id"] if role == Role.CLIENT
                                 else None)
    except (AccountError, UserError) as exc:
        return users(p, str(exc), 400, form)
    AuditLog(p.store).record(p.who.username, "user.create", f"user:{user.username}",
                             after={"username": user.username, "role": user.role,
                                    "partner_id": user.partner_id, "email": user.email,
                                    "invite": True}, remote=_remote(p.request))
    try:
        told = _invite(p, user.username)
    except AccountError as exc:
        told = str(exc)
    return RedirectResponse("/users?message=" + quote(f"user {user.username} opened; {told}"),
                            303)


ACTIONS = {"disable": "Disable", "enable": "Enable", "role": "Change the role of"}


def user_confirm(p: Page) -> Response:
    """The confirmation step before disabling, enabling a user or changing its role."""
    auth: Authenticator = p.request.app.state.auth
    username, action = p.request.path_params["username"], p.request.path_params["action"]
    user = auth.users.by_username(username)
    if user is None or action not in ACTIONS:
        return p.render("not_found.html", 404, what=f"user {username} or action {action}")
    q = p.request.query_params
    return p.render("users_confirm.html", user=user, action=action, label=ACTIONS[action],
                    role=q.get("role", ""), partner_id=q.get("partner_id", ""))


def _set_role(p: Page, username: str) -> Response:
    """A new role (a client's partner with it), audited; never one's own."""
    auth: Authenticator = p.request.app.state.auth
    role, partner_id = p.field("role"), p.field("partner_id")
    if username == p.who.username:
        return RedirectResponse("/users?message=" + quote("you cannot change your own role"),
                                303)
    before = auth.users.by_username(username)
    try:
        if role == Role.CLIENT and p.gateway.partners.get(partner_id) is None:
            raise AccountError(f"no partner {partner_id!r}")
        done = auth.users.set_role(username, role,
                                   partner_id=partner_id if role == Role.CLIENT else None)
    except (AccountError, UserError) as exc:
        return users(p, str(exc), 400)
    AuditLog(p.store).record(p.who.username, "user.role", f"user:{username}",
                             before={"role": before.role if before else None,
                                     "partner_id": before.partner_id if before else None},
                             after={"role": done.role, "partner_id": done.partner_id},
                             remote=_remote(p.request))
    return RedirectResponse("/users?message=" + quote(
        f"user {username} is now {done.role}"
        + (f" of partner {done.partner_id}" if done.partner_id else "")), 303)


def user_action(p: Page) -> Response:
    auth: Authenticator = p.request.app.state.auth
    username, action = p.request.path_params["username"], p.request.path_params["action"]
    user = auth.users.by_username(username)
    if user is None or action not in (*ACTIONS, "invite"):
        return p.render("not_found.html", 404, what=f"user {username} or action {action}")
    if action == "invite":
        try:
            told = _invite(p, username)
        except AccountError as exc:
            return RedirectResponse("/users?message=" + quote(str(exc)), 303)
        return RedirectResponse("/users?message=" + quote(told), 303)
    if p.field("confirmed") != "yes":  # only from the confirmation page
        query = (("?" + urlencode({"role": p.field("role"), "partner_id": p.field("partner_id")}))
                 if action == "role" else "")
        return RedirectResponse(f"/users/{quote(username)}/{action}{query}", 303)
    if action == "role":
        return _set_role(p, username)
    if action == "disable" and username == p.who.username:
        return RedirectResponse("/users?message=" + quote("you cannot disable yourself"), 303)
    done = auth.users.disable(username) if action == "disable" else auth.users.enable(username)
    AuditLog(p.store).record(p.who.username, f"user.{action}", f"user:{username}",
                             before={"disabled": user.disabled},
                             after={"disabled": done.disabled}, remote=_remote(p.request))
    log.info("console_user_" + action, user=username, by=p.who.username)
    return RedirectResponse("/users?message=" + quote(f"user {username} {action}d"), 303)


# -- routes -----------------------------------------------------------------------------------


def account_routes(auth: Authenticator) -> list[BaseRoute]:
    """The account, forgotten-password and users pages (``page_routes`` mounts them)."""

    def route(path: str, role: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, _guard(auth, role, handler), methods=[method],
                     name="page:" + handler.__name__ + ("" if method == "GET" else ":post"))

    return [
        route("/account", Role.CLIENT, account),
        route("/account/email", Role.CLIENT, account_email, "POST"),
        route("/account/password", Role.CLIENT, account_password, "POST"),
        *_reset_routes(),
        route("/users", Role.ADMIN, users),
        route("/users", Role.ADMIN, user_create, "POST"),
        route("/users/{username}/{action}", Role.ADMIN, user_confirm),
        route("/users/{username}/{action}", Role.ADMIN, user_action, "POST"),
    ]
