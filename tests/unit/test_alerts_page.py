"""The alerts page with many alerts: counts by kind above a paged table (50 a page, with
the total), and a kind (or partner) chosen to see the others."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.config import GatewaySettings, PartnerDirectory
from gateway.http.server import HttpServer, build_app
from gateway.tracker.alerts import AlertBook, Condition
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]


def test_many_alerts_are_counted_by_kind_and_filtered(tmp_path):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=PartnerDirectory([]))
    server = None
    try:
        conditions = [Condition("quarantine", None, f"quarantine:T{n}",
                                f"transmission T{n} from an unknown sender")
                      for n in range(205)]
        conditions.append(Condition("gap", "acme", "gap:acme:1043-1044",
                                    "received 1045 while expecting 1043"))
        AlertBook(gw.store).reconcile(conditions, kinds_checked=["quarantine", "gap"])
        Users(gw.store).create("vera", "a-long-enough-password", "viewer")
        routes, state = gw.console_routes()
        server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
        client = httpx.Client(base_url=server.url)
        assert client.post("/api/login", json={"username": "vera",
                                               "password": "a-long-enough-password"}
                           ).status_code == 200
        page = client.get("/alerts").text
        assert "206 open or acknowledged" in page
        assert "gap 1</a>" in page and "quarantine 205</a>" in page
        assert "1–50 of 206" in page and page.count('class="a-open"') == 50
        last = client.get("/alerts", params={"offset": "200"}).text
        assert "201–206 of 206" in last and last.count('class="a-open"') == 6
        assert "T0 from an unknown sender" in last  # the oldest, on the last page
        gaps = client.get("/alerts", params={"kind": "gap"}).text
        assert gaps.count('class="a-open"') == 1 and "received 1045 while expecting 1043" in gaps
        assert "1–1 of 1" in gaps
        assert client.get("/alerts", params={"partner": "acme"}).text.count('class="a-open"') == 1
    finally:
        if server is not None:
            server.stop()
        gw.close()
