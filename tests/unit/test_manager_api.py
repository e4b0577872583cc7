"""The manager's API and page over HTTP: paged values per period, forecasts written by an
operator only (JSON and CSV import, all or nothing), CSV exports, the page's tables."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import GatewaySettings, Partner, PartnerDirectory
from gateway.store import schema as s
from gateway.store.records import NewDocument
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-enough-password"
TODAY = dt.date.today()
MONDAY = TODAY - dt.timedelta(days=TODAY.weekday())


def _doc(kind: str, body: dict) -> NewDocument:
    return NewDocument(doc_type=kind, schema_version=f"edigw.{kind}/1", business_number="N",
                       interchange_ref=None, message_ref=None, message_id=json.dumps(body)[-30:],
                       payload=json.dumps(body).encode(), routing_key=kind)


def _receive(gw: Gateway, at: dt.datetime, partner: str, docs: list[NewDocument],
             fmt: str = "edifact") -> None:
    store = gw.store
    tid = store.record_received(channel="folder", channel_ref=None, filename="f", size=1,
                                sha256=f"{hash((at, partner, len(docs), fmt)) & 0xFFFFFF:064x}")
    store.record_processed(tid, partner_id=partner, fmt=fmt, standard=None, docs=docs)
    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                     .values(received_at=at))


def _order(currency: str, amount: str) -> NewDocument:
    return _doc("order", {"order_number": amount, "currency": currency,
                          "lines": [{"quantity": "2", "unit_price": amount}]})


@pytest.fixture
def app(tmp_path):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=PartnerDirectory([
        Partner(id="acme", name="ACME Bakeries"), Partner(id="kiosk", name="Corner Kiosk")]))
    noon = dt.datetime.combine(MONDAY, dt.time(12), dt.UTC)
    _receive(gw, noon, "acme", [_order("EUR", "50"), _order("USD", "10")])
    _receive(gw, noon, "kiosk", [_order("EUR", "5")], fmt="sms")
    for w in range(1, 5):  # kiosk ordered every week before, and not last week
        _receive(gw, noon - dt.timedelta(weeks=w + 1), "kiosk", [_order("EUR", "5")])
    users = Users(gw.store)
    users.create("vera", PASSWORD, "viewer")
    users.create("otto", PASSWORD, "operator")
    routes, state = gw.console_routes()
    from gateway.http.server import HttpServer, build_app

    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    try:
        yield gw, server.url
    finally:
        server.stop()
        gw.close()


def _session(url: str, user: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf_token"]


def test_values_are_paged_per_partner_and_in_total(app):
    """This week's orders: acme 100 EUR and 20 USD, kiosk 10 EUR; the total per currency."""
    _gw, url = app
    vera, _ = _session(url, "vera")
    week = vera.get("/api/manager/values", params={"from": MONDAY.isoformat()}).json()
    got = {(i["partner_id"], i["currency"]): i["order_value"] for i in week["items"]}
    assert got == {("acme", "EUR"): "100.00", ("acme", "USD"): "20.00",
                   ("kiosk", "EUR"): "10.00"}
    assert week["total"] == 3 and week["items"][0]["period"].startswith(str(MONDAY.isocalendar().year))
    page = vera.get("/api/manager/values", params={"from": MONDAY.isoformat(), "limit": 1,
                                                   "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (3, 1, 1, 1)
    total = vera.get("/api/manager/values", params={"from": MONDAY.isoformat(), "by": "total",
                                                    "period": "month"}).json()["items"]
    assert {(i["partner_id"], i["currency"], i["order_value"]) for i in total} >= {
        (None, "USD", "20.00")}
    only = vera.get("/api/manager/values", params={"from": MONDAY.isoformat(),
                                                   "partner_id": "kiosk"}).json()["items"]
    assert [i["partner_id"] for i in only] == ["kiosk"]
    bad = vera.get("/api/manager/values", params={"from": "2026-05-02", "to": "2026-05-01"})
    assert bad.status_code == 422 and "before from" in bad.text


def test_csv_exports_carry_the_same_rows(app):
    _gw, url = app
    vera, _ = _session(url, "vera")
    r = vera.get("/api/manager/values.csv", params={"from": MONDAY.isoformat()})
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("period,start,partner_id,currency,orders,order_value")
    assert any(",acme,USD,1,20.00," in line for line in lines)
    share = vera.get("/api/manager/electronic-share.csv").text
    assert share.splitlines()[0] == "week,start,orders,electronic,manual,share_percent"


def test_electronic_share_and_dropped_clients(app):
    """This week 2 EDIFACT orders and 1 SMS; kiosk's last whole week is empty."""
    _gw, url = app
    vera, _ = _session(url, "vera")
    share = vera.get("/api/manager/electronic-share", params={"from": MONDAY.isoformat()}).json()
    assert [(i["orders"], i["electronic"], i["share_percent"]) for i in share["items"]] == [
        (3, 2, 66.7)]
    drops = vera.get("/api/manager/dropped", params={"to": MONDAY.isoformat()}).json()
    kiosk = [i for i in drops["items"] if i["partner_id"] == "kiosk"]
    # The week before MONDAY's week is empty for kiosk, the four before have 1 a week.
    assert kiosk and kiosk[0]["documents"] == 0 and kiosk[0]["percent_of_average"] == 0.0
    assert vera.get("/api/manager/dropped.csv").text.startswith("partner_id,week,documents")


def test_forecasts_are_written_by_operators_and_compared(app):
    """A viewer cannot write; the operator puts one, imports two (a bad line: nothing),
    lists them with actual and gap, exports a CSV that imports back, deletes one."""
    gw, url = app
    month = MONDAY.strftime("%Y-%m")
    vera, vera_csrf = _session(url, "vera")
    item = [{"partner_id": "acme", "month": month, "currency": "EUR", "amount": "200"}]
    assert vera.put("/api/manager/forecasts", json=item,
                    headers={"X-CSRF-Token": vera_csrf}).status_code == 403
    otto, csrf = _session(url, "otto")
    h = {"X-CSRF-Token": csrf}
    assert otto.put("/api/manager/forecasts", json=item, headers=h).json() == {"saved": 1}
    unknown = otto.put("/api/manager/forecasts", headers=h,
                       json=[dict(item[0], partner_id="nope")])
    assert unknown.status_code == 422 and "item 1" in unknown.text and "nope" in unknown.text
    bad = otto.post("/api/manager/forecasts.csv", headers={**h, "Content-Type": "text/csv"},
                    content=f"partner_id,month,currency,amount\nkiosk,{month},EUR,10\n"
                            f"kiosk,{month},EUR,x\n")
    assert bad.status_code == 422 and "line 3" in bad.text
    good = otto.post("/api/manager/forecasts.csv", headers={**h, "Content-Type": "text/csv"},
                     content=f"partner_id,month,currency,amount\nkiosk,{month},EUR,20\n"
                             f"kiosk,{month},USD,1\n")
    assert good.json() == {"saved": 2}
    listed = vera.get("/api/manager/forecasts", params={"from": MONDAY.isoformat()}).json()
    rows = {(i["partner_id"], i["currency"]): i for i in listed["items"]}
    assert len(rows) == 3
    assert (rows[("acme", "EUR")]["actual"], rows[("acme", "EUR")]["gap"],
            rows[("acme", "EUR")]["gap_percent"]) == ("100.00", "-100.00", -50.0)
    assert rows[("kiosk", "EUR")]["gap_percent"] == -50.0
    exported = vera.get("/api/manager/forecasts.csv", params={"from": MONDAY.isoformat()}).text
    assert exported.splitlines()[0] == ("partner_id,month,currency,amount,actual,gap,"
                                        "gap_percent,complete")
    again = otto.post("/api/manager/forecasts.csv", content=exported,
                      headers={**h, "Content-Type": "text/csv"})
    assert again.json() == {"saved": 3}
    assert otto.delete(f"/api/manager/forecasts/kiosk/{month}/USD", headers=h).status_code == 204
    assert otto.delete(f"/api/manager/forecasts/kiosk/{month}/USD", headers=h).status_code == 404
    from gateway.store.audit import AuditLog

    actions = [e.action for e in AuditLog(gw.store).list(limit=20)]
    assert {"forecast.put", "forecast.import", "forecast.delete"} <= set(actions)


def test_the_page_shows_the_tables_and_takes_a_forecast(app):
    """The viewer sees the page without the forms; the operator enters a forecast with the
    session's CSRF token and finds it in the table."""
    _gw, url = app
    vera, _ = _session(url, "vera")
    page = vera.get("/manager", params={"from": MONDAY.isoformat()})
    assert page.status_code == 200
    assert 'href="/manager"' in page.text and "class=\"here\"" in page.text
    assert "Enter a forecast" not in page.text
    assert "ACME Bakeries" in page.text and "<svg" in page.text
    assert vera.post("/manager/forecasts", data={}).status_code == 403
    otto, _ = _session(url, "otto")
    page = otto.get("/manager", params={"from": MONDAY.isoformat()}).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = otto.post("/manager/forecasts", follow_redirects=True, data={
        "csrf_token": token, "back": f"/manager?from={MONDAY.isoformat()}",
        "partner_id": "acme", "month": MONDAY.strftime("%Y-%m"), "currency": "usd",
        "amount": "40"})
    assert done.status_code == 200
    assert "forecast saved: acme" in done.text
    assert f'id="fc-acme-{MONDAY.strftime("%Y-%m")}-USD"' in done.text
    assert "-50.0 %" in done.text
    refused = otto.post("/manager/forecasts", follow_redirects=True, data={
        "csrf_token": token, "partner_id": "acme", "month": "2026-13", "currency": "EUR",
        "amount": "1"})
    assert "forecast not saved" in refused.text and "2026-13" in refused.text


def test_an_old_range_is_filled_after_a_recent_one(app):
    """The rollup first holds what the recent range needs, then the older range on request."""
    gw, url = app
    vera, _ = _session(url, "vera")
    vera.get("/api/manager/values", params={"from": MONDAY.isoformat()})
    old = MONDAY - dt.timedelta(weeks=30)
    _receive(gw, dt.datetime.combine(old, dt.time(12), dt.UTC), "acme", [_order("EUR", "1")])
    r = vera.get("/api/manager/values", params={"from": old.isoformat(),
                                                "to": (old + dt.timedelta(days=6)).isoformat()})
    assert [i["order_value"] for i in r.json()["items"]] == ["2.00"]
