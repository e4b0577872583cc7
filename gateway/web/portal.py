"""The client portal's pages: what a partner's own user (role ``client``) sees of its
partner, under ``/portal``.

- ``/portal``: the partner's name and onboarding state, its latest files with their
  statuses in plain words, and "Where is my order?";
- ``/portal/transmissions`` and ``/portal/transmissions/{tid}``: its files, each with its
  documents, their lines and the reason of each rejection;
- ``/portal/search?number=``: the tracker's verdict (``gateway.tracker.explain``, as support
  sees it) in the client's words (``portal_words``);
- ``/portal/upload``: send a file (the ``portal`` channel: received first, then processed);
- ``/portal/price-list``: the current price list in the partner's format (a download);
- ``/portal/documents``: acknowledgements, order responses, invoices … sent to it, each
  downloadable as sent;
- ``/portal/demo``: sample files of its document types and the result of its own files.

Every read goes through the client's ``Scope`` (its partner in the SQL): another
partner's id answers the "not found" page. Staff users pass the login guard but get a 403
page: the portal is one partner's view, the console is theirs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.channels.portal.inbox import MAX_UPLOAD, UploadRefused, UploadTooLarge
from gateway.core.errors import StoreError
from gateway.core.scope import OutOfScope
from gateway.core.status import DocumentStatus, Role
from gateway.store.read import portal as q
from gateway.store.read.transmission import transmission_head
from gateway.store.read.transmissions import LogQuery, transmission_page
from gateway.web import portal_data as data
from gateway.web import portal_words as words
from gateway.web.numbers import BadNumber, url_int

if TYPE_CHECKING:
    from gateway.web.auth import Authenticator
    from gateway.web.pages import Page

PAGE_SIZE = 50
#: Documents shown on one page of a client's file (each with its lines).
DOCUMENTS_PER_PAGE = 20
TONE_CLASS = {"ok": "st-published", "wait": "st-received", "bad": "st-failed"}
STAFF_REFUSAL = ("The client portal shows one partner's data to that partner's own users; "
                 "staff use the console (Transmissions, Search).")


def attachment(data_: bytes, filename: str, media_type: str) -> Response:
    """``data_`` as a download named ``filename`` (quoted safely in the header)."""
    name = os.path.basename(filename) or "download"
    ascii_name = re.sub(r'[\x00-\x1f\x7f"\\]', "_", name.encode("ascii", "replace").decode())
    return Response(data_, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff"})


def _common(p: Page) -> dict[str, Any]:
    partner = p.gateway.partners.get(p.who.partner)
    state = data.partner_state(partner)
    return dict(partner=partner, partner_id=p.who.partner, state=state,
                state_words=data.STATE_WORDS.get(state, state), tone_class=TONE_CLASS,
                tw=words.transmission_words, dw=words.document_words, sw=words.sent_words,
                kind_label=words.kind_label, plain=words.plain_reason)


def _not_found(p: Page, what: str) -> Response:
    return p.render("not_found.html", 404, what=what)


# -- home, files --------------------------------------------------------------------------------


def home(p: Page) -> Response:
    page = transmission_page(p.store, LogQuery(direction="in"), limit=10, scope=p.who.scope)
    sent = q.sent_documents(p.store, p.who.scope, limit=5)
    return p.render("portal.html", rows=page.rows, total=page.total, sent=sent,
                    message=p.request.query_params.get("message"), **_common(p))


def transmissions(p: Page) -> Response:
    try:
        offset = url_int(p.request.query_params.get("offset") or "0", lo=0, hi=10**9,
                         name="offset")
    except BadNumber as exc:
        return p.render("not_found.html", exc.status, what=f"such page: {exc}")
    page = transmission_page(p.store, LogQuery(), limit=PAGE_SIZE, offset=offset,
                             scope=p.who.scope)
    return p.render("portal_transmissions.html", rows=page.rows, total=page.total,
                    offset=offset, size=PAGE_SIZE, **_common(p))


def transmission(p: Page) -> Response:
    """One of the client's files: its documents a page at a time (``?offset=``), each with
    its lines, and what was sent back; bounded reads whatever the file's size."""
    tid = p.request.path_params["tid"]
    try:
        offset = url_int(p.request.query_params.get("offset") or "0", lo=0, hi=10**9,
                         name="offset")
    except BadNumber as exc:
        return p.render("not_found.html", exc.status, what=f"such page: {exc}")
    head = transmission_head(p.store, tid, p.who.scope)
    if head is None:
        return _not_found(p, f"file {tid} of yours")
    t = head.transmission
    docs = q.documents_with_lines(p.store, p.who.scope, [t.id], limit=DOCUMENTS_PER_PAGE,
                                  offset=offset).get(t.id, [])
    total = head.counts.total - head.counts.count(DocumentStatus.OUTBOUND)
    sent = [o for o in head.outbound if o.partner_id == p.who.partner]
    return p.render("portal_transmission.html", t=t, documents=docs, sent=sent,
                    offset=offset, size=DOCUMENTS_PER_PAGE, total=total,
                    message=p.request.query_params.get("message"), **_common(p))


# -- where is my order --------------------------------------------------------------------------


def search(p: Page) -> Response:
    from gateway.tracker.explain import explain
    from gateway.tracker.explain import search as find

    number = (p.request.query_params.get("number") or "").strip()[:128]
    verdict = sentence = tone = None
    hits: list[Any] = []
    if number:
        found = explain(p.store, p.gateway.partners, p.gateway.settings, number=number,
                        archive=p.gateway.archive, scope=p.who.scope)
        hits = find(p.store, number=number, scope=p.who.scope)
        verdict, sentence = found.verdict, client_sentence(found, number)
        tone = words.VERDICT_TONES.get(found.verdict, "wait")
    return p.render("portal_search.html", number=number, verdict=verdict,
                    sentence=sentence, tone=tone, hits=hits, **_common(p))


