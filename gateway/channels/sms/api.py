"""The text-message channel's routes of the partner administration API, mounted under
``/partners`` (``/api/partners`` in the gateway)::

    POST   /partners/{id}/phones                   admin   {number}
    DELETE /partners/{id}/phones/{number}          admin   -

The web is imported when the router is built: the channels do not build on the console.
Annotations are evaluated as written here (no ``from __future__ import annotations``):
FastAPI reads the routes' parameter types, which are local to ``router``.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field


class Phone(BaseModel):
    """A number to add, as written (it is normalised to E.164)."""

    model_config = ConfigDict(extra="forbid")
    number: Annotated[str, Field(min_length=1)]


def router() -> APIRouter:
    """The routes, over ``PartnerAdmin`` as the partner API gives it."""
    from gateway.channels.sms import admin as phones
    from gateway.web.deps import Admin, remote
    from gateway.web.routes.partners import PartnerAdminDep, run_admin

    api = APIRouter()

    @api.post("/{pid}/phones", status_code=status.HTTP_201_CREATED,
              summary="Add an SMS number (normalised to E.164)")
    def add_phone(pid: str, body: Phone, request: Request, who: Admin,
            admin: PartnerAdminDep) -> dict[str, Any]:
        return run_admin(phones.add_phone, admin, who.username, pid, body.number,
                         remote=remote(request))

    @api.delete("/{pid}/phones/{number}", summary="Remove an SMS number")
    def remove_phone(pid: str, number: str, request: Request, who: Admin,
               admin: PartnerAdminDep) -> dict[str, Any]:
        return run_admin(phones.remove_phone, admin, who.username, pid, number,
                         remote=remote(request))

    return api
