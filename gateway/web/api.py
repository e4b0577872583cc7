"""The console's HTTP API: a FastAPI application mounted at ``/api`` (OpenAPI at
``/api/openapi.json``).

Every route but ``POST /api/login`` needs a logged-in user, the OpenAPI document included.
Roles: a **viewer** (support) reads everything but users and the audit trail; an
**operator** also reprocesses transmissions, acknowledges and resolves alerts, lists,
releases and rejects conflicts (documents held because their number came before with other
content) and reads the audit trail; an **admin** also manages users (and partners). Anyone logged in manages their
own API tokens; an admin sees and revokes everyone's and may create one for another user.
Cookie-authenticated unsafe requests need the session's ``X-CSRF-Token`` (given by
``POST /api/login`` and ``GET /api/me``); Bearer tokens need none.

``create_console(gateway)`` builds the application and its ``Authenticator``; mount
``console.routes`` (a ``Mount("/api", …)``) in the gateway's Starlette app.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

import sqlalchemy as sa
import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.routing import Mount

from gateway.core import clock
from gateway.core.reprocess import (
    PayloadPurged,
    Reprocessed,
    ReprocessError,
    UnknownTransmission,
    reprocess,
)
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.conflicts import ConflictDesk, ConflictError, UnknownConflict
from gateway.store.erp import ErpAcks
from gateway.store.records import TransmissionRow, aware
from gateway.store.transport import transport_of
from gateway.tracker import explain as tracker_explain
from gateway.tracker.alerts import AlertBook, AlertError, UnknownAlert
from gateway.web import stats
from gateway.web.auth import (
    Authenticator,
    AuthError,
    LoginRefused,
    NotAuthenticated,
    Principal,
    UserError,
)
from gateway.web.numbers import Offset, RowId

log = structlog.get_logger("edigw.web")

API_DESCRIPTION = __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0] + """

