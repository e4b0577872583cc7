"""Errors answered over HTTP: the one place where the exceptions of the core, the store
and the tracker get their status codes (the exceptions themselves know nothing of HTTP).

Each mapped exception answers ``{"detail": str(exc)}`` with the status of the first class
in ``STATUSES`` it is an instance of; ``install`` registers the handlers on an app.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.core.errors import PayloadPurged, ReprocessError, UnknownTransmission
from gateway.core.scope import OutOfScope
from gateway.store.conflicts import ConflictError, UnknownConflict
from gateway.tracker.alerts import AlertError, UnknownAlert
from gateway.web.auth import AuthError, NotAuthenticated

#: (exception class, HTTP status), the most specific first.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (UnknownTransmission, 404),
    (OutOfScope, 404),  # another partner's data, to a client: as if it did not exist
    (PayloadPurged, 410),
    (ReprocessError, 409),
    (UnknownAlert, 404),
    (AlertError, 409),
    (UnknownConflict, 404),
    (ConflictError, 409),
)


def status_of(exc: Exception) -> int:
    """The HTTP status answering ``exc`` (500 for one not mapped)."""
    if isinstance(exc, AuthError):
        return exc.status
    return next((code for cls, code in STATUSES if isinstance(exc, cls)), 500)


async def _mapped(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))


async def _auth(request: Request, exc: Exception) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc), headers=headers)


async def _out_of_range(request: Request, exc: Exception) -> Response:
    # A date or number past what Python or the store holds (year 0, 2**64 …) that got by
    # the parameters' own bounds: the client's mistake, not a 500.
    return JSONResponse({"detail": f"a number or date out of range: {exc}"}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the handlers: refusals of ``gateway.web.auth``, numbers out of range, and
    every class of ``STATUSES``."""
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(OverflowError, _out_of_range)
    for base in (ReprocessError, AlertError, ConflictError, OutOfScope):
        app.add_exception_handler(base, _mapped)