def client_sentence(found: Any, number: str) -> str:
    """The verdict of an explanation in the client's words, naming what was found."""
    doc_type = next((d.doc_type for d in found.documents if d.doc_type), None)
    label = {"invoice": "invoice", "price-list": "price list",
             "order-response": "order response", "despatch-advice": "despatch advice"
             }.get(doc_type or "", "order")
    reason = None
    for d in found.documents:
        reason = reason or d.erp_reason or d.reason
    for t in found.transmissions:
        reason = reason or t.reason
    return words.verdict_sentence(found.verdict, f"{label} {number}", reason)


# -- upload -------------------------------------------------------------------------------------


def upload_form(p: Page) -> Response:
    return p.render("portal_upload.html", error=None, limit=MAX_UPLOAD, **_common(p))


def upload(p: Page) -> Response:
    from gateway.channels.portal.inbox import Upload

    field = p.form.get("file") if p.form is not None else None
    if field is None or isinstance(field, str):
        return _upload_refused(p, "choose a file to send", 400)
    try:
        received = data.inbox_of(p.gateway).accept(Upload(
            partner_id=p.who.partner or "", uploaded_by=p.who.username,
            filename=field.filename, data=field.file.read(MAX_UPLOAD + 1)))
    except UploadTooLarge as exc:
        return _upload_refused(p, exc.reason, 413)
    except UploadRefused as exc:
        return _upload_refused(p, exc.reason, 400)
    except StoreError:
        return _upload_refused(p, "your file could not be stored just now and was NOT "
                                  "received; please send it again in a few minutes", 503)
    note = (f"{received.filename} received" if received.duplicate_of is None else
            f"{received.filename} received; the same file came before")
    return RedirectResponse(f"/portal/transmissions/{received.transmission_id}?message="
                            + quote(note), 303)


def _upload_refused(p: Page, reason: str, status: int) -> Response:
    return p.render("portal_upload.html", status, error=reason, limit=MAX_UPLOAD,
                    **_common(p))


# -- documents and the price list ---------------------------------------------------------------


def documents(p: Page) -> Response:
    return p.render("portal_documents.html",
                    sent=q.sent_documents(p.store, p.who.scope, limit=200), **_common(p))


def document_download(p: Page) -> Response:
    ref = p.request.path_params["ref"]
    doc = q.sent_document(p.store, p.who.scope, ref)
    if doc is None:
        return _not_found(p, f"document {ref} sent to you")
    if doc.sha256 not in p.gateway.archive:
        return p.render("not_found.html", 410, what=f"copy of {doc.filename} any more "
                        "(kept for a limited time only)")
    return attachment(p.gateway.archive.get(doc.sha256), doc.filename,
                      data.media_type(doc.filename))


def price_list(p: Page) -> Response:
    try:
        found = data.current_price_list(p.gateway, p.who.scope)
    except data.NoPriceList as exc:
        return p.render("portal_no_price_list.html", 404, reason=exc.reason, **_common(p))
    return attachment(found.data, found.filename, found.media_type)


# -- demonstration space ------------------------------------------------------------------------


def demo(p: Page) -> Response:
    common = _common(p)
    partner = common["partner"]
    samples = data.samples_for(p.gateway, partner) if partner is not None else []
    return p.render("portal_demo.html", samples=samples,
                    results=data.demo_results(p.gateway, p.who.scope), **common)


def demo_sample(p: Page) -> Response:
    partner = p.gateway.partners.get(p.who.partner)
    mapping_id = p.request.path_params["mapping"]
    sample = next((s for s in (data.samples_for(p.gateway, partner) if partner else [])
                   if s.mapping_id == mapping_id), None)
    if sample is None:
        return _not_found(p, f"sample {mapping_id} for you")
    return attachment(data.sample_bytes(sample, partner), sample.filename,
                      data.media_type(sample.filename))


# -- routes -------------------------------------------------------------------------------------


def _clients_only(handler: Callable[[Page], Response]) -> Callable[[Page], Response]:
    """Staff get the refusal page; another partner's data, or a ``?partner=`` naming
    another partner, is out of scope (not found)."""
    def page(p: Page) -> Response:
        from gateway.web.pages import _refused

        if not p.who.is_client or not p.who.partner:
            return _refused(p.request, p.who, STAFF_REFUSAL)
        try:
            # A filter naming another partner is out of scope, as on the shared routes.
            p.who.scope.narrow(p.request.query_params.get("partner") or None)
            return handler(p)
        except OutOfScope:
            return _not_found(p, "such data of yours")

    page.__name__ = handler.__name__
    return page


def portal_routes(auth: Authenticator) -> list[BaseRoute]:
    """The portal's pages (mounted at the root by ``gateway.web.pages.page_routes``)."""
    from gateway.web.pages import _guard

    def route(path: str, handler: Callable[[Page], Response], method: str = "GET") -> Route:
        return Route(path, _guard(auth, Role.CLIENT, _clients_only(handler)),
                     methods=[method], name="portal:" + handler.__name__
                     + ("" if method == "GET" else ":post"))

    return [
        route("/portal", home),
        route("/portal/transmissions", transmissions),
        route("/portal/transmissions/{tid}", transmission),
        route("/portal/search", search),
        route("/portal/upload", upload_form),
        route("/portal/upload", upload, "POST"),
        route("/portal/documents", documents),
        route("/portal/documents/{ref}/download", document_download),
        route("/portal/price-list", price_list),
        route("/portal/demo", demo),
        route("/portal/demo/samples/{mapping}", demo_sample),
    ]
