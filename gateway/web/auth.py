"""Who is asking: users and roles, browser sessions with CSRF tokens, and API tokens.

- A password is at least ``MIN_PASSWORD`` characters, not a common one (the list in
  ``common-passwords.txt``, compared in lower case), nor the user name; ``Users.create``
  and ``Users.set_password`` refuse others (the API, the console and the CLI go through them).
- Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
  option); a login for an unknown user verifies against a dummy hash so that both paths take
  the same time. After ``LOCK_AFTER`` failures in a row a user is refused for ``LOCK_FOR``
  (then may try again); a successful login resets the count.
- A browser session is a random token in the ``edigw_session`` cookie (HttpOnly,
  SameSite=Strict, Path=/, Secure on https or when configured); only its sha256 is stored.
  It ends after ``idle`` without a request or ``absolute`` after login, whichever is first.
  Each session has a CSRF token: every unsafe method authenticated by the cookie must carry
  it in the ``X-CSRF-Token`` header or the ``csrf_token`` form field.
- An API token (``Authorization: Bearer edigw_…``) is shown once at creation; only its
  sha256 and its first characters (to recognise it) are stored. No CSRF: a browser never
  sends it by itself.

``Authenticator.principal(request)`` tells who is asking (``Principal``), and
``Authenticator.require(role)`` is both a FastAPI dependency and a plain function for
Starlette handlers: it raises ``NotAuthenticated`` (401) or ``Forbidden`` (403).
Roles are ordered viewer < operator < admin; a ``client`` (a partner's own user, bound to
that partner by ``users.partner_id``) ranks below them all: it passes only the guards of
``Role.CLIENT``, and ``Principal.scope`` restricts what those routes read to its partner.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import argon2
from starlette.requests import Request
from starlette.responses import Response

from gateway.core import clock
from gateway.core.errors import RequestRefused
from gateway.core.scope import EVERYTHING, Scope, of_partner
from gateway.core.status import ROLES, Role
from gateway.store.db import Store
from gateway.store.users import (
    ApiToken,
    Session,
    SessionRecords,
    TokenRecords,
    User,
    UserRecords,
)

COOKIE = "edigw_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
TOKEN_PREFIX = "edigw_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOCK_AFTER = 5  # failed logins in a row …
LOCK_FOR = dt.timedelta(minutes=15)  # … refuse the user this long

_RANK: dict[str, int] = {role.value: rank for rank, role in enumerate(Role)}

_hasher = argon2.PasswordHasher()  # argon2id
_dummy_hash: str | None = None


class AuthError(RequestRefused):
    """Base of the errors below; ``status`` is the HTTP status they answer with."""

    status = 400


class LoginRefused(AuthError):
    """Wrong user or password, disabled, or locked: the client is told only "refused";
    ``reason`` is for the log."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__("login refused")
        self.reason = reason


class NotAuthenticated(AuthError):
    """Nobody logged in (no or unknown session or token)."""

    status = 401


class Forbidden(AuthError):
    """Logged in, but the role is below what the action needs (or the CSRF token is
    missing)."""

    status = 403


class UserError(AuthError):
    """A user or token change that cannot be made (unknown role, taken name …)."""

    status = 400


MIN_PASSWORD = 12  # characters
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt")


@functools.cache
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(x.strip().lower() for x in lines if x.strip() and not x.startswith("#"))


def check_password(password: str, username: str | None = None) -> None:
    """Raise ``UserError`` unless ``password`` may be set: ``MIN_PASSWORD`` characters at
    least, not one of the common passwords, not the user name."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: {MIN_PASSWORD} characters at least")
    folded = password.strip().lower()
    if folded in _common_passwords():
        raise UserError("the password is too common; choose another")
    if len(set(folded)) < 4:
        raise UserError("the password repeats too few characters; choose another")
    if username and username.strip().lower() == folded:
        raise UserError("the password is the user name; choose another")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (with its parameters and salt)."""
    if not password:
        raise UserError("the password is empty")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False on any malformed hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> dt.datetime:
    return clock.now().astimezone(dt.UTC)


