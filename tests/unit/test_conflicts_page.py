"""The console's conflicts page: a held invoice with the payable amount that differs, and
an operator's release (with the CSRF token of the session) queueing it, audited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.config import GatewaySettings, PartnerDirectory
from gateway.http.server import HttpServer, build_app
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.records import NewDocument
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]


def _invoice(payable: str, ref: str) -> NewDocument:
    from gateway.core.canonical import content_digest

    body = json.dumps({"schema": "edigw.invoice/1", "message_id": f"m-{ref}",
                       "partner": "acme", "invoice_number": "FA-42",
                       "issue_date": "2025-03-14", "totals": {"payable": payable},
                       "source": {"format": "xml", "interchange_ref": ref}},
                      separators=(",", ":")).encode()
    return NewDocument(doc_type="invoice", schema_version="edigw.invoice/1",
                       business_number="FA-42", interchange_ref=ref, message_ref=None,
                       message_id=f"m-{ref}", payload=body, routing_key="invoice.acme",
                       content_sha=content_digest(body))


def _login(client: httpx.Client, user: str) -> None:
    r = client.post("/api/login", json={"username": user, "password": "a-long-enough-password"})
    assert r.status_code == 200, r.text


def test_conflicts_page_shows_the_difference_and_releases_with_csrf(tmp_path):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=PartnerDirectory([]))
    server = None
    try:
        store = gw.store
        for n, (payable, data) in enumerate((("32.99", b"a"), ("4918.84", b"b"))):
            tid = store.record_received(channel="folder", channel_ref=f"/in/{n}", filename=f"{n}",
                                        size=1, sha256=data.hex() * 32)
            store.record_processed(tid, partner_id="acme", fmt="xml", standard="UBL",
                                   docs=[_invoice(payable, f"IC{n}")])
        (held,) = [d for d in store.find_documents(business_number="FA-42")
                   if d.status == s.DOC_CONFLICT]
        users = Users(store)
        users.create("vera", "a-long-enough-password", "viewer")
        users.create("otto", "a-long-enough-password", "operator")
        routes, state = gw.console_routes()
        server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()

        viewer = httpx.Client(base_url=server.url)
        _login(viewer, "vera")
        assert viewer.get("/conflicts").status_code == 403
        assert "/conflicts" not in viewer.get("/alerts").text

        operator = httpx.Client(base_url=server.url)
        _login(operator, "otto")
        page = operator.get("/conflicts").text
        assert f'id="conflict-{held.id}"' in page
        assert "<code>totals.payable</code></td><td>32.99</td><td>4918.84</td>" in page
        assert f'formaction="/conflicts/{held.id}/release"' in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

        forged = operator.post(f"/conflicts/{held.id}/release", data={"reason": "x"})
        assert forged.status_code == 403
        assert store.documents_of(held.transmission_id)[0].status == s.DOC_CONFLICT

        done = operator.post(f"/conflicts/{held.id}/release",
                             data={"csrf_token": token, "reason": "agreed"})
        assert done.status_code == 303 and "PENDING" in done.headers["location"]
        assert store.documents_of(held.transmission_id)[0].status == s.PENDING
        (entry,) = AuditLog(store).list(action="conflict.release")
        assert entry.actor == "otto" and entry.target == f"document:{held.id}"
        assert "No conflict waiting." in operator.get("/conflicts").text
    finally:
        if server is not None:
            server.stop()
        gw.close()
