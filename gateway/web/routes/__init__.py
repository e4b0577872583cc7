"""The console API's routers, one per resource, in the order the OpenAPI document lists
them; ``gateway.web.api.create_console`` mounts them all."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.web.routes import (
    alerts,
    audit,
    conflicts,
    manager,
    outbound,
    partners,
    pricelists,
    quarantine,
    search,
    session,
    stats,
    tokens,
    transmissions,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    session.router, transmissions.router, search.router, alerts.router, conflicts.router,
    users.router, tokens.router, audit.router, stats.router, pricelists.router,
    outbound.router, quarantine.router, manager.router)

#: The partner routes: each asks for at least a viewer on top of its own guard.
PARTNERS: APIRouter = partners.router