def role_at_least(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (client < viewer < operator < admin)."""
    return _RANK.get(role, -1) >= _RANK[needed]


# -- users ---------------------------------------------------------------------------------


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return role


def _check_binding(role: str, partner_id: str | None) -> str | None:
    """The partner a user of ``role`` is bound to: a client needs one, staff have none."""
    if role == Role.CLIENT:
        if not partner_id or not partner_id.strip():
            raise UserError("a client user needs its partner (--partner)")
        return partner_id.strip()
    if partner_id:
        raise UserError(f"only a client user is bound to a partner, not a {role}")
    return None


class Users:
    """The console's users: names, passwords and roles checked here, kept by
    ``gateway.store.users.UserRecords``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records = UserRecords(store)

    def create(self, username: str, password: str, role: str, *,
               display_name: str | None = None, email: str | None = None,
               partner_id: str | None = None) -> User:
        """A new user; a ``client`` names its ``partner_id`` (the caller checks that the
        partner exists), staff never do."""
        username = username.strip()
        if not username or len(username) > 64 or any(c.isspace() for c in username):
            raise UserError(f"invalid user name {username!r} (1..64 characters, no spaces)")
        _check_role(role)
        partner_id = _check_binding(role, partner_id)
        if self.by_username(username) is not None:
            raise UserError(f"user {username!r} exists")
        check_password(password, username)
        self.records.insert(username=username, display_name=display_name, email=email,
                            role=role, password_hash=hash_password(password), now=_now(),
                            partner_id=partner_id)
        return self._existing(username)

    def get(self, user_id: int) -> User | None:
        return self.records.get(user_id)

    def by_username(self, username: str) -> User | None:
        return self.records.by_username(username)

    def list(self, *, partner_id: str | None = None) -> list[User]:
        return self.records.list(partner_id=partner_id)

    def _existing(self, username: str) -> User:
        user = self.by_username(username)
        if user is None:
            raise UserError(f"no user {username!r}")
        return user

    def _update(self, username: str, **values: Any) -> User:
        if not self.records.update(username, _now(), **values):
            raise UserError(f"no user {username!r}")
        return self._existing(username)

    def set_password(self, username: str, password: str) -> User:
        """A new password; ends the user's sessions and clears a lock."""
        check_password(password, username)
        user = self._update(username, password_hash=hash_password(password), failed_logins=0)
        Sessions(self.store).end_all(user.id)
        return user

    def set_role(self, username: str, role: str, *, partner_id: str | None = None) -> User:
        """Another role; a client names its partner, a staff role drops the binding. The
        user's sessions end when it crosses between client and staff."""
        _check_role(role)
        bound = _check_binding(role, partner_id)
        before = self._existing(username)
        user = self._update(username, role=role, partner_id=bound)
        if (before.role == Role.CLIENT) != (role == Role.CLIENT) or \
                before.partner_id != bound:
            Sessions(self.store).end_all(user.id)
        return user

    def set_profile(self, username: str, *, display_name: str | None = None,
                    email: str | None = None) -> User:
        return self._update(username, display_name=display_name, email=email)

    def disable(self, username: str) -> User:
        """Refuse the user from now on: sessions end, tokens stop working."""
        user = self._update(username, disabled=True)
        Sessions(self.store).end_all(user.id)
        return user

    def enable(self, username: str) -> User:
        return self._update(username, disabled=False, failed_logins=0)

    def authenticate(self, username: str, password: str) -> User:
        """The user if the password is right and the user may log in; ``LoginRefused``
        otherwise. Counts failures and locks after ``LOCK_AFTER`` of them in a row."""
        global _dummy_hash
        found = self.records.credentials(username)
        if found is None:
            if _dummy_hash is None:
                _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
            verify_password(_dummy_hash, password)  # the same work as for a known user
            raise LoginRefused(f"unknown user {username!r}")
        user = found.user
        locked = user.failed_logins >= LOCK_AFTER and _now() - user.updated_at < LOCK_FOR
        if user.disabled:
            raise LoginRefused(f"user {username!r} is disabled")
        if locked:
            raise LoginRefused(f"user {username!r} is locked after {user.failed_logins} failures")
        # The attempt is counted before the password is checked, and only if no other
        # attempt counted in between: parallel guesses cannot outrun the lock.
        if not self.records.count_attempt(user, _now()):
            raise LoginRefused(f"another login attempt for {username!r} is under way")
        if not verify_password(found.password_hash, password):
            raise LoginRefused(f"wrong password for {username!r}")
        values: dict[str, Any] = dict(failed_logins=0, last_login_at=_now())
        if _hasher.check_needs_rehash(found.password_hash):
            values["password_hash"] = _hasher.hash(password)
        self.records.set_by_id(user.id, **values)
        refreshed = self.get(user.id)
        if refreshed is None:
            raise LoginRefused(f"user {username!r} is gone")
        return refreshed


# -- sessions -------------------------------------------------------------------------------


class Sessions:
    """Browser sessions: ``idle`` without a request or ``absolute`` after login ends one."""

    def __init__(self, store: Store, *, idle: dt.timedelta = dt.timedelta(hours=2),
                 absolute: dt.timedelta = dt.timedelta(hours=12)) -> None:
        self.store = store
        self.records = SessionRecords(store)
        self.idle = idle
        self.absolute = absolute

    def create(self, user: User, *, remote: str | None = None) -> tuple[str, Session]:
        """A new session for ``user``: the cookie's token (shown once) and the session."""
        token = secrets.token_urlsafe(32)
        now = _now()
        session = Session(token_hash=_sha256(token), user_id=user.id,
                          csrf_token=secrets.token_urlsafe(32), created_at=now,
                          last_seen_at=now, expires_at=now + self.absolute,
                          remote=remote[:128] if remote else None)
        self.records.insert(session)
        return token, session

    def resolve(self, token: str) -> tuple[Session, User] | None:
        """The live session of this cookie token and its (enabled) user, else None. A
        request moves the idle deadline (written at most once a minute)."""
        if not token:
            return None
        session = self.records.get(_sha256(token))
        if session is None:
            return None
        now = _now()
        if now >= session.expires_at or now - session.last_seen_at >= self.idle:
            self.end(token)
            return None
        user = Users(self.store).get(session.user_id)
        if user is None or user.disabled:
            return None
        if now - session.last_seen_at >= dt.timedelta(minutes=1):
            self.records.touch(session.token_hash, now)
        return session, user

    def end(self, token: str) -> None:
        """Log out: the session is deleted."""
        self.records.delete(_sha256(token))

    def end_all(self, user_id: int) -> None:
        self.records.delete_for_user(user_id)


# -- API tokens ------------------------------------------------------------------------------


class ApiTokens:
    """Tokens for integrations (``Authorization: Bearer edigw_…``), each acting as its user."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records = TokenRecords(store)

    def create(self, user: User, name: str, *,
               expires_at: dt.datetime | None = None) -> tuple[str, ApiToken]:
        """A new token for ``user``: the token itself (shown only now) and its record."""
        if not name.strip():
            raise UserError("a token needs a name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = self.records.insert(user_id=user.id, name=name.strip()[:128],
                                  token_hash=_sha256(token), prefix=token[:12],
                                  created_at=_now(), expires_at=expires_at)
        record = self.get(tid)
        if record is None:
            raise UserError(f"no token {tid}")
        return token, record

    def get(self, token_id: int) -> ApiToken | None:
        return self.records.get(token_id)

    def list(self, *, user_id: int | None = None) -> list[ApiToken]:
        return self.records.list(user_id=user_id)

    def revoke(self, token_id: int) -> ApiToken:
        self.records.revoke(token_id, _now())
        token = self.get(token_id)
        if token is None:
            raise UserError(f"no token {token_id}")
        return token

    def resolve(self, token: str) -> tuple[ApiToken, User] | None:
        """The live token and its enabled user, else None; notes when it was last used."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        record = self.records.by_hash(_sha256(token))
        if record is None:
            return None
        now = _now()
        if record.revoked_at is not None or (record.expires_at and now >= record.expires_at):
            return None
        user = Users(self.store).get(record.user_id)
        if user is None or user.disabled:
            return None
        if record.last_used_at is None or now - record.last_used_at >= dt.timedelta(minutes=1):
            self.records.touch(record.id, now)
        return record, user


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, and how: ``via`` is "session" (a browser cookie) or "token"."""

    user: User
    via: Literal["session", "token"]
    session: Session | None = None
    token: ApiToken | None = None

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def csrf_token(self) -> str | None:
        return self.session.csrf_token if self.session else None

    def may(self, role: str) -> bool:
        return role_at_least(self.user.role, role)

    @property
    def is_client(self) -> bool:
        return self.user.role == Role.CLIENT

    @property
    def partner(self) -> str | None:
        """The partner of a client user (None for staff)."""
        return self.user.partner_id if self.is_client else None

    @property
    def scope(self) -> Scope:
        """Whose data this principal may read: its partner's for a client, all for staff."""
        if self.is_client:
            return of_partner(self.user.partner_id or "")
        return EVERYTHING


class Authenticator:
    """Resolves requests to principals and guards routes (one per console)."""

    def __init__(self, store: Store, *, secure_cookies: bool = False,
                 idle: dt.timedelta = dt.timedelta(hours=2),
                 absolute: dt.timedelta = dt.timedelta(hours=12)) -> None:
        self.store = store
        self.users = Users(store)
        self.sessions = Sessions(store, idle=idle, absolute=absolute)
        self.tokens = ApiTokens(store)
        self.secure_cookies = secure_cookies

    def principal(self, request: Request) -> Principal | None:
        """Who sent ``request`` (Bearer token first, then the session cookie), or None.
        Cached on the request."""
        cached = request.scope.get("edigw.principal", False)
        if cached is not False:
            return cached  # type: ignore[no-any-return]
        found: Principal | None = None
        header = request.headers.get("authorization", "")
        with self.store.reading():  # the token or session, then its user: one connection
            if header[:7].lower() == "bearer ":
                hit = self.tokens.resolve(header[7:].strip())
                found = Principal(user=hit[1], via="token", token=hit[0]) if hit else None
            elif request.cookies.get(COOKIE):
                live = self.sessions.resolve(request.cookies[COOKIE])
                found = (Principal(user=live[1], via="session", session=live[0]) if live
                         else None)
        request.scope["edigw.principal"] = found
        return found

    def check_csrf(self, principal: Principal, request: Request,
                   form_token: str | None = None) -> None:
        """Raise ``Forbidden`` when a cookie-authenticated unsafe request lacks the session's
        CSRF token (header ``X-CSRF-Token``, or ``form_token`` read from the form by the
        caller: reading the body here would consume it)."""
        if principal.via != "session" or request.method in SAFE_METHODS:
            return
        sent = request.headers.get(CSRF_HEADER) or form_token or ""
        if not hmac.compare_digest(sent.encode(), (principal.csrf_token or "").encode()):
            raise Forbidden("missing or wrong CSRF token")

    def authorize(self, request: Request, role: str = Role.VIEWER, *,
                  form_token: str | None = None) -> Principal:
        """The principal if it may act as ``role`` (CSRF checked for unsafe cookie
        requests); ``NotAuthenticated`` or ``Forbidden`` otherwise."""
        principal = self.principal(request)
        if principal is None:
            raise NotAuthenticated("log in first")
        if not principal.may(role):
            raise Forbidden(f"needs the {role} role; {principal.username} is {principal.role}")
        if principal.is_client and not principal.user.partner_id:
            raise Forbidden(f"client {principal.username} is bound to no partner")
        self.check_csrf(principal, request, form_token)
        return principal

    def require(self, role: str = Role.VIEWER) -> Require:
        """A guard for ``role``: a FastAPI dependency (``Depends(auth.require("operator"))``)
        and a plain callable for Starlette handlers (``auth.require("admin")(request)``)."""
        _check_role(role)
        return Require(self, role)

    # -- login / logout, shared by the API and the pages -----------------------------------

    def login(self, request: Request, response: Response, username: str,
              password: str) -> Principal:
        """Check the password, start a session and set its cookie on ``response``."""
        user = self.users.authenticate(username, password)
        remote = request.client.host if request.client else None
        token, session = self.sessions.create(user, remote=remote)
        response.set_cookie(COOKIE, token, max_age=int(self.sessions.absolute.total_seconds()),
                            path="/", httponly=True, samesite="strict",
                            secure=self.secure_cookies or request.url.scheme == "https")
        principal = Principal(user=user, via="session", session=session)
        request.scope["edigw.principal"] = principal
        return principal

    def logout(self, request: Request, response: Response) -> None:
        """End the cookie's session (if any) and clear the cookie."""
        token = request.cookies.get(COOKIE)
        if token:
            self.sessions.end(token)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=self.secure_cookies or request.url.scheme == "https")


class Require:
    """A role guard (see ``Authenticator.require``)."""

    def __init__(self, auth: Authenticator, role: str) -> None:
        self.auth = auth
        self.role = role

    def __call__(self, request: Request) -> Principal:
        return self.auth.authorize(request, self.role)
