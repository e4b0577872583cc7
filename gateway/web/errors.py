"""Errors answered over HTTP: every error of the console API is an RFC 9457 problem
document, and this is the one place where the exceptions of the core, the store and the
tracker get their status codes (the exceptions themselves know nothing of HTTP).

A problem document (``application/problem+json``)::

    {"type": "https://edigw.dev/problems/not-found", "title": "Not found", "status": 404,
     "detail": "no transmission 01abc", "instance": "/api/transmissions/01abc"}

``type`` names the kind of problem by its status (``PROBLEM_TYPES``; RFC 9457 §4.2's
``about:blank`` for a status not listed there) unless the raiser names a finer one
(``ApiProblem(kind=…)``); ``detail`` is the text the routes always answered; ``instance``
is the path asked for. Extension members say more where a client can use it: ``errors``
(each ``location`` and ``message``) on a request that fails validation, ``missing`` on a
partner not ready for its new state, ``error_id`` on a 500 (the log line's id: the
document itself tells nothing of the internals).

Sources, each answered by ``install``'s handlers:

- ``HTTPException`` raised by any router (a dict ``detail`` becomes the ``detail`` text —
  its ``detail`` or ``reason`` — and extension members), and Starlette's own 404 (no such
  path) and 405 (method not allowed, with its ``Allow`` header);
- ``RequestValidationError`` (422, ``errors``);
- the exceptions of ``STATUSES`` and every ``RequestRefused`` carrying a ``status`` (the
  refusals of ``gateway.web.auth``: 401 keeps ``WWW-Authenticate: Bearer``);
- ``OverflowError`` (a number or date past what Python or the store holds: 422);
- anything else: 500, logged with its traceback under the ``error_id`` it answers.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.errors import PayloadPurged, ReprocessError, RequestRefused, UnknownTransmission
from gateway.core.scope import OutOfScope
from gateway.store.conflicts import ConflictError, UnknownConflict
from gateway.tracker.alerts import AlertError, UnknownAlert
from gateway.web.auth import NotAuthenticated

log = structlog.get_logger("edigw.web")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://edigw.dev/problems/"

#: The problem type (a name under ``PROBLEM_BASE``) and title of each status the API answers.
PROBLEM_TYPES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("not-authenticated", "Not logged in"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflicts with the current state"),
    410: ("gone", "No longer kept"),
    413: ("too-large", "Request too large"),
    422: ("invalid-request", "Invalid request"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Unavailable for now, try again"),
}

#: The members RFC 9457 defines: an extension never overwrites them.
STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})

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


class ApiProblem(HTTPException):
    """An ``HTTPException`` that names its problem type (``kind``, a name under
    ``PROBLEM_BASE``) and carries extension members (``extensions``)."""

    def __init__(self, status: int, detail: str, /, *, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(status, detail, headers=headers)
        self.kind = kind
        self.extensions = extensions


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem_type(status: int, kind: str | None = None) -> tuple[str, str]:
    """The ``type`` URI and ``title`` of a problem of ``status`` (``kind``: a finer type)."""
    known = PROBLEM_TYPES.get(status)
    title = known[1] if known else _phrase(status)
    if kind:
        return PROBLEM_BASE + kind, title
    if known:
        return PROBLEM_BASE + known[0], title
    return "about:blank", title  # RFC 9457 §4.2.1: the title is then the status phrase


def problem(request: Request, status: int, detail: str, /, *, kind: str | None = None,
            headers: Mapping[str, str] | None = None, **extensions: Any) -> ProblemResponse:
    """The problem document answering ``request`` with ``status`` and ``detail``; an
    extension never replaces a member of RFC 9457's (``type``, ``status`` …)."""
    type_, title = problem_type(status, kind)
    body: dict[str, Any] = {k: v for k, v in extensions.items() if k not in STANDARD_MEMBERS}
    body.update(type=type_, title=title, status=status, detail=detail,
                instance=request.url.path)
    return ProblemResponse(body, status_code=status, headers=headers)


def status_of(exc: Exception) -> int:
    """The HTTP status answering ``exc`` (500 for one not mapped)."""
    declared = getattr(exc, "status", None)
    if isinstance(exc, RequestRefused) and isinstance(declared, int):
        return declared
    mapped = next((code for cls, code in STATUSES if isinstance(exc, cls)), None)
    if mapped is not None:
        return mapped
    return 400 if isinstance(exc, RequestRefused) else 500


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _detail_and_members(status: int, detail: Any) -> tuple[str, dict[str, Any]]:
    """A raiser's ``detail`` as the document's text and its extension members (a dict's
    keys but its text)."""
    if isinstance(detail, dict):
        members = dict(detail)
        text = members.pop("detail", None) or members.pop("reason", None)
        if text is None:
            text = "; ".join(f"{k}: {v}" for k, v in members.items()) or _phrase(status)
        return str(text), members
    return str(detail), {}


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status in (204, 304):  # no body allowed
        return Response(status_code=status, headers=exc.headers)
    detail, members = _detail_and_members(status, exc.detail)
    if detail == _phrase(status) and status in (404, 405):  # Starlette's own routing
        detail = (f"no API route {request.url.path}" if status == 404 else
                  f"{request.method} is not allowed on {request.url.path}")
    kind = None
    if isinstance(exc, ApiProblem):
        kind, members = exc.kind, {**members, **exc.extensions}
    return problem(request, status, detail, kind=kind, headers=exc.headers, **members)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each refused input: where (``query.limit``, ``body.username``) and why."""
    return [{"location": ".".join(str(part) for part in e.get("loc", ())),
             "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()]


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    said = [f"{e['location']}: {e['message']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return problem(request, 422, "; ".join(said) + more if said else "invalid request",
                   errors=errors)


async def _mapped(request: Request, exc: Exception) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
    return problem(request, status_of(exc), str(exc), headers=headers)


async def _out_of_range(request: Request, exc: Exception) -> Response:
    # A date or number past what Python or the store holds (year 0, 2**64 …) that got by
    # the parameters' own bounds: the client's mistake, not a 500.
    return problem(request, 422, f"a number or date out of range: {exc}")


class CrashAsProblem:
    """ASGI middleware: an exception no handler took is logged with its traceback and
    answered 500 as a problem document naming only the log line's ``error_id``.

    Starlette's own last-resort handler would answer, then raise the exception again to the
    server (a second traceback, and a crash in test clients); this one ends it here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            error_id = secrets.token_hex(6)
            request = Request(scope)
            log.error("api_error", error_id=error_id, method=request.method,
                      path=request.url.path, error=type(exc).__name__, exc_info=exc)
            if started:  # too late for a document: the server ends the response
                raise
            response = problem(request, 500, f"an unexpected error; logged as {error_id}",
                               error_id=error_id)
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers answering every error of ``app`` as a problem document."""
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(RequestRefused, _mapped)  # auth refusals, numbers out of bounds
    app.add_exception_handler(OverflowError, _out_of_range)
    for cls, _ in STATUSES:
        app.add_exception_handler(cls, _mapped)
    app.add_middleware(CrashAsProblem)


__all__ = ["PROBLEM_BASE", "PROBLEM_JSON", "PROBLEM_TYPES", "STATUSES", "ApiProblem",
           "CrashAsProblem", "ProblemResponse", "install", "problem", "problem_type",
           "status_of", "validation_errors"]
