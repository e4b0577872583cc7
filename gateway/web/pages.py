"""The operator console's pages: server-rendered HTML (Jinja2), charts drawn as inline SVG,
a little vanilla JavaScript for the live transmission log.

``page_routes(auth)`` gives the routes to mount at the root of the gateway's HTTP app; the
pages find the gateway (``store``, ``archive``, ``partners``, ``settings``, ``pipeline``) on
``request.app.state.gateway``. Who may see what:

- nobody is sent to ``/login`` (then back where they were going);
- a viewer reads every page but ``/audit``; an operator also reprocesses and acknowledges or
  resolves alerts and reads the audit trail; an admin also changes partners;
- a role that may not do something gets a 403 page saying so ("refused");
- every form posts the session's CSRF token; the login form, before any session exists,
  carries a token matched against a short-lived cookie (login CSRF, double submit).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, PrefixLoader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.channels.registry import CHANNEL_NAMES, CHANNELS
from gateway.core import clock
from gateway.core.reprocess import ReprocessError
from gateway.core.reprocess import reprocess as replay
from gateway.core.status import (
    AlertState,
    DocumentStatus,
    Role,
)
from gateway.core.status import TransmissionStatus as T
from gateway.core.zone import shown, zone_of
from gateway.formats.registry import FORMAT_NAMES, MANUAL_FORMATS
from gateway.store.audit import AuditLog
from gateway.store.channels import ChannelHealth, ChannelRecords
from gateway.store.conflicts import ConflictDesk, ConflictError
from gateway.store.db import Store
from gateway.store.read import stats
from gateway.store.read.activity import (
    last_contact,
    open_alert_count,
    open_alerts_by_partner,
)
from gateway.tracker.alerts import AlertBook
from gateway.web import charts, manager
from gateway.web.auth import (
    CSRF_FIELD,
    Authenticator,
    Forbidden,
    LoginRefused,
    NotAuthenticated,
    Principal,
)
from gateway.web.portal import portal_routes
from gateway.web.routes.pricelists import price_lists_page
from gateway.web.transmission_page import transmission

log = structlog.get_logger("edigw.web")

HERE = Path(__file__).parent
LOGIN_COOKIE = "edigw_login_csrf"
STATUS_CLASS = {T.RECEIVED: "st-received", T.PROCESSED: "st-processed",
                T.PUBLISHED: "st-published", T.FAILED: "st-failed",
                T.QUARANTINED: "st-quarantined", T.DUPLICATE: "st-duplicate",
                T.PARTIAL: "st-partial", T.HELD: "st-held", T.RENDERED: "st-rendered",
                T.SENT: "st-sent", T.DELIVERED: "st-delivered"}
#: The chart's name for orders a person typed or printed: the manual formats, by name.
MANUAL_LABEL = "typed or printed (" + ", ".join(
    name.upper() for name in FORMAT_NAMES if name in MANUAL_FORMATS) + ")"


def _channel_templates() -> dict[str, BaseLoader]:
    """Each channel's console fragments (its folder's ``templates/``), under its name:
    ``<channel>/transport.html``, ``<channel>/partner.html``."""
    found: dict[str, BaseLoader] = {}
    for kind in CHANNELS:
        module = import_module(f"gateway.channels.{kind.name}")
        folder = Path(module.__file__ or "").parent / "templates"
        if folder.is_dir():
            found[kind.name] = FileSystemLoader(str(folder))
    return found


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.loader = ChoiceLoader([FileSystemLoader(str(HERE / "templates")),
                                     PrefixLoader(_channel_templates())])
#: The channels with an administration form on a partner's page, in the registry's order.
PARTNER_FORMS = tuple(kind.name for kind in CHANNELS if kind.partner_form is not None)


# -- helpers ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Page:
    """What a handler gets: the request, who asks, the posted form, and the gateway."""

    request: Request
    who: Principal
    form: FormData | None
    gateway: Any

    @property
    def store(self) -> Any:
        return self.gateway.store

    @property
    def tz(self) -> ZoneInfo:
        """The gateway's one time zone (UTC in a bare test app without settings)."""
        return zone_of(getattr(self.gateway, "settings", None))

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def render(self, name: str, status: int = 200, **context: Any) -> Response:
        context.update(who=self.who, csrf=self.who.csrf_token or "", path=self.request.url.path,
                       tz=self.tz, fmt=lambda at: _local(at, self.tz))
        return templates.TemplateResponse(self.request, name, context, status_code=status)


