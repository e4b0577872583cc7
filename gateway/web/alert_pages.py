"""The console's alerts: ``/alerts`` (filters by status, kind and partner, grouped rows with
their count of files, links to the log and, for an unknown sender, to making a partner of
it; a pager) and acknowledging or resolving one alert or many (operator, each audited; many
only after a confirmation page that lists them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import RedirectResponse, Response

from gateway.core.status import AlertState, Role
from gateway.core.zone import shown
from gateway.store.audit import AuditLog
from gateway.store.read.activity import active_alerts_by_kind
from gateway.store.read.transmissions import NO_PARTNER
from gateway.tracker.alerts import Alert, AlertBook, AlertError
from gateway.web.numbers import BadNumber, url_int
from gateway.web.pages import Page

#: Alerts on one page.
PAGE_SIZE = 50
#: The status filter's choices: "active" is open or acknowledged.
STATUS_CHOICES = ("active", "open", "acknowledged", "resolved", "all")
ACTIONS = ("acknowledge", "resolve")
#: Alerts acted on by one bulk request, at most (one page is 50).
BULK_MAX = 500


def _statuses(choice: str) -> list[str]:
    if choice == "active":
        return [AlertState.OPEN, AlertState.ACKNOWLEDGED]
    return [] if choice == "all" else [choice]


def links(alert: Alert) -> list[tuple[str, str]]:
    """(label, URL) of the pages an alert leads to: the log filtered to its partner or to
    the files of no partner, its latest file, and for an unknown sender the page that makes
    a partner of it."""
    d = alert.detail
    out: list[tuple[str, str]] = []
    sender = d.get("sender") if alert.kind == "quarantine" else None
    if sender and alert.partner_id is None:
        query: dict[str, str] = {"status": "QUARANTINED", "partner": NO_PARTNER}
        channels = d.get("channels") or []
        if len(channels) == 1:
            query["channel"] = channels[0]
        out.append((f"quarantined files ({d.get('files', '?')})",
                    "/transmissions?" + urlencode(query)))
    elif alert.partner_id:
        query = {"partner": alert.partner_id}
        if alert.kind in ("failure", "quarantine"):
            query["status"] = "QUARANTINED" if alert.kind == "quarantine" else "FAILED"
        out.append((f"{alert.partner_id}'s transmissions", "/transmissions?" + urlencode(query)))
    ids = d.get("transmission_ids") or ([d["transmission_id"]] if d.get("transmission_id")
                                        else [])
    if ids:
        out.append(("latest file", f"/transmissions/{quote(str(ids[-1]))}"))
    if sender and alert.partner_id is None and d.get("adoptable"):
        out.append(("Make a partner of this sender", "/quarantine?" + urlencode(
            {"sender": sender})))
    return out


def _files_span(p: Page) -> Callable[[Alert], tuple[str, str] | None]:
    """When a grouped alert's first and last files came, in the console's zone."""
    def span(alert: Alert) -> tuple[str, str] | None:
        first, last = alert.detail.get("first_received"), alert.detail.get("last_received")
        if not isinstance(first, str) or not isinstance(last, str):
            return None  # not a grouped alert
        try:
            return (shown(dt.datetime.fromisoformat(first), p.tz, seconds=False),
                    shown(dt.datetime.fromisoformat(last), p.tz, seconds=False))
        except ValueError:
            return None
    return span


def alerts(p: Page) -> Response:
    q = p.request.query_params
    kind, partner = q.get("kind") or None, q.get("partner") or None
    choice = q.get("status") or "active"
    if choice not in STATUS_CHOICES:
        choice = "active"
    try:
        offset = url_int(q.get("offset") or "0", lo=0, hi=10_000_000, name="offset")
    except BadNumber:
        offset = 0
    book = AlertBook(p.store)
    total = book.count(_statuses(choice), partner, kind)
    if offset >= total > 0:
        offset = (total - 1) // PAGE_SIZE * PAGE_SIZE
    rows = book.list(_statuses(choice), partner, kind, PAGE_SIZE, offset=offset)
    counts = active_alerts_by_kind(p.store)
    kept = {k: v for k, v in (("status", choice if choice != "active" else ""),
                              ("kind", kind or ""), ("partner", partner or "")) if v}
    return p.render("alerts.html", rows=rows, counts=counts, total=total,
                    active_total=sum(n for _k, n in counts), kind=kind, partner=partner,
                    status_choice=choice, choices=STATUS_CHOICES, offset=offset, size=PAGE_SIZE,
                    query=urlencode(kept), kinds_query=urlencode(
                        {k: v for k, v in kept.items() if k != "kind"}),
                    partners=[x.id for x in p.gateway.partners], links=links,
                    files_span=_files_span(p),
                    operator=p.who.may(Role.OPERATOR), message=q.get("message"),
                    back=p.request.url.path + ("?" + p.request.url.query
                                               if p.request.url.query else ""))


def _back(p: Page) -> str:
    """Where to return after an action: the alerts page the operator came from."""
    target = p.field("back")
    return target if target.startswith("/alerts") and "//" not in target else "/alerts"


def _to(back: str, message: str) -> Response:
    """Back to ``back`` (its filters kept, an earlier message dropped) with ``message``."""
    path, _, query = back.partition("?")
    kept = [x for x in query.split("&") if x and not x.startswith("message=")]
    kept.append("message=" + quote(message))
    return RedirectResponse(f"{path}?{'&'.join(kept)}", 303)


def _remote(p: Page) -> str | None:
    return p.request.client.host if p.request.client else None


def alert_action(p: Page) -> Response:
    """Acknowledge or resolve one alert (its row's button)."""
    try:
        aid = url_int(p.request.path_params["aid"], lo=1, name="alert")
    except BadNumber as exc:
        return p.render("not_found.html", exc.status, what=f"such alert: {exc}")
    action = p.request.path_params["action"]
    if action not in ACTIONS:
        return p.render("not_found.html", 404, what=f"alert action {action}")
    book = AlertBook(p.store)
    note = p.field("note") or None
    try:
        before = book.get(aid)
        after = (book.acknowledge if action == "acknowledge" else book.resolve)(
            aid, p.who.username, note)
    except AlertError as exc:
        return _to(_back(p), str(exc))
    AuditLog(p.store).record(p.who.username, f"alert.{action}", f"alert:{aid}",
                             before={"status": before.status},
                             after={"status": after.status, "note": note}, remote=_remote(p))
    return _to(_back(p), f"alert {aid} {after.status}")


def _ids(p: Page) -> list[int]:
    values: list[Any] = p.form.getlist("ids") if p.form is not None else []
    out: list[int] = []
    for v in values[:BULK_MAX]:
        try:
            out.append(url_int(str(v), lo=1, name="alert"))
        except BadNumber:
            continue
    return list(dict.fromkeys(out))


def alerts_bulk(p: Page) -> Response:
    """Acknowledge or resolve the alerts ticked: first a page listing them to confirm, then
    (``confirmed=yes``) each is done and audited; those that cannot be are named."""
    action = p.request.path_params["action"]
    if action not in ACTIONS:
        return p.render("not_found.html", 404, what=f"alert action {action}")
    ids = _ids(p)
    back = _back(p)
    if not ids:
        return _to(back, "no alert ticked")
    note = p.field("note") or None
    book = AlertBook(p.store)
    if p.field("confirmed") != "yes":
        chosen = [a for a in (book.repo.get(i) for i in ids) if a is not None]
        return p.render("alerts_confirm.html", action=action, chosen=chosen, note=note or "",
                        back=back)
    result = book.act_on_many(ids, p.who.username, note, action=action)
    audit = AuditLog(p.store)
    for before, after in result.done:
        audit.record(p.who.username, f"alert.{action}", f"alert:{after.id}",
                     before={"status": before.status},
                     after={"status": after.status, "note": note, "bulk": True},
                     remote=_remote(p))
    done = "acknowledged" if action == "acknowledge" else "resolved"
    message = f"{len(result.done)} alert(s) {done}"
    if result.refused:
        message += "; not " + done + ": " + "; ".join(why for _i, why in result.refused[:5])
    return _to(back, message)
