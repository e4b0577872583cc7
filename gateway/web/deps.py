"""What the console's API routers depend on: who asks (role guards), the gateway and its
store from the app's state, and small conversions shared by the routers.

The guards are FastAPI dependencies reading ``request.app.state.auth`` (an
``Authenticator``); ``Viewer``, ``Operator`` and ``Admin`` are the annotated parameter types
a route declares to need that role; ``Reader`` admits a client too (a partner's own user),
and such a route reads only through ``who.scope`` (``gateway.core.scope``). The application state also holds the ``gateway``
(``store``, ``archive``, ``partners``, ``settings``, ``pipeline``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gateway.core.status import Role
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.store.records import aware
from gateway.web.auth import COOKIE, Authenticator, Principal


class ConsoleGateway(Protocol):
    """What the API reads of the ``Gateway``: its store, archive, partner directory,
    settings and pipeline (the last four as the gateway builds them)."""

    store: Store
    archive: Any
    partners: Any
    settings: Any
    pipeline: Any


def authenticator(request: Request) -> Authenticator:
    """The app's ``Authenticator`` (``app.state.auth``)."""
    auth: Authenticator = request.app.state.auth
    return auth


#: The two ways to be logged in, as the OpenAPI document declares them (either will do).
#: They only declare: ``Authenticator.authorize`` reads the request and refuses (401, with
#: ``WWW-Authenticate: Bearer``) as a problem document, not these classes.
BEARER = HTTPBearer(scheme_name="bearerAuth", auto_error=False,
                    description="an API token (`POST /api/tokens`), as "
                                "`Authorization: Bearer edigw_…`")
SESSION = APIKeyCookie(name=COOKIE, scheme_name="sessionCookie", auto_error=False,
                       description="the browser session of `POST /api/login`; unsafe "
                                   "methods also need its `X-CSRF-Token` header")


def guard(role: str) -> Callable[..., Principal]:
    """A dependency answering the principal when it may act as ``role`` (401 or 403 else,
    and 403 on an unsafe cookie request without its CSRF token). Every route using it is
    marked in the OpenAPI document as needing ``bearerAuth`` or ``sessionCookie``."""
    def require(request: Request,
                _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
                _session: Annotated[str | None, Depends(SESSION)]) -> Principal:
        return authenticator(request).authorize(request, role)

    require.__name__ = f"require_{role}"
    return require


#: Anyone logged in, a client included: the route must read through ``who.scope``.
Reader = Annotated[Principal, Depends(guard(Role.CLIENT))]
Viewer = Annotated[Principal, Depends(guard(Role.VIEWER))]
Operator = Annotated[Principal, Depends(guard(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(guard(Role.ADMIN))]

#: The refusals every guarded route may answer, for the OpenAPI document.
REFUSALS: dict[str, dict[str, Any]] = {
    "401": {"description": "not logged in"},
    "403": {"description": "role too low, or CSRF token missing (cookie sessions)"}}


def gateway_of(request: Request) -> ConsoleGateway:
    """The gateway the console runs over (``app.state.gateway``)."""
    gateway: ConsoleGateway = request.app.state.gateway
    return gateway


def store_of(request: Request) -> Store:
    """The gateway's store."""
    return gateway_of(request).store


def audit_of(request: Request) -> AuditLog:
    """The audit trail in the gateway's store."""
    return AuditLog(store_of(request))


Auth = Annotated[Authenticator, Depends(authenticator)]
Gateway = Annotated[ConsoleGateway, Depends(gateway_of)]
StoreDep = Annotated[Store, Depends(store_of)]
Audit = Annotated[AuditLog, Depends(audit_of)]


def remote(request: Request) -> str | None:
    """The client's address, for the audit trail and the log."""
    return request.client.host if request.client else None


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A query parameter's datetime in UTC (a naive one taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def iso(value: Any) -> Any:
    """``value`` with every datetime (in dicts, lists and dataclasses) as ISO 8601 text."""
    if isinstance(value, dt.datetime):
        return aware(value).isoformat()
    if isinstance(value, dict):
        return {k: iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iso(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return iso(asdict(value))
    return value