def _local(at: dt.datetime | None, tz: ZoneInfo) -> str:
    return shown(at, tz, abbreviation=False)


def _refused(request: Request, who: Principal | None, reason: str) -> Response:
    return templates.TemplateResponse(
        request, "refused.html", dict(who=who, csrf=(who.csrf_token or "") if who else "",
                                      path=request.url.path, reason=reason), status_code=403)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (not ``//evil`` nor a URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


Handler = Callable[[Page], Response]


def _guard(auth: Authenticator, role: str, handler: Handler
           ) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate and authorise (CSRF for posts), then run ``handler`` in a worker thread
    (it reads the store)."""

    async def endpoint(request: Request) -> Response:
        form = await request.form() if request.method == "POST" else None
        token = form.get(CSRF_FIELD) if form is not None else None
        try:
            who = await run_in_threadpool(auth.authorize, request, role,
                                          form_token=token if isinstance(token, str) else None)
        except NotAuthenticated:
            if request.method != "GET":
                return _refused(request, None, "log in first")
            return RedirectResponse("/login?next=" + quote(str(request.url.path) + (
                "?" + request.url.query if request.url.query else ""), safe=""), 303)
        except Forbidden as exc:
            asking = auth.principal(request)
            if asking is not None and asking.is_client and request.url.path == "/":
                return RedirectResponse("/portal", 303)  # a client's home is its portal
            return _refused(request, asking, str(exc))
        page = Page(request=request, who=who, form=form, gateway=request.app.state.gateway)
        return await run_in_threadpool(handler, page)

    return endpoint


# -- login ------------------------------------------------------------------------------------


def _login_routes(auth: Authenticator) -> list[Route]:
    def login_form(request: Request, error: str | None = None, status: int = 200,
                   next_: str | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        target = _safe_next(next_ or request.query_params.get("next"))
        response = templates.TemplateResponse(
            request, "login.html", dict(who=None, csrf=token, error=error, path="/login",
                                        next=target), status_code=status)
        response.set_cookie(LOGIN_COOKIE, token, max_age=1800, path="/login", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return login_form(request)
        form = await request.form()
        sent, kept = str(form.get(CSRF_FIELD, "")), request.cookies.get(LOGIN_COOKIE, "")
        if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
            return login_form(request, "The form expired; please try again.", 403,
                              str(form.get("next", "")))
        response = RedirectResponse(_safe_next(str(form.get("next", "/"))), 303)
        try:
            who = await run_in_threadpool(auth.login, request, response,
                                          str(form.get("username", "")).strip(),
                                          str(form.get("password", "")))
        except LoginRefused as exc:
            log.info("console_login_refused", reason=exc.reason if hasattr(exc, "reason")
                     else str(exc))
            # Never say which of the two was wrong.
            return login_form(request, "Wrong user name or password.", 401,
                              str(form.get("next", "")))
        log.info("console_login", user=who.username, role=who.role)
        if who.is_client and not response.headers["location"].startswith("/portal"):
            response.headers["location"] = "/portal"  # a client lands in its portal
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request) -> Response:
        form = await request.form()
        who = await run_in_threadpool(auth.principal, request)
        response = RedirectResponse("/login", 303)
        if who is not None:
            try:
                auth.check_csrf(who, request, str(form.get(CSRF_FIELD, "")))
            except Forbidden as exc:
                return _refused(request, who, str(exc))
            await run_in_threadpool(auth.logout, request, response)
        return response

    return [Route("/login", login, methods=["GET", "POST"], name="login"),
            Route("/logout", logout, methods=["POST"], name="logout")]


# -- dashboard --------------------------------------------------------------------------------


def _days(end: dt.date, n: int) -> list[dt.date]:
    return [end - dt.timedelta(days=n - 1 - i) for i in range(n)]


def _volume_charts(store: Any, since: dt.datetime, days: list[dt.date],
                   partner: str | None = None) -> dict[str, str]:
    totals = stats.volume_totals(store, since, None, partner)
    labels = [d.strftime("%m-%d") for d in days]

    def by(per_day: dict[dt.date, dict[Any, int]], name: Callable[[Any], str]
           ) -> list[charts.Series]:
        acc: dict[str, list[float | None]] = {}
        for i, day in enumerate(days):
            for key, n in per_day.get(day, {}).items():
                acc.setdefault(name(key), [0] * len(days))[i] += n  # type: ignore[operator]
        return [charts.Series(k, v) for k, v in sorted(acc.items())]

    failures = [float(totals.failures.get(day, 0)) for day in days]
    return dict(
        channel=charts.bar_chart("Transmissions per day and channel", labels,
                                 by(totals.by_channel, str), integer=True),
        format=charts.bar_chart("Transmissions per day and format", labels,
                                by(totals.by_format, lambda f: f or "unknown"),
                                integer=True),
        failures=charts.line_chart("Failures per day", labels,
                                   [charts.Series("failed or quarantined", failures,
                                                  "#D55E00")], integer=True))


def _percent(share: float | None) -> float | None:
    """A share (0..1) in per cent, to one decimal; None stays None."""
    return None if share is None else round(100 * share, 1)


def dashboard(p: Page) -> Response:
    now = clock.now().astimezone(dt.UTC)
    days = _days(now.date(), 30)
    since = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    pics = _volume_charts(p.store, since, days)
    monday = now.date() - dt.timedelta(days=now.weekday())
    weeks = [monday - dt.timedelta(weeks=11 - i) for i in range(12)]
    share = {r.bucket: r for r in stats.electronic_share(
        p.store, dt.datetime.combine(weeks[0], dt.time(), dt.UTC), None, "week")}
    labels = [f"W{w.isocalendar().week:02d}" for w in weeks]
    pics["orders"] = charts.bars_with_share(
        "Orders per week, and the share received electronically", labels,
        [charts.Series("electronic", [share[w].electronic if w in share else 0 for w in weeks],
                       "#009E73"),
         charts.Series(MANUAL_LABEL,
                       [share[w].manual if w in share else 0 for w in weeks], "#E69F00")],
        charts.Series("electronic share", [_percent(share[w].share) if w in share else None
                                           for w in weeks]))
    return p.render("dashboard.html", charts=pics, counts=stats.status_counts(p.store),
                    outbox=p.store.outbox_size(), open_alerts=open_alert_count(p.store),
                    status_class=STATUS_CLASS)


# -- transmissions ----------------------------------------------------------------------------



def reprocess(p: Page) -> Response:
    """Replay a failed transmission from the archive (``gateway.core.reprocess``, as the
    API and ``edigw reprocess`` do), recorded in the audit trail."""
    tid = p.request.path_params["tid"]
    try:
        done = replay(p.gateway, tid, by=p.who.username, reason=p.field("reason"))
    except ReprocessError as exc:
        return RedirectResponse(f"/transmissions/{tid}?message=" + quote(str(exc)), 303)
    AuditLog(p.store).record(p.who.username, "transmission.reprocess",
                             f"transmission:{done.transmission_id}",
                             after={"attempt": done.attempt_id, "status": done.status,
                                    "reason": p.field("reason")},
                             remote=p.request.client.host if p.request.client else None)
    log.info("console_reprocess", transmission_id=done.transmission_id,
             attempt=done.attempt_id, by=p.who.username, status=done.status)
    went = done.status in (T.RENDERED, T.SENT, T.DELIVERED)  # an outbound one, sent again
    return RedirectResponse(f"/transmissions/{done.attempt_id}?message=" + quote(
        f"{'sent again' if went else 'replayed'} from {done.transmission_id}: {done.status}"),
        303)


# -- partners ---------------------------------------------------------------------------------


def _partner_facts(store: Store, partner_ids: list[str]
                   ) -> tuple[dict[str, dict[str, dt.datetime]], dict[str, list[ChannelHealth]],
                              dict[str, int]]:
    """Per partner (of those): the last transmission per channel, its channels' health, and
    how many of its alerts are open or acknowledged."""
    health: dict[str, list[ChannelHealth]] = {}
    for h in ChannelRecords(store).health():
        if h.partner_id is not None:
            health.setdefault(h.partner_id, []).append(h)
    return (last_contact(store, partner_ids, CHANNEL_NAMES), health,
            open_alerts_by_partner(store, partner_ids))


def partners(p: Page) -> Response:
    from gateway.channels.checks import disabled

    last, health, open_alerts = _partner_facts(p.store, [x.id for x in p.gateway.partners])
    # What did not load (a mapping or profile file), and the partners it disables.
    intake = getattr(p.gateway, "intake", None)
    off = disabled(p.gateway.partners, p.gateway.mappings,
                   intake.mappings if intake is not None else None)
    return p.render("partners.html", partners=list(p.gateway.partners), last=last,
                    health=health, open_alerts=open_alerts, off=off,
                    off_partners={d.name: d.reason for d in off if d.kind == "partner"})


def _mask(value: Any, key: str = "") -> Any:
    from gateway.store.audit import mask_secrets

    return mask_secrets(value, key=key)


def partner(p: Page) -> Response:
    from gateway.web.partner_pages import admin_context

    pid = p.request.path_params["pid"]
    prof = p.gateway.partners.get(pid)
    if prof is None:
        return p.render("not_found.html", 404, what=f"partner {pid}")
    now = clock.now().astimezone(dt.UTC)
    days = _days(now.date(), 30)
    since = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    pics = _volume_charts(p.store, since, days, pid)
    labels = [d.strftime("%m-%d") for d in days]
    index = {d: i for i, d in enumerate(days)}
    by_currency: dict[str, list[float | None]] = {}
    for r in stats.value(p.store, since, None, "day", pid):
        if r.bucket in index:
            cell = by_currency.setdefault(r.currency or "?", [0.0] * len(days))
            cell[index[r.bucket]] = (cell[index[r.bucket]] or 0) + float(r.amount)
    pics["value"] = charts.bar_chart("Order value per day", labels,
                                     [charts.Series(c, v) for c, v in sorted(
                                         by_currency.items())], stacked=False)
    last, health, open_alerts = _partner_facts(p.store, [pid])
    profile = _mask(prof.model_dump(mode="json"))
    return p.render("partner.html", partner=prof, profile=profile, charts=pics,
                    last=last.get(pid, {}), health=health.get(pid, []),
                    alerts=AlertBook(p.store).list(
                        status=[AlertState.OPEN, AlertState.ACKNOWLEDGED], partner=pid),
                    # The audit trail is for operators and admins, as /audit is.
                    audit=(AuditLog(p.store).list(target=f"partner:{pid}", limit=50)
                           if p.who.may(Role.OPERATOR) else []),
                    admin=p.who.may(Role.ADMIN), channel_forms=PARTNER_FORMS,
                    checklist=_checklist(p.store, prof),
                    message=p.request.query_params.get("message"),
                    error=p.request.query_params.get("error"), **admin_context(p, prof))


def _checklist(store: Store, partner: Any) -> list[Any]:
    """The partner's go-live checklist, shown on its page (``tracker.onboarding``)."""
    from gateway.tracker.onboarding import checklist

    return checklist(store, partner)



# -- alerts and audit -------------------------------------------------------------------------


def conflicts(p: Page) -> Response:
    """Documents held because their number came before with other content: what differs,
    and (for an operator) release or reject."""
    q = p.request.query_params
    partner = q.get("partner") or None
    desk = ConflictDesk(p.store)
    return p.render("conflicts.html", held=desk.list(partner=partner),
                    rejected=desk.list(partner=partner, status=DocumentStatus.REJECTED, limit=20),
                    partner=partner, message=q.get("message"))


def conflict_action(p: Page) -> Response:
    did, action = p.request.path_params["did"], p.request.path_params["action"]
    if action not in ("release", "reject"):
        return p.render("not_found.html", 404, what=f"conflict action {action}")
    reason = p.field("reason") or None
    remote = p.request.client.host if p.request.client else None
    desk = ConflictDesk(p.store)
    try:
        if action == "release":
            doc = desk.release(did, by=p.who.username, reason=reason, remote=remote)
        else:
            doc = desk.reject(did, by=p.who.username, reason=reason or "", remote=remote)
    except ConflictError as exc:
        return RedirectResponse("/conflicts?message=" + quote(str(exc)), 303)
    return RedirectResponse("/conflicts?message=" + quote(f"document {did} {doc.status}"), 303)


def audit(p: Page) -> Response:
    q = p.request.query_params
    entries = AuditLog(p.store).list(target=q.get("target") or None,
                                     actor=q.get("actor") or None,
                                     action=q.get("action") or None, limit=200)
    return p.render("audit.html", entries=entries, target=q.get("target", ""),
                    actor=q.get("actor", ""), action=q.get("action", ""))


# -- routes -----------------------------------------------------------------------------------


def page_routes(auth: Authenticator) -> list[BaseRoute]:
    """The console's routes (to mount at the root, next to ``/api``)."""
    from gateway.web import search_page  # it names this module's Page
    from gateway.web.account_pages import account_routes  # it imports this module
    from gateway.web.alert_pages import alert_action, alerts, alerts_bulk  # it does too
    from gateway.web.log_pages import transmission_rows, transmissions, transmissions_csv
    from gateway.web.partner_pages import partner_admin_routes
    from gateway.web.quarantine_pages import quarantine_routes
    viewer, operator = Role.VIEWER, Role.OPERATOR

    def route(path: str, role: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, _guard(auth, role, handler), methods=[method],
                     name="page:" + handler.__name__ + ("" if method == "GET" else ":post"))

    return [
        *_login_routes(auth),
        route("/", viewer, dashboard),
        route("/transmissions", viewer, transmissions),
        route("/transmissions/rows", viewer, transmission_rows),
        route("/transmissions.csv", viewer, transmissions_csv),
        route("/transmissions/{tid}", viewer, transmission),
        route("/transmissions/{tid}/reprocess", operator, reprocess, "POST"),
        route("/search", viewer, search_page.search),
        route("/partners", viewer, partners),
        *partner_admin_routes(auth),  # /partners/new before /partners/{pid}
        route("/partners/{pid}", viewer, partner),
        *quarantine_routes(auth),
        route("/alerts", viewer, alerts),
        route("/alerts/bulk/{action:str}", operator, alerts_bulk, "POST"),
        route("/alerts/{aid}/{action:str}", operator, alert_action, "POST"),
        route("/price-lists", viewer, price_lists_page),
        route("/manager", viewer, manager.manager_page),
        route("/manager/forecasts", operator, manager.forecast_post, "POST"),
        route("/manager/forecasts/import", operator, manager.forecast_import, "POST"),
        route("/conflicts", operator, conflicts),
        route("/conflicts/{did}/{action:str}", operator, conflict_action, "POST"),
        route("/audit", operator, audit),
        *account_routes(auth),
        *portal_routes(auth),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

