"""Destructive console actions happen only from their confirmation page: a Disable or an
adoption posted without it leads to that page and changes nothing; a viewer sees the
quarantine but no adopt form, and its post is refused; an unknown sender is a 404 page."""

from __future__ import annotations

import re

import httpx

from gateway.core.ports import Incoming
from gateway.http.server import HttpServer, build_app
from gateway.web.auth import Users
from tests.conftest import ROOT
from tests.unit.test_onboarding import World

PASSWORD = "a-long-enough-password"
ORDER = (ROOT / "mappings" / "edifact" / "un-invoic-d97a.sample.edi").read_bytes()
SENDER = "unb:ZZ:PPL-SUPPLIER"


def _login(client: httpx.Client, user: str) -> str:
    r = client.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    page = client.get("/partners").text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_destructive_actions_wait_for_their_confirmation(tmp_path):
    world = World(tmp_path, "live")
    gw = world.gw
    receipt = gw.pipeline.receive(Incoming(data=ORDER, channel="folder", channel_ref="/in/x",
                                           filename="stranger.edi"))
    gw.pipeline.acknowledged([receipt], "moved")
    gw.pipeline.process(receipt.transmission_id)
    assert gw.store.get_transmission(receipt.transmission_id).status == "QUARANTINED"
    users = Users(gw.store)
    users.create("vera", PASSWORD, "viewer")
    users.create("ada", PASSWORD, "admin")
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    try:
        viewer = httpx.Client(base_url=server.url)
        vtoken = _login(viewer, "vera")
        page = viewer.get("/quarantine", params={"sender": SENDER}).text
        assert SENDER in page and "stranger.edi" in page and 'id="adopt-form"' not in page
        assert viewer.post("/quarantine/adopt", data={
            "csrf_token": vtoken, "sender": SENDER, "mode": "new", "id": "x", "name": "X",
            "confirmed": "yes"}).status_code == 403

        admin = httpx.Client(base_url=server.url)
        token = _login(admin, "ada")
        r = admin.post("/partners/retail/disable", data={"csrf_token": token})
        assert r.status_code == 303
        assert r.headers["location"] == "/partners/retail/confirm/disable"
        assert gw.partners.get("retail").enabled
        confirm = admin.get("/partners/retail/confirm/disable").text
        assert "Disable the partner retail?" in confirm and 'value="yes"' in confirm

        form = {"csrf_token": token, "sender": SENDER, "mode": "new", "id": "stranger",
                "name": "Stranger Retail", "state": "live"}
        r = admin.post("/quarantine/adopt", data=form)
        assert r.status_code == 200 and 'id="adopt-confirm"' in r.text
        assert "Create partner stranger" in r.text and gw.partners.get("stranger") is None
        assert gw.store.get_transmission(receipt.transmission_id).status == "QUARANTINED"
        r = admin.post("/quarantine/adopt", data={**form, "sender": "unb:14:42"})
        assert r.status_code == 404 and "no quarantined file waits" in r.text
        r = admin.post("/quarantine/adopt", data={**form, "confirmed": "yes"})
        assert r.status_code == 200 and "1 file(s) processed again" in r.text
        assert gw.partners.get("stranger") is not None

        r = admin.post("/partners/retail/disable", data={"csrf_token": token,
                                                         "confirmed": "yes"})
        assert r.status_code == 303 and not gw.partners.get("retail").enabled
    finally:
        server.stop()
        gw.close()
