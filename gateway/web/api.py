"""The console's HTTP API: a FastAPI application mounted at ``/api`` (OpenAPI at
``/api/openapi.json``).

Every route but ``POST /api/login`` and the forgotten-password requests
(``POST /api/password-reset``, ``/confirm``) needs a logged-in user, the OpenAPI document
included.
Roles: a **viewer** (support) reads everything but users and the audit trail; an
**operator** also reprocesses transmissions, sends documents to partners
(``POST /api/outbound``), acknowledges and resolves alerts, lists,
releases and rejects conflicts (documents held because their number came before with other
content) and reads the audit trail; an **admin** also manages users (and partners). Anyone logged in manages their
own API tokens; an admin sees and revokes everyone's and may create one for another user.
Cookie-authenticated unsafe requests need the session's ``X-CSRF-Token`` (given by
``POST /api/login`` and ``GET /api/me``); Bearer tokens need none.

Conventions (docs/api.md): every error is an RFC 9457 problem document
(``application/problem+json``); lists answer one envelope
``{"total", "limit", "offset", "items"}`` with ``?limit=`` and ``?offset=``; the partner is
``partner_id`` (``?partner_id=``, the older ``?partner=`` still read); times are ISO 8601
with their offset (UTC).

``create_console(gateway)`` builds the application and its ``Authenticator`` from the
routers of ``gateway.web.routes`` (one per resource), with the problem documents of
``gateway.web.errors`` and the OpenAPI document of ``gateway.web.openapi``; mount ``console.routes`` (a ``Mount("/api", …)``) in the gateway's
Starlette app.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, FastAPI
from starlette.routing import Mount

from gateway.core.status import Role
from gateway.web import errors, openapi
from gateway.web.auth import Authenticator
from gateway.web.deps import ConsoleGateway, guard
from gateway.web.routes import PARTNERS, ROUTERS, account
from gateway.web.routes.manager import BODY_LIMITS as MANAGER_LIMITS
from gateway.web.routes.outbound import BODY_LIMITS as OUTBOUND_LIMITS
from gateway.web.routes.partners import UPLOAD_LIMITS
from gateway.web.routes.portal import BODY_LIMITS as PORTAL_LIMITS
from gateway.web.routes.portal import router as portal_router

API_DESCRIPTION = __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0] + """

Statistics (``GET /api/stats``): transmissions, documents and failures (FAILED or
QUARANTINED) per partner, channel and format per day or week; order value as the sum of the
order lines (line amount, else quantity × unit price) per currency; and the weekly share of
orders *received electronically*: orders in a format a partner's system writes (EDIFACT, XML,
CSV), against those a person typed or laid out for print (``MANUAL_FORMATS`` of
``gateway.formats.registry``)."""


@dataclass
class Console:
    """The API application, its authenticator, and the routes to mount."""

    api: FastAPI
    auth: Authenticator

    @property
    def routes(self) -> list[Mount]:
        return [Mount("/api", app=self.api, name="api")]

    @property
    def body_limits(self) -> list[tuple[str, int]]:
        """Console routes whose bodies may be larger than the server's ``max_json``
        (certificate uploads, of the API and of the pages): (path pattern, limit)."""
        return [*UPLOAD_LIMITS, *OUTBOUND_LIMITS, *PORTAL_LIMITS, *MANAGER_LIMITS]


def create_console(gateway: ConsoleGateway, *, secure_cookies: bool = False) -> Console:
    """The console API over a ``Gateway`` (``store``, ``archive``, ``partners``,
    ``settings``, ``pipeline``). ``secure_cookies`` marks the session cookie Secure even
    over plain http (behind a TLS-terminating proxy)."""
    auth = Authenticator(gateway.store, secure_cookies=secure_cookies)
    api = FastAPI(title="edigw", description=API_DESCRIPTION, version="1",
                  openapi_url=None, docs_url=None, redoc_url=None,
                  servers=[{"url": "/api"}])
    api.state.auth = auth
    api.state.gateway = gateway
    errors.install(api)
    for router in ROUTERS:
        api.include_router(router)
    api.include_router(PARTNERS, dependencies=[Depends(guard(Role.VIEWER))])
    api.include_router(account.router)  # /account (clients too), /password-reset (anyone)
    api.include_router(portal_router)
    openapi.install(api)
    return Console(api=api, auth=auth)


__all__ = ["API_DESCRIPTION", "Console", "create_console"]
