"""Two of the console review's findings: a raw download whose file name holds control
characters, quotes or a trailing backslash still answers with a well-formed header; a
viewer does not see a partner's audit trail on its page (the audit trail is for operators
and admins, as /audit is)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import GatewaySettings, load_partners
from gateway.core.ports import Incoming
from gateway.http.server import HttpServer, build_app
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-enough-password"


@pytest.fixture
def console(tmp_path):
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text('id = "acme"\nname = "Acme"\n'
                                        '[identifiers]\nemail = ["edi@acme.example"]\n')
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=partners,
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=load_partners(partners))
    for name, role in (("vera", "viewer"), ("ada", "admin")):
        Users(gw.store).create(name, PASSWORD, role)
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    yield gw, server
    server.stop()
    gw.close()


def _login(server: HttpServer, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url)
    r = client.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def test_raw_download_of_a_file_name_with_control_characters(console):
    gw, server = console
    receipt = gw.pipeline.receive(Incoming(data=b"hello", channel="folder",
                                           filename='evil\r\nX-Injected: 1 "q" back\\'))
    r = _login(server, "vera").get(f"/api/transmissions/{receipt.transmission_id}/raw")
    assert r.status_code == 200 and r.content == b"hello"
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="evil__X-Injected: 1 _q_ back_";')
    assert "x-injected" not in r.headers


def test_a_viewer_does_not_see_the_partner_audit_trail(console):
    gw, server = console
    admin = _login(server, "ada")
    r = admin.patch("/api/partners/acme/contacts", json={"emails": ["orders@acme.example"]})
    assert r.status_code == 200, r.text
    assert "orders@acme.example" in admin.get("/partners/acme").text
    assert "<td>ada</td><td>partner.contacts</td>" in admin.get("/partners/acme").text
    viewer_page = _login(server, "vera").get("/partners/acme").text
    assert "orders@acme.example" in viewer_page  # the profile, yes
    assert "Audit trail" not in viewer_page and "partner.contacts" not in viewer_page
