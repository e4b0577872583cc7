"""The console's partner administration pages (admin): a new partner, the forms of a
partner's page (``/partners/{id}/{what}``, moved here from ``pages``), the confirmation step
of what cannot be taken back in one click (disabling a partner, removing a certificate), and
what the partner page shows admins besides (identifiers, certificates).

Every change goes through ``PartnerAdmin``: validated as ``edigw check-config`` would before
it is written, audited. A destructive form posts ``confirmed=yes`` only from its
confirmation page (``/partners/{id}/confirm/{what}``, no script needed under the CSP); a
post without it is sent to that page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.channels.kind import PartnerFormPost
from gateway.channels.registry import CHANNEL_NAMES, channel
from gateway.config import PARTNER_STATES
from gateway.core.status import Role
from gateway.formats.registry import FORMAT_NAMES
from gateway.web.auth import Authenticator
from gateway.web.pages import PARTNER_FORMS, Handler, Page, _guard
from gateway.web.partners_admin import SCHEMES, PartnerAdmin, PartnerAdminError

#: The identifier schemes the forms edit, with their labels.
IDENTIFIER_FIELDS = (("unb", "UNB sender ids (ID or ID:QUALIFIER)"), ("gln", "GLN"),
                     ("vat", "VAT numbers"), ("siren", "SIREN"), ("siret", "SIRET"),
                     ("as2", "AS2 ids"), ("email", "Mail addresses"), ("phone", "Phone numbers"),
                     ("iso6523", "ISO 6523 ids (ICD:value, e.g. 0192:987654321)"))
#: What a confirmation page asks, per destructive action.
CONFIRM = {"disable": "Disable the partner", "remove-certificate": "Remove the certificate"}


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", "\n").splitlines() if x.strip()]


def _remote(p: Page) -> str | None:
    return p.request.client.host if p.request.client else None


def admin_service(request: Request) -> PartnerAdmin:
    """The app's ``PartnerAdmin`` (``app.state.partner_admin``, made on first use)."""
    from gateway.web.routes.partners import partner_admin

    return partner_admin(request)


def _documents(text: str) -> list[dict[str, str]]:
    """``type format [mapping]`` per line, e.g. ``order edifact eancom-orders-d96a``."""
    docs = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        doc = {"type": words[0]}
        if len(words) > 1:
            doc["format"] = words[1]
        if len(words) > 2:
            doc["mapping"] = words[2]
        docs.append(doc)
    return docs


def identifiers_from(p: Page) -> dict[str, list[str]]:
    """The identifier textareas of a form (one value a line), the schemes posted only."""
    form = p.form
    return {scheme: _lines(p.field(f"ids_{scheme}")) for scheme, _ in IDENTIFIER_FIELDS
            if form is not None and f"ids_{scheme}" in form}


def identifiers_text(identifiers: Any) -> dict[str, str]:
    """A profile's identifiers as the form's textareas show them."""
    out = {}
    for scheme, _ in IDENTIFIER_FIELDS:
        values = getattr(identifiers, scheme, [])
        if scheme == "unb":
            out[scheme] = "\n".join(u.id + (f":{u.qualifier}" if u.qualifier else "")
                                    for u in values)
        else:
            out[scheme] = "\n".join(values)
    return out


def admin_context(p: Page, partner: Any) -> dict[str, Any]:
    """What the partner page shows besides its activity: the certificates (to everyone),
    and for an admin the identifiers' form values."""
    try:
        certificates = admin_service(p.request).certificates(partner.id)
    except PartnerAdminError:
        certificates = []
    return {"certificates": certificates, "identifier_fields": IDENTIFIER_FIELDS,
            "identifiers_text": identifiers_text(partner.identifiers)}


# -- a new partner ------------------------------------------------------------------------------


def partner_new(p: Page, error: str | None = None, status: int = 200) -> Response:
    form = {k: v for k, v in (p.form or {}).items() if isinstance(v, str)}
    return p.render("partner_new.html", status, form=form, error=error,
                    identifier_fields=IDENTIFIER_FIELDS, states=PARTNER_STATES,
                    channels=CHANNEL_NAMES, formats=FORMAT_NAMES)


def partner_create(p: Page) -> Response:
    """Create the profile from the form; the form again with the reason when refused."""
    service = admin_service(p.request)
    chosen = [c for c in CHANNEL_NAMES if p.field(f"channel_{c}") == "on"] or ["folder"]
    try:
        service.create(p.who.username, p.field("id"), p.field("name"),
                       identifiers=identifiers_from(p), channels=chosen,
                       documents=_documents(p.field("documents")),
                       state=p.field("state") or None, remote=_remote(p))
    except PartnerAdminError as exc:
        return partner_new(p, str(exc), 422)
    pid = p.field("id")
    return RedirectResponse(f"/partners/{pid}?message=" + quote(f"partner {pid} created"), 303)


# -- confirmation ---------------------------------------------------------------------------------


def partner_confirm(p: Page) -> Response:
    """The confirmation step before a destructive change of a partner."""
    pid, what = p.request.path_params["pid"], p.request.path_params["what"]
    partner = p.gateway.partners.get(pid)
    if partner is None or what not in CONFIRM:
        return p.render("not_found.html", 404, what=f"partner {pid} or action {what}")
    certificate = None
    if what == "remove-certificate":
        wanted = p.request.query_params.get("fingerprint", "")
        certificate = next((c for c in admin_service(p.request).certificates(pid)
                            if c.fingerprint == wanted), None)
        if certificate is None:
            return p.render("not_found.html", 404, what=f"certificate {wanted} of {pid}")
    return p.render("partner_confirm.html", partner=partner, what=what, label=CONFIRM[what],
                    certificate=certificate)


