"""The console's search box (``/search?q=``): what the text matched, the matches first, then
the tracker's verdict about them in plain words with its evidence (``gateway.tracker.search``,
as ``/api/search?q=`` and ``edigw find``).

The partner is ``partner_id`` (or the older ``partner``); an unknown one is said on the page
with status 404, no verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.tracker.search import Answer, answer
from gateway.tracker.verdicts import NoSuchPartner

if TYPE_CHECKING:
    from starlette.responses import Response

    from gateway.web.pages import Page

#: The longest text the box looks up (an AS2 Message-ID's column).
MAX_Q = 998


def search(p: Page) -> Response:
    """The search page: the box, then what matched, the matches, the verdict, the evidence."""
    params = p.request.query_params
    q = params.get("q", "").strip()[:MAX_Q]
    partner = (params.get("partner_id") or params.get("partner") or "").strip() or None
    found: Answer | None = None
    error = None
    if q:
        try:
            found = answer(p.store, p.gateway.partners, p.gateway.settings, q,
                           partner=partner, archive=p.gateway.archive)
        except NoSuchPartner as exc:
            error = str(exc)
    # Evidence names transmissions and documents by id: both lead to a transmission's page.
    links: dict[str, str] = {}
    if found is not None:
        out = found.explanation
        links.update({t.id: t.id for t in out.transmissions})
        links.update({d.id: d.transmission_id for d in out.documents})
        links.update({h.id: h.transmission_id for h in out.hits})
        links.update({h.transmission_id: h.transmission_id for h in out.hits})
    return p.render("search.html", 404 if error else 200, q=q, partner=partner or "",
                    found=found, error=error, links=links,
                    partners=[x.id for x in p.gateway.partners])
