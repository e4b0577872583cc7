"""The partner page shows its state and go-live checklist; an admin changes the state with
a reason through its form (CSRF checked); a refused promotion says what is missing."""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx

from gateway.http.server import HttpServer, build_app
from gateway.store.audit import AuditLog
from gateway.web.auth import Users
from tests.unit.test_onboarding import World


def _login(client: httpx.Client, user: str) -> None:
    r = client.post("/api/login", json={"username": user, "password": "a-long-enough-password"})
    assert r.status_code == 200, r.text


def test_partner_page_state_checklist_and_form(tmp_path):
    world = World(tmp_path, "test")
    server = None
    try:
        users = Users(world.gw.store)
        users.create("vera", "a-long-enough-password", "viewer")
        users.create("ada", "a-long-enough-password", "admin")
        routes, state = world.gw.console_routes()
        server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()

        viewer = httpx.Client(base_url=server.url)
        _login(viewer, "vera")
        page = viewer.get("/partners/retail").text
        assert '<strong class="partner-state">test</strong>' in page
        assert "order received in test: no order received while the partner was in test" in page
        assert 'action="/partners/retail/state"' not in page  # no form for a viewer

        admin = httpx.Client(base_url=server.url)
        _login(admin, "ada")
        page = admin.get("/partners/retail").text
        assert 'action="/partners/retail/state"' in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        forged = admin.post("/partners/retail/state", data={"state": "live", "reason": "x"})
        assert forged.status_code == 403

        refused = admin.post("/partners/retail/state", data={
            "state": "live", "reason": "go", "csrf_token": token})
        assert refused.status_code == 303
        said = unquote(refused.headers["location"])
        assert "error=" in said and "not ready to go live" in said
        assert "order received in test" in said
        assert world.gw.partners.get("retail").state == "test"

        forced = admin.post("/partners/retail/state", data={
            "state": "live", "reason": "customer insists", "force": "on",
            "csrf_token": token})
        assert forced.status_code == 303
        assert "message=state live" in unquote(forced.headers["location"])
        assert world.gw.partners.get("retail").state == "live"
        entry = AuditLog(world.gw.store).list(target="partner:retail")[0]
        assert (entry.actor, entry.action) == ("ada", "partner.state")
        assert entry.after["forced"] is True
        assert '<strong class="partner-state">live</strong>' in admin.get("/partners/retail").text
    finally:
        if server is not None:
            server.stop()
        world.gw.close()