def _unconfirmed(p: Page, pid: str, what: str, **query: str) -> Response | None:
    """Back to the confirmation page unless the form came from it."""
    if p.field("confirmed") == "yes":
        return None
    suffix = ("?" + urlencode(query)) if query else ""
    return RedirectResponse(f"/partners/{quote(pid)}/confirm/{what}{suffix}", 303)


# -- the partner page's forms ---------------------------------------------------------------------


def _set_state(p: Page, service: PartnerAdmin, pid: str, **kw: Any) -> str:
    """The state form: the new state with its reason (and force); going live releases what
    was held while suspended. What to tell the admin."""
    from gateway.tracker.onboarding import release_held

    reason = p.field("reason")

    def release(partner_id: str) -> int:
        return len(release_held(p.gateway, partner_id, by=p.who.username, reason=reason))

    done = service.set_state(p.who.username, pid, p.field("state"), reason=reason,
                             force=p.field("force") == "on", release=release, **kw)
    return f"state {done['state']}" + (f", {done['released']} held file(s) released"
                                       if done["released"] else "")


def partner_change(p: Page) -> Response:
    """One administration form (``what``) posted for a partner: PartnerAdmin checks, writes
    and records it in the audit trail."""
    pid, what = p.request.path_params["pid"], p.request.path_params["what"]
    service = admin_service(p.request)
    actor = p.who.username
    kw = dict(remote=_remote(p))
    said = f"{what} saved"
    try:
        if what == "contacts":
            service.set_contacts(actor, pid, emails=_lines(p.field("emails")), **kw)
        elif what == "identifiers":
            service.set_identifiers(actor, pid, identifiers_from(p), **kw)
        elif what == "sftp":
            if p.field("password"):
                service.set_sftp_password(actor, pid, p.field("password"), **kw)
            if p.field("private_key"):
                service.set_sftp_key(actor, pid, p.field("private_key"),
                                     p.field("passphrase") or None, **kw)
            if p.field("host_key"):
                service.set_sftp_host_key(actor, pid, p.field("host_key"), **kw)
        elif what in PARTNER_FORMS:
            _channel_form(p, what, service, pid)
        elif what == "as2-certificate":
            upload = p.form.get("certificate") if p.form is not None else None
            data = upload.file.read() if upload is not None and hasattr(upload, "file") else b""
            service.upload_as2_certificate(actor, pid, data, as2_id=p.field("as2_id") or None,
                                           **kw)
        elif what == "remove-certificate":
            fingerprint = p.field("fingerprint")
            back = _unconfirmed(p, pid, what, fingerprint=fingerprint)
            if back is not None:
                return back
            service.remove_certificate(actor, pid, fingerprint, **kw)
            said = f"certificate {fingerprint[:16]}… removed"
        elif what == "documents":
            service.set_documents(actor, pid, _documents(p.field("documents")), **kw)
        elif what == "acknowledgements":
            service.set_acknowledgements(
                actor, pid, contrl=p.field("contrl") or None,
                email_acknowledgements=p.field("email_acknowledgements") == "on",
                failure_notices=p.field("failure_notices") == "on", **kw)
        elif what == "disable":
            back = _unconfirmed(p, pid, what)
            if back is not None:
                return back
            service.disable(actor, pid, **kw)
            said = f"partner {pid} disabled"
        elif what == "enable":
            service.enable(actor, pid, **kw)
            said = f"partner {pid} enabled"
        elif what == "state":
            said = _set_state(p, service, pid, **kw)
        else:
            return p.render("not_found.html", 404, what=f"form {what}")
    except PartnerAdminError as exc:
        return RedirectResponse(f"/partners/{pid}?error=" + quote(str(exc)), 303)
    return RedirectResponse(f"/partners/{pid}?message=" + quote(said), 303)


def _channel_form(p: Page, name: str, service: PartnerAdmin, pid: str) -> None:
    """A channel's own form on the partner page (``ChannelKind.partner_form``)."""
    form = channel(name).partner_form
    assert form is not None  # PARTNER_FORMS lists only the channels that have one
    fields = {k: v for k, v in (p.form or {}).items() if isinstance(v, str)}
    form(PartnerFormPost(admin=service, actor=p.who.username, partner_id=pid,
                         current=p.gateway.partners.get(pid), fields=fields,
                         remote=_remote(p)))


# -- routes ---------------------------------------------------------------------------------------


def partner_admin_routes(auth: Authenticator) -> list[BaseRoute]:
    """The new-partner form and the partner forms (``page_routes`` mounts them before
    ``/partners/{pid}``, which would take ``/partners/new``)."""

    def route(path: str, role: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, _guard(auth, role, handler), methods=[method],
                     name="page:" + handler.__name__ + ("" if method == "GET" else ":post"))

    return [
        route("/partners/new", Role.ADMIN, partner_new),
        route("/partners/new", Role.ADMIN, partner_create, "POST"),
        route("/partners/{pid}/confirm/{what}", Role.ADMIN, partner_confirm),
        route("/partners/{pid}/{what}", Role.ADMIN, partner_change, "POST"),
    ]


__all__ = ["PARTNER_FORMS", "SCHEMES", "admin_context", "partner_admin_routes"]
