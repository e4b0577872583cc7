"""The console's quarantine page: the unknown senders of quarantined files (``/quarantine``;
``?sender=<key>`` opens one, as the alerts page links to it) and, for an admin, making one a
partner in one step (``gateway.web.adopt``): a form, a confirmation page saying what will be
done, then a page saying what was done (the partner, each file processed again and how it
went)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.core.status import Role
from gateway.web.adopt import NewPartner, UnknownSenderKey, adopt, sender_group, unknown_senders
from gateway.web.auth import Authenticator
from gateway.web.pages import STATUS_CLASS, Handler, Page, _guard
from gateway.web.partner_pages import admin_service
from gateway.web.partners_admin import PartnerAdminError

#: The form's fields carried from the form to the confirmation page and back.
FIELDS = ("sender", "mode", "id", "name", "state", "partner_id")


def quarantine(p: Page, error: str | None = None, status: int = 200,
               form: dict[str, str] | None = None) -> Response:
    groups = unknown_senders(p.store)
    chosen = (form or {}).get("sender") or p.request.query_params.get("sender", "")
    return p.render("quarantine.html", status, groups=groups, chosen=chosen, error=error,
                    form=form or {}, partners=list(p.gateway.partners),
                    admin=p.who.may(Role.ADMIN))


def quarantine_adopt(p: Page) -> Response:
    """The adopt form: its confirmation page first, then the adoption and what it did."""
    form = {k: p.field(k) for k in FIELDS}
    try:
        group = sender_group(p.store, form["sender"])
    except UnknownSenderKey as exc:
        return quarantine(p, str(exc), 404, form)
    if form["mode"] not in ("new", "extend"):
        return quarantine(p, "choose: create a partner, or add to a partner", 422, form)
    if form["mode"] == "new" and not (form["id"] and form["name"]):
        return quarantine(p, "a new partner needs an id and a name", 422, form)
    if form["mode"] == "extend" and p.gateway.partners.get(form["partner_id"]) is None:
        return quarantine(p, f"no partner {form['partner_id']!r}", 422, form)
    if p.field("confirmed") != "yes":
        return p.render("quarantine_confirm.html", group=group, form=form)
    new = (NewPartner(id=form["id"], name=form["name"], state=form["state"] or "live")
           if form["mode"] == "new" else None)
    try:
        done = adopt(p.gateway, admin_service(p.request), p.who.username, group.key, new=new,
                     extend=form["partner_id"] if form["mode"] == "extend" else None,
                     remote=p.request.client.host if p.request.client else None)
    except PartnerAdminError as exc:
        return quarantine(p, str(exc), 422, form)
    return p.render("quarantine_done.html", done=done, group=group, status_class=STATUS_CLASS)


def quarantine_routes(auth: Authenticator) -> list[BaseRoute]:
    """``/quarantine`` (viewer) and its adopt form (admin)."""

    def route(path: str, role: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, _guard(auth, role, handler), methods=[method],
                     name="page:" + handler.__name__ + ("" if method == "GET" else ":post"))

    return [route("/quarantine", Role.VIEWER, quarantine),
            route("/quarantine/adopt", Role.ADMIN, quarantine_adopt, "POST")]