Statistics (``GET /api/stats``): transmissions, documents and failures (FAILED or
QUARANTINED) per partner, channel and format per day or week; order value as the sum of the
order lines (line amount, else quantity × unit price) per currency; and the weekly share of
orders *received electronically*: orders in a format a partner's system writes (EDIFACT, XML,
CSV), against those a person typed (SMS) or laid out for print (PDF)."""


# -- reprocessing: gateway.core.reprocess (shared with the CLI) -------------------------------

# -- EDIFACT, one segment per line -------------------------------------------------------------


def edifact_segments(data: bytes) -> list[str]:
    """The segments of an EDIFACT payload as sent, one string each (decoded with the
    gateway's charset rules and cut where its tokenizer finds each tag; wrapped lines
    joined)."""
    from gateway.formats.edifact.charset import decode
    from gateway.formats.edifact.tokenizer import tokenize

    text, _syntax, _warnings = decode(data)
    offsets = [seg.offset for chunk in tokenize(text)
               for seg in ([chunk.una] if chunk.una else []) + chunk.segments
               + ([chunk.unterminated] if chunk.unterminated else [])]
    offsets.sort()
    ends = offsets[1:] + [len(text)]
    return [re.sub(r"[\r\n]", "", text[a:b]).strip() for a, b in zip(offsets, ends, strict=True)]


# -- models ------------------------------------------------------------------------------------


class LoginIn(BaseModel):
    username: str
    password: str


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


class MeOut(BaseModel):
    user: UserOut
    via: Literal["session", "token"]
    csrf_token: str | None = Field(None, description="send as X-CSRF-Token (cookie sessions)")


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


class TokenIn(BaseModel):
    name: str
    user: str | None = Field(None, description="admin only: create it for this user")
    expires_at: dt.datetime | None = None


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: str | None
    last_used_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself, shown only now")


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, description="why (recorded with who asked)")


class NoteIn(BaseModel):
    note: str | None = None


class OptionalReasonIn(BaseModel):
    reason: str | None = Field(None, description="why (kept in the audit trail)")


class DifferenceOut(BaseModel):
    path: str = Field(description="e.g. totals.payable, lines[2].quantity")
    before: str | None = Field(description="in the earlier document (absent: null)")
    after: str | None = Field(description="in the held document (absent: null)")


class ConflictOut(BaseModel):
    document: dict[str, Any] = Field(description="the held (or rejected) document")
    earlier: dict[str, Any] | None = Field(description="the earlier document with its number")
    summary: str
    total: int = Field(description="how many differences in all")
    differences: list[DifferenceOut] = Field(description="the first of them, in order")


class ReprocessOut(BaseModel):
    transmission_id: str
    attempt_id: str
    status: str
    partner_id: str | None = None
    documents: int
    queued: int
    stage: str | None = None
    reason: str | None = None


class TransmissionOut(BaseModel):
    id: str
    channel: str
    channel_ref: str | None = None
    partner_id: str | None = None
    filename: str | None = None
    size: int
    sha256: str
    received_at: str
    acknowledged_at: str | None = None
    status: str
    stage: str | None = None
    reason: str | None = None
    format: str | None = None
    standard: str | None = None
    document_count: int
    duplicate_of: str | None = None
    updated_at: str
    reprocess_of: str | None = None
    requested_by: str | None = None
    request_reason: str | None = None
    purged_at: str | None = None


class TransmissionPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[TransmissionOut]


class AlertOut(BaseModel):
    id: int
    kind: str
    partner: str | None = None
    key: str
    status: str
    summary: str
    detail: dict[str, Any]
    opened_at: str
    last_seen_at: str
    occurrences: int
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    note: str | None = None
    mailed_at: str | None = None


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str | None = None
    before: Any = None
    after: Any = None
    remote: str | None = None


class StatsOut(BaseModel):
    since: str
    until: str
    bucket: Literal["day", "week"]
    volume: list[dict[str, Any]]
    value: list[dict[str, Any]]
    electronic_share: list[dict[str, Any]]


class SearchOut(BaseModel):
    verdict: str
    summary: str
    evidence: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    transmissions: list[dict[str, Any]]
    query: dict[str, Any]
    hits: list[dict[str, Any]]


# -- guards ----------------------------------------------------------------------------------


def _guard(role: str) -> Callable[[Request], Principal]:
    def guard(request: Request) -> Principal:
        return request.app.state.auth.authorize(request, role)  # type: ignore[no-any-return]

    guard.__name__ = f"require_{role}"
    return guard


Viewer = Annotated[Principal, Depends(_guard(s.ROLE_VIEWER))]
Operator = Annotated[Principal, Depends(_guard(s.ROLE_OPERATOR))]
Admin = Annotated[Principal, Depends(_guard(s.ROLE_ADMIN))]

#: The refusals every guarded route may answer, for the OpenAPI document.
_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not logged in"},
    403: {"description": "role too low, or CSRF token missing (cookie sessions)"}}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return aware(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _iso(asdict(value))
    return value


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


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
        from gateway.web.api_partners import UPLOAD_LIMITS

        return list(UPLOAD_LIMITS)


def create_console(gateway: Any, *, secure_cookies: bool = False) -> Console:
    """The console API over a ``Gateway`` (``store``, ``archive``, ``partners``,
    ``settings``, ``pipeline``). ``secure_cookies`` marks the session cookie Secure even
    over plain http (behind a TLS-terminating proxy)."""
    auth = Authenticator(gateway.store, secure_cookies=secure_cookies)
    api = FastAPI(title="edigw", description=API_DESCRIPTION, version="1",
                  openapi_url=None, docs_url=None, redoc_url=None,
                  servers=[{"url": "/api"}], responses=_REFUSALS)
    api.state.auth = auth
    api.state.gateway = gateway
    store = gateway.store
    audit = AuditLog(store)

    @api.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @api.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: OverflowError) -> Response:
        # A date or number past what Python or the store holds (year 0, 2**64 …) that got
        # by the parameters' own bounds: the client's mistake, not a 500.
        return JSONResponse({"detail": f"a number or date out of range: {exc}"},
                            status_code=422)

    @api.exception_handler(ReprocessError)
    async def reprocess_error(request: Request, exc: ReprocessError) -> Response:
        status = 404 if isinstance(exc, UnknownTransmission) else \
            410 if isinstance(exc, PayloadPurged) else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @api.exception_handler(AlertError)
    async def alert_error(request: Request, exc: AlertError) -> Response:
        status = 404 if isinstance(exc, UnknownAlert) else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @api.exception_handler(ConflictError)
    async def conflict_error(request: Request, exc: ConflictError) -> Response:
        status = 404 if isinstance(exc, UnknownConflict) else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(who: Viewer) -> dict[str, Any]:
        return api.openapi()

    # -- session ---------------------------------------------------------------------------

    @api.post("/login", summary="Log in (sets the session cookie)", response_model=MeOut,
              tags=["session"], responses={401: {"description": "login refused"}})
    def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
        try:
            principal = auth.login(request, response, body.username, body.password)
        except LoginRefused as exc:
            log.warning("login_refused", reason=exc.reason, remote=_remote(request))
            raise
        return {"user": principal.user.as_dict(), "via": principal.via,
                "csrf_token": principal.csrf_token}

    @api.post("/logout", summary="Log out (ends the session)", status_code=204,
              tags=["session"], response_class=Response)
    def logout(who: Viewer, request: Request) -> Response:
        response = Response(status_code=204)
        auth.logout(request, response)
        return response

    @api.get("/me", summary="Who is logged in", response_model=MeOut, tags=["session"])
    def me(who: Viewer) -> dict[str, Any]:
        return {"user": who.user.as_dict(), "via": who.via, "csrf_token": who.csrf_token}

    # -- transmissions ---------------------------------------------------------------------

    def _transmission(tid: str) -> TransmissionRow:
        t = store.get_transmission(tid)
        if t is None:
            raise HTTPException(404, f"no transmission {tid}")
        return t

    @api.get("/transmissions", summary="The transmission log, newest first",
             response_model=TransmissionPage, tags=["transmissions"])
    def transmissions(who: Viewer, partner: str | None = None, channel: str | None = None,
                      status: str | None = None, format: str | None = None,
                      since: dt.datetime | None = None, until: dt.datetime | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: Offset = 0) -> dict[str, Any]:
        t = s.transmissions
        conds = []
        if partner:
            conds.append(t.c.partner_id == partner)
        if channel:
            conds.append(t.c.channel == channel)
        if status:
            conds.append(t.c.status.in_([x.strip().upper() for x in status.split(",")]))
        if format:
            conds.append(t.c.format == format)
        if since:
            conds.append(t.c.received_at >= _utc(since))
        if until:
            conds.append(t.c.received_at < _utc(until))
        with store.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(t).where(*conds)).scalar()
            rows = conn.execute(sa.select(t).where(*conds)
                                .order_by(t.c.received_at.desc(), t.c.id.desc())
                                .limit(limit).offset(offset)).all()
        return {"total": total, "limit": limit, "offset": offset,
                "items": [TransmissionRow.from_row(r).as_dict() for r in rows]}

    @api.get("/transmissions/{tid}", summary="One transmission with its timeline, documents "
             "(with the ERP's answer), interchanges, outbound payloads and transport",
             tags=["transmissions"], responses={404: {"description": "unknown"}})
    def transmission(who: Viewer, tid: str) -> dict[str, Any]:
        t = _transmission(tid)
        attempts = [r.id for r in _attempts_of(store, t.id)]
        return _iso({"transmission": t.as_dict(), "timeline": store.events(t.id),
                     "documents": [d.as_dict() for d in store.documents_of(t.id)],
                     "erp": ErpAcks(store).erp_summary([t.id]).get(t.id),
                     "interchanges": store.interchanges_of(t.id),
                     "outbound": [o.as_dict() for o in store.outbound_of(t.id)],
                     "transport": transport_of(store, t.id),
                     "reprocess_chain": store.reprocess_chain(t.id),
                     "attempts": attempts})

    @api.get("/transmissions/{tid}/raw", summary="The raw payload as received (download)",
             tags=["transmissions"], response_class=StreamingResponse,
             responses={200: {"content": {"application/octet-stream": {}}},
                        404: {"description": "unknown"},
                        410: {"description": "purged by retention"}})
    def raw(who: Viewer, tid: str) -> Response:
        t = _transmission(tid)
        if t.purged_at is not None or t.sha256 not in gateway.archive:
            raise HTTPException(410, f"the payload of {t.id} is no longer archived")
        name = os.path.basename(t.filename or "") or f"{t.id}.bin"
        # Quotes, backslashes and control characters would break (or end) the header.
        ascii_name = re.sub(r'[\x00-\x1f\x7f"\\]', "_",
                            name.encode("ascii", "replace").decode())
        disposition = (f"attachment; filename=\"{ascii_name}\"; "
                       f"filename*=UTF-8''{quote(name)}")
        blocks: Iterator[bytes] = gateway.archive.blocks(t.sha256)
        return StreamingResponse(blocks, media_type="application/octet-stream",
                                 headers={"Content-Disposition": disposition,
                                          "Content-Length": str(t.size)})

    @api.get("/transmissions/{tid}/segments", summary="An EDIFACT payload, one segment per "
             "line", tags=["transmissions"], response_class=PlainTextResponse,
             responses={404: {"description": "unknown"},
                        409: {"description": "not EDIFACT"},
                        410: {"description": "purged by retention"}})
    def segments(who: Viewer, tid: str) -> Response:
        t = _transmission(tid)
        if t.purged_at is not None or t.sha256 not in gateway.archive:
            raise HTTPException(410, f"the payload of {t.id} is no longer archived")
        data = gateway.archive.get(t.sha256)
        head = data.lstrip(b"\xef\xbb\xbf \r\n\t")[:3]
        if t.format not in (None, "edifact") or head not in (b"UNA", b"UNB"):
            raise HTTPException(409, f"{t.id} is not EDIFACT ({t.format or 'unread'})")
        return PlainTextResponse("\n".join(edifact_segments(data)) + "\n")

    @api.post("/transmissions/{tid}/reprocess", summary="Reprocess a failed transmission "
              "(a new attempt, with who asked and why)", response_model=ReprocessOut,
              tags=["transmissions"],
              responses={404: {"description": "unknown"},
                         409: {"description": "nothing to reprocess"},
                         410: {"description": "payload purged"}})
    def reprocess_route(who: Operator, tid: str, body: ReasonIn,
                        request: Request) -> dict[str, Any]:
        done = reprocess(gateway, tid, by=who.username, reason=body.reason)
        audit.record(who.username, "transmission.reprocess", f"transmission:{done.transmission_id}",
                     after={"attempt": done.attempt_id, "status": done.status,
                            "reason": body.reason}, remote=_remote(request))
        return asdict(done)

    @api.get("/documents/{document_id}", summary="A document's canonical JSON",
             tags=["transmissions"], responses={404: {"description": "unknown"}})
    def document(who: Viewer, document_id: str) -> dict[str, Any]:
        d = s.documents
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(*[c for c in d.c if c.name != "payload"])
                               .where(d.c.id == document_id)).first()
        if row is None:
            raise HTTPException(404, f"no document {document_id}")
        meta = {k: _iso(v) for k, v in row._mapping.items()}
        return {"document": meta, "canonical": store.document_payload(document_id)}

    # -- search ------------------------------------------------------------------------------

    @api.get("/search", summary="Where is order X: the tracker's verdict with its evidence",
             response_model=SearchOut, tags=["search"],
             responses={422: {"description": "no criterion given"}})
    def search(who: Viewer, number: str | None = None, partner: str | None = None,
               interchange: str | None = None, file: str | None = None,
               since: dt.datetime | None = None, until: dt.datetime | None = None,
               doc_type: str | None = None) -> dict[str, Any]:
        if not any((number, partner, interchange, file)):
            raise HTTPException(422, "give a number, partner, interchange or file")
        criteria = dict(number=number, partner=partner, interchange_ref=interchange,
                        filename=file, since=_utc(since), until=_utc(until), doc_type=doc_type)
        verdict = tracker_explain.explain(store, gateway.partners, gateway.settings,
                                          archive=gateway.archive, **criteria)
        hits = tracker_explain.search(store, **criteria)
        return {**verdict.as_dict(), "hits": [h.as_dict() for h in hits]}

    # -- alerts -----------------------------------------------------------------------------

    @api.get("/alerts", summary="Alerts, newest first", response_model=list[AlertOut],
             tags=["alerts"])
    def alerts(who: Viewer, status: str | None = None, partner: str | None = None,
               kind: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        wanted = [x.strip() for x in status.split(",")] if status else None
        return [a.as_dict() for a in AlertBook(store).list(wanted, partner, kind, limit)]

    def _alert_action(action: str) -> Callable[..., dict[str, Any]]:
        def act(who: Operator, alert_id: RowId, body: NoteIn, request: Request) -> dict[str, Any]:
            book = AlertBook(store)
            before = book.get(alert_id)
            after = getattr(book, action)(alert_id, who.username, body.note)
            audit.record(who.username, f"alert.{action}", f"alert:{alert_id}",
                         before={"status": before.status},
                         after={"status": after.status, "note": body.note},
                         remote=_remote(request))
            return after.as_dict()  # type: ignore[no-any-return]

        act.__name__ = f"alert_{action}"
        return act

    for action in ("acknowledge", "resolve"):
        api.post(f"/alerts/{{alert_id}}/{action}", summary=f"{action.capitalize()} an alert",
                 response_model=AlertOut, tags=["alerts"],
                 responses={404: {"description": "unknown"},
                            409: {"description": "not allowed in its status"}}
                 )(_alert_action(action))

    # -- conflicts ----------------------------------------------------------------------------

    desk = ConflictDesk(store)

    @api.get("/conflicts", summary="Documents held as conflicts (operator, admin), newest "
             "first, with what differs", response_model=list[ConflictOut], tags=["conflicts"])
    def conflicts(who: Operator, partner: str | None = None, rejected: bool = False,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        status = s.DOC_REJECTED if rejected else s.DOC_CONFLICT
        return [_iso(c.as_dict()) for c in desk.list(partner=partner, status=status,
                                                     limit=limit)]

    @api.get("/conflicts/{document_id}", summary="One conflict: both documents and every "
             "difference", response_model=ConflictOut, tags=["conflicts"],
             responses={404: {"description": "unknown"},
                        409: {"description": "never a conflict"}})
    def conflict(who: Operator, document_id: str) -> dict[str, Any]:
        return _iso(desk.get(document_id).as_dict())  # type: ignore[no-any-return]

    @api.post("/conflicts/{document_id}/release", summary="Release a held conflict: queued "
              "for publishing under its own message id", response_model=ConflictOut,
              tags=["conflicts"], responses={404: {"description": "unknown"},
                                             409: {"description": "not held"}})
    def release_conflict(who: Operator, document_id: str, body: OptionalReasonIn,
                         request: Request) -> dict[str, Any]:
        desk.release(document_id, by=who.username, reason=body.reason,
                     remote=_remote(request))
        return _iso(desk.get(document_id).as_dict())  # type: ignore[no-any-return]

    @api.post("/conflicts/{document_id}/reject", summary="Reject a held conflict (a reason "
              "is required): never published", response_model=ConflictOut,
              tags=["conflicts"], responses={404: {"description": "unknown"},
                                             409: {"description": "not held"}})
    def reject_conflict(who: Operator, document_id: str, body: ReasonIn,
                        request: Request) -> dict[str, Any]:
        desk.reject(document_id, by=who.username, reason=body.reason, remote=_remote(request))
        return _iso(desk.get(document_id).as_dict())  # type: ignore[no-any-return]

    # -- users and tokens --------------------------------------------------------------------

    @api.get("/users", summary="Users (admin)", response_model=list[UserOut], tags=["users"])
    def users(who: Admin) -> list[dict[str, Any]]:
        return [u.as_dict() for u in auth.users.list()]

    @api.post("/users", summary="Create a user (admin)", response_model=UserOut,
              status_code=201, tags=["users"])
    def create_user(who: Admin, body: UserIn, request: Request) -> dict[str, Any]:
        user = auth.users.create(body.username, body.password, body.role,
                                 display_name=body.display_name, email=body.email)
        audit.record(who.username, "user.create", f"user:{user.username}",
                     after=_user_audit(user.as_dict()), remote=_remote(request))
        return user.as_dict()

    @api.patch("/users/{username}", summary="Change a user's role, password, profile, or "
               "disable/enable it (admin)", response_model=UserOut, tags=["users"],
               responses={404: {"description": "unknown"}})
    def patch_user(who: Admin, username: str, body: UserPatch,
                   request: Request) -> dict[str, Any]:
        old = auth.users.by_username(username)
        if old is None:
            raise HTTPException(404, f"no user {username}")
        if body.role is not None and body.role != old.role:
            auth.users.set_role(username, body.role)
        if body.display_name is not None or body.email is not None:
            auth.users.set_profile(username,
                                   display_name=body.display_name or old.display_name,
                                   email=body.email or old.email)
        if body.password:
            auth.users.set_password(username, body.password)
        if body.disabled is True and not old.disabled:
            auth.users.disable(username)
        elif body.disabled is False and old.disabled:
            auth.users.enable(username)
        new = auth.users.by_username(username)
        assert new is not None
        after = _user_audit(new.as_dict())
        if body.password:
            after["password"] = "changed"  # masked by the audit trail
        audit.record(who.username, "user.update", f"user:{username}",
                     before=_user_audit(old.as_dict()), after=after, remote=_remote(request))
        return new.as_dict()

    @api.get("/tokens", summary="API tokens: your own (an admin sees all)",
             response_model=list[TokenOut], tags=["tokens"])
    def tokens(who: Viewer) -> list[dict[str, Any]]:
        user_id = None if who.may(s.ROLE_ADMIN) else who.user.id
        return [t.as_dict() for t in auth.tokens.list(user_id=user_id)]

    @api.post("/tokens", summary="Create an API token (shown once); an admin may name "
              "another user", response_model=NewTokenOut, status_code=201, tags=["tokens"])
    def create_token(who: Viewer, body: TokenIn, request: Request) -> dict[str, Any]:
        owner = who.user
        if body.user and body.user != who.username:
            if not who.may(s.ROLE_ADMIN):
                raise HTTPException(403, "only an admin creates tokens for others")
            found = auth.users.by_username(body.user)
            if found is None:
                raise HTTPException(404, f"no user {body.user}")
            owner = found
        token, record = auth.tokens.create(owner, body.name, expires_at=_utc(body.expires_at))
        audit.record(who.username, "token.create", f"user:{owner.username}",
                     after={"id": record.id, "name": record.name, "prefix": record.prefix},
                     remote=_remote(request))
        return {**record.as_dict(), "token": token}

    @api.delete("/tokens/{token_id}", summary="Revoke an API token (your own; an admin any)",
                response_model=TokenOut, tags=["tokens"],
                responses={404: {"description": "unknown"}})
    def revoke_token(who: Viewer, token_id: RowId, request: Request) -> dict[str, Any]:
        record = auth.tokens.get(token_id)
        if record is None or (record.user_id != who.user.id and not who.may(s.ROLE_ADMIN)):
            raise HTTPException(404, f"no token {token_id}")
        done = auth.tokens.revoke(token_id)
        audit.record(who.username, "token.revoke", f"user:{record.username}",
                     before={"id": record.id, "name": record.name, "prefix": record.prefix},
                     after={"revoked_at": _iso(done.revoked_at)}, remote=_remote(request))
        return done.as_dict()

    # -- audit and statistics ------------------------------------------------------------------

    @api.get("/audit", summary="The audit trail, newest first (operator, admin)",
             response_model=list[AuditOut], tags=["audit"])
    def audit_trail(who: Operator, target: str | None = None, actor: str | None = None,
                    action: str | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Offset = 0) -> list[dict[str, Any]]:
        return [e.as_dict() for e in audit.list(target=target, actor=actor, action=action,
                                                since=_utc(since), until=_utc(until),
                                                limit=limit, offset=offset)]

    @api.get("/stats", summary="Volume, failures, order value and electronic share per "
             "partner and channel over time", response_model=StatsOut, tags=["stats"])
    def statistics(who: Viewer, since: dt.datetime | None = None,
                   until: dt.datetime | None = None,
                   bucket: Literal["day", "week"] = "day",
                   partner: str | None = None) -> dict[str, Any]:
        end = _utc(until) or clock.now().astimezone(dt.UTC)
        start = _utc(since) or end - dt.timedelta(weeks=12)
        return {"since": start.isoformat(), "until": end.isoformat(), "bucket": bucket,
                "volume": [r.as_dict() for r in stats.volume(store, start, end, bucket, partner)],
                "value": [r.as_dict() for r in stats.value(store, start, end, bucket, partner)],
                "electronic_share": [r.as_dict() for r in stats.electronic_share(
                    store, start, end, "week", partner)]}

    _include_partners(api)
    return Console(api=api, auth=auth)


def _user_audit(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in ("username", "display_name", "email", "role", "disabled")}


def _attempts_of(store: Any, tid: str) -> list[TransmissionRow]:
    t = s.transmissions
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.reprocess_of == tid)
                            .order_by(t.c.received_at)).all()
    return [TransmissionRow.from_row(r) for r in rows]


def _include_partners(api: FastAPI) -> None:
    """The partner administration routes (``gateway.web.api_partners.router``), when
    present; every one of them needs at least a viewer, their own guards ask for more."""
    try:
        from gateway.web.api_partners import router
    except ImportError:
        return
    api.include_router(router, dependencies=[Depends(_guard(s.ROLE_VIEWER))])


__all__ = ["Console", "PayloadPurged", "ReprocessError", "Reprocessed", "UnknownTransmission",
           "UserError", "create_console", "edifact_segments", "reprocess"]
