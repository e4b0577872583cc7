"""The console API over real HTTP (uvicorn on loopback, httpx), on SQLite and PostgreSQL, with
data from the real pipeline: every route of the OpenAPI table walked as nobody, client,
viewer, operator and admin; CSRF on cookie sessions; reprocessing, alerts, raw payload, segments."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import Gateway
from gateway.config import (
    DocumentSettings,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    UnbIdentifier,
)
from gateway.core.ports import Incoming
from gateway.http.server import HttpServer
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.tracker.alerts import AlertBook, Condition
from gateway.web.api import create_console

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
ROLES = ("client", "viewer", "operator", "admin")
RANK = {None: -2, "client": -1, "viewer": 0, "operator": 1, "admin": 2}

#: The least role each route needs (None: public). A route missing here fails the walk.
NEEDS: dict[tuple[str, str], str | None] = {
    ("POST", "/login"): None,
    ("POST", "/logout"): "client",
    ("GET", "/me"): "client",
    ("GET", "/transmissions"): "client",
    ("GET", "/transmissions.csv"): "client",
    ("GET", "/transmissions/{tid}"): "client",
    ("GET", "/transmissions/{tid}/raw"): "client",
    ("GET", "/transmissions/{tid}/segments"): "client",
    ("GET", "/transmissions/{tid}/documents"): "client",
    ("POST", "/transmissions/{tid}/reprocess"): "operator",
    ("GET", "/documents/{document_id}"): "client",
    ("GET", "/documents/{document_id}/view"): "client",
    ("GET", "/search"): "client",
    ("GET", "/explain"): "client",
    ("POST", "/outbound"): "operator",
    ("GET", "/price-lists"): "viewer",
    ("GET", "/alerts"): "viewer",
    ("POST", "/alerts/acknowledge"): "operator",
    ("POST", "/alerts/resolve"): "operator",
    ("POST", "/alerts/{alert_id}/acknowledge"): "operator",
    ("POST", "/alerts/{alert_id}/resolve"): "operator",
    ("GET", "/users"): "admin",
    ("POST", "/users"): "admin",
    ("PATCH", "/users/{username}"): "admin",
    ("GET", "/tokens"): "client",
    ("POST", "/tokens"): "client",
    ("DELETE", "/tokens/{token_id}"): "client",
    ("GET", "/audit"): "operator",
    ("GET", "/stats"): "viewer",
    ("GET", "/conflicts"): "operator",
    ("GET", "/conflicts/{document_id}"): "operator",
    ("POST", "/conflicts/{document_id}/release"): "operator",
    ("POST", "/conflicts/{document_id}/reject"): "operator",
    ("GET", "/account"): "client",
    ("PATCH", "/account"): "client",
    ("POST", "/password-reset"): None,
    ("POST", "/password-reset/confirm"): None,
    ("GET", "/quarantine/senders"): "viewer",
    ("POST", "/quarantine/adopt"): "admin",
}


def _needs(method: str, path: str) -> str | None:
    if path.startswith("/portal"):  # the client portal: a partner's own users, not staff
        return "client"
    if path.startswith("/partners"):  # the partner administration: read viewer, write admin
        return "viewer" if method == "GET" else "admin"
    if path.startswith("/manager"):  # the manager's figures: read viewer, forecasts operator
        return "viewer" if method == "GET" else "operator"
    return NEEDS[(method, path)]


def _partners(mapping: str | None) -> PartnerDirectory:
    docs = [DocumentSettings(type="order", format="edifact", mapping=mapping)] if mapping else []
    return PartnerDirectory([Partner(
        id="bakkerij", name="Bakkerij",
        identifiers=Identifiers(unb=[UnbIdentifier(id="5401234000012", qualifier="14")]),
        documents=docs)])


@pytest.fixture
def console(tmp_path, store_url):
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    gw = Gateway.open(settings, partners=_partners("no-such-mapping"))
    receipt = gw.pipeline.receive(Incoming(data=SAMPLE, channel="sftp", filename="po-0107.edi"))
    failed = gw.pipeline.process(receipt.transmission_id)
    assert failed.status == s.FAILED, failed
    gw.partners = gw.pipeline.partners = _partners("eancom-orders-d96a")  # the fix
    AlertBook(gw.store).reconcile([Condition(kind="failure", partner_id="bakkerij",
                                             key="failure:x", summary="a failure")],
                                  kinds_checked=["failure"])
    con = create_console(gw)
    for role in ROLES:
        con.auth.users.create(role, f"pw-{role}-long-enough", role,
                              partner_id="bakkerij" if role == "client" else None)
    server = HttpServer(Starlette(routes=con.routes), port=0)
    server.start_in_thread()
    tokens = {role: con.auth.tokens.create(con.auth.users.by_username(role), "walk")[0]
              for role in ROLES}
    try:
        yield {"url": server.url + "/api", "gw": gw, "failed": failed.transmission_id,
               "tokens": tokens, "auth": con.auth}
    finally:
        server.stop()
        gw.close()


def _client(c: dict, role: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {c['tokens'][role]}"} if role else {}
    return httpx.Client(base_url=c["url"], headers=headers, timeout=30)


def _login(c: dict, role: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=c["url"], timeout=30)
    r = client.post("/login", json={"username": role, "password": f"pw-{role}-long-enough"})
    assert r.status_code == 200, r.text
    return client, r.json()["csrf_token"]


def test_every_route_refuses_nobody_and_lower_roles_and_admits_the_rest(console):
    """The OpenAPI table itself needs a login; each route answers 401 to nobody, 403 to a
    role below its own and neither (nor a 5xx) to its role and above."""
    with _client(console) as anon:
        assert anon.get("/openapi.json").status_code == 401
        assert anon.get("/docs").status_code == 404
    with _client(console, "viewer") as viewer:
        spec = viewer.get("/openapi.json").json()
    assert spec["info"]["title"] == "edigw" and spec["servers"] == [{"url": "/api"}]
    routes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
    assert len(routes) >= len(NEEDS)
    for method, path in routes:
        assert spec["paths"][path][method.lower()].get("summary"), (method, path)
        url = re.sub(r"\{[^}]+\}", "no-such-thing", path)
        needed = _needs(method, path)
        for who in (None, *ROLES):
            with _client(console, who) as client:
                r = client.request(method, url, json={} if method != "GET" else None)
            where = f"{who or 'nobody'} {method} {path}: {r.status_code} {r.text[:200]}"
            if needed is None:
                assert r.status_code not in (401, 403) or path == "/login", where
            elif who is None:
                assert r.status_code == 401, where
            elif RANK[who] < RANK[needed] or (path.startswith("/portal") and who != "client"):
                assert r.status_code == 403, where
            else:
                assert r.status_code not in (401, 403) and r.status_code < 500, where


def test_cookie_sessions_need_the_csrf_token_and_tokens_do_not(console):
    """A logged-in operator's POST without X-CSRF-Token is refused, with it accepted; a
    Bearer token needs none; after logout the cookie is worthless."""
    client, csrf = _login(console, "operator")
    try:
        cookie = client.cookies.get("edigw_session")
        assert cookie and client.get("/me").json()["user"]["role"] == "operator"
        alert_id = client.get("/alerts", params={"status": "open"}).json()["items"][0]["id"]
        r = client.post(f"/alerts/{alert_id}/acknowledge", json={"note": "looking"})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = client.post(f"/alerts/{alert_id}/acknowledge", json={"note": "looking"},
                        headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"
        assert r.json()["acknowledged_by"] == "operator"
        assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        client.cookies.set("edigw_session", cookie)
        assert client.get("/me").status_code == 401
    finally:
        client.close()
    with _client(console, "operator") as bearer:
        r = bearer.post(f"/alerts/{alert_id}/resolve", json={"note": "fixed the mapping"})
        assert r.status_code == 200 and r.json()["resolved_by"] == "operator"
        r = bearer.post(f"/alerts/{alert_id}/resolve", json={})
        assert r.status_code == 409
    with _client(console) as anon:
        r = anon.post("/login", json={"username": "operator", "password": "wrong"})
        assert r.status_code == 401 and r.json()["detail"] == "login refused"
        assert r.headers["content-type"] == "application/problem+json"
    entries = AuditLog(console["gw"].store).list(target=f"alert:{alert_id}")
    assert [e.action for e in entries] == ["alert.resolve", "alert.acknowledge"]


def test_reprocess_a_failed_transmission_then_read_it(console):
    """An operator replays the failed order after the fix: the attempt is PROCESSED, linked,
    recorded with who and why; its raw payload, segments and canonical order can be read."""
    tid = console["failed"]
    with _client(console, "viewer") as viewer:
        assert viewer.post(f"/transmissions/{tid}/reprocess",
                           json={"reason": "mapping fixed"}).status_code == 403
        page = viewer.get("/transmissions", params={"status": "failed"}).json()
        assert page["total"] == 1 and page["items"][0]["id"] == tid
    with _client(console, "operator") as op:
        assert op.post(f"/transmissions/{tid}/reprocess", json={}).status_code == 422
        r = op.post(f"/transmissions/{tid}/reprocess", json={"reason": "mapping fixed"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["status"], out["documents"], out["queued"]) == ("PROCESSED", 1, 1)
        attempt = out["attempt_id"]
        detail = op.get(f"/transmissions/{attempt}").json()
        assert detail["transmission"]["reprocess_of"] == tid
        assert detail["transmission"]["requested_by"] == "operator"
        assert detail["reprocess_chain"] == [tid]
        assert [e["event"] for e in detail["timeline"]][:1] == ["reprocess"]
        assert detail["interchanges"][0]["control_ref"] == "ICR0042"
        (doc,) = detail["documents"]
        assert op.get(f"/transmissions/{tid}").json()["attempts"] == [attempt]

        raw = op.get(f"/transmissions/{attempt}/raw")
        assert raw.status_code == 200 and raw.content == SAMPLE
        assert 'filename="po-0107.edi"' in raw.headers["content-disposition"]
        seg = op.get(f"/transmissions/{attempt}/segments")
        lines = seg.text.splitlines()
        assert seg.headers["content-type"].startswith("text/plain")
        assert lines[0] == "UNA:+.? '" and lines[1].startswith("UNB+UNOC:3+5401234000012")
        assert "BGM+220+PO-2024-0107+9'" in lines and lines[-1].startswith("UNZ+")
        canonical = op.get(f"/documents/{doc['id']}").json()["canonical"]
        assert canonical["order_number"] == "PO-2024-0107"

        found = op.get("/search", params={"number": "PO-2024-0107"}).json()
        assert found["verdict"] and found["hits"][0]["business_number"] == "PO-2024-0107"
        assert op.get("/search").status_code == 422
        stats = op.get("/stats", params={"bucket": "week"}).json()
        assert sum(r["transmissions"] for r in stats["volume"]) == 2
        assert sum(r["failures"] for r in stats["volume"]) == 1
        assert stats["electronic_share"][0]["electronic"] == 1
        (entry,) = op.get("/audit", params={"target": f"transmission:{tid}"}).json()["items"]
        assert entry["actor"] == "operator" and entry["after"]["reason"] == "mapping fixed"
        r = op.post(f"/transmissions/{attempt}/reprocess", json={"reason": "again"})
        assert r.status_code == 409

    with console["gw"].store.engine.begin() as conn:  # retention purged the first payload
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                     .values(purged_at=dt.datetime.now(dt.UTC)))
    with _client(console, "operator") as op:
        assert op.get(f"/transmissions/{tid}/raw").status_code == 410
        assert op.post(f"/transmissions/{tid}/reprocess",
                       json={"reason": "again"}).status_code == 410


def test_admin_manages_users_and_everyone_their_own_tokens(console):
    """An admin creates a user and changes its role; a viewer creates, lists and revokes its
    own token and cannot see or revoke another's; each change is in the audit trail."""
    with _client(console, "admin") as admin:
        r = admin.post("/users", json={"username": "marie", "password": "pw-marie-long-enough",
                                       "role": "viewer", "email": "marie@example.com"})
        assert r.status_code == 201 and "password_hash" not in r.json()
        assert admin.post("/users", json={"username": "marie", "password": "x",
                                          "role": "viewer"}).status_code == 400
        r = admin.patch("/users/marie", json={"role": "operator", "password": "new-password-42"})
        assert r.json()["role"] == "operator"
        trail = admin.get("/audit", params={"target": "user:marie"}).json()["items"]
        assert [e["action"] for e in trail] == ["user.update", "user.create"]
        assert trail[0]["before"]["role"] == "viewer" and trail[0]["after"]["password"] == "***"
        admin_tokens = {t["id"] for t in admin.get("/tokens").json()["items"]}
    with _client(console, "viewer") as viewer:
        r = viewer.post("/tokens", json={"name": "my script"})
        assert r.status_code == 201 and r.json()["token"].startswith("edigw_")
        mine = r.json()
        with httpx.Client(base_url=console["url"],
                          headers={"Authorization": f"Bearer {mine['token']}"}) as script:
            assert script.get("/me").json()["user"]["username"] == "viewer"
        listed = viewer.get("/tokens").json()["items"]
        assert {t["user"] for t in listed} == {"viewer"} and "token" not in listed[0]
        other = next(iter(admin_tokens - {t["id"] for t in listed}))
        assert viewer.delete(f"/tokens/{other}").status_code == 404
        assert viewer.post("/tokens", json={"name": "x", "user": "admin"}).status_code == 403
        assert viewer.delete(f"/tokens/{mine['id']}").json()["revoked_at"]
        with httpx.Client(base_url=console["url"],
                          headers={"Authorization": f"Bearer {mine['token']}"}) as script:
            assert script.get("/me").status_code == 401
    with _client(console, "admin") as admin:
        r = admin.patch("/users/marie", json={"disabled": True})
        assert r.json()["disabled"] is True
    with httpx.Client(base_url=console["url"]) as anon:
        assert anon.post("/login", json={"username": "marie",
                                         "password": "new-password-42"}).status_code == 401


def test_alerts_page_by_offset_filter_and_are_acted_on_in_bulk(console):
    """/alerts answers the paging envelope and honours offset, status, kind, partner_id and
    since; an operator resolves several at once (each audited), one already resolved is
    named as refused, not an error."""
    book = AlertBook(console["gw"].store)
    book.reconcile([Condition("gap", "bakkerij", f"gap:bakkerij:{n}", f"gap {n}")
                    for n in range(7)], kinds_checked=["gap"])
    with _client(console, "viewer") as viewer:
        page = viewer.get("/alerts", params={"limit": 3}).json()
        assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (8, 3, 0, 3)
        rest = viewer.get("/alerts", params={"limit": 3, "offset": 6}).json()
        assert len(rest["items"]) == 2 and rest["offset"] == 6
        seen = {a["id"] for a in page["items"]} | {a["id"] for a in rest["items"]}
        assert len(seen) == 5, "another offset, other alerts"
        gaps = viewer.get("/alerts", params={"kind": "gap", "partner_id": "bakkerij"}).json()
        assert gaps["total"] == 7 and all(a["partner_id"] == "bakkerij" for a in gaps["items"])
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert viewer.get("/alerts", params={"since": later.isoformat()}).json()["total"] == 0
        assert viewer.get("/alerts", params={"status": "nope"}).status_code == 422
        assert viewer.post("/alerts/resolve", json={"ids": [1]}).status_code == 403
    ids = [a["id"] for a in gaps["items"][:3]]
    with _client(console, "operator") as op:
        assert op.post(f"/alerts/{ids[0]}/resolve", json={}).status_code == 200
        r = op.post("/alerts/resolve", json={"ids": ids, "note": "partner resent"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(a["id"] for a in body["done"]) == sorted(ids[1:])
        assert [x["id"] for x in body["refused"]] == [ids[0]]
        assert op.post("/alerts/acknowledge", json={"ids": []}).status_code == 422
        left = op.get("/alerts", params={"status": "open", "kind": "gap"}).json()["total"]
    assert left == 4
    audit = AuditLog(console["gw"].store)
    assert [e.action for e in audit.list(target=f"alert:{ids[1]}")] == ["alert.resolve"]


def test_the_log_as_csv_has_every_matching_row_and_searches_by_number(console):
    """/transmissions.csv streams every row the filters match (with the order number); the
    search field finds the transmission by its order number and by its file name."""
    gw = console["gw"]
    tids = [gw.pipeline.receive(Incoming(data=SAMPLE.replace(b"PO-2024-0107", f"PO-9{n}".encode())
                                         .replace(b"ICR0042", f"ICR07{n}".encode()),
                                         channel="sftp", filename=f"po-9{n}.edi")).transmission_id
            for n in range(3)]
    for tid in tids:
        gw.pipeline.process(tid)
    with _client(console, "viewer") as viewer:
        r = viewer.get("/transmissions.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        lines = r.text.splitlines()
        assert lines[0].startswith("received_at,id,") and len(lines) == 1 + 4
        assert {line.split(",")[1] for line in lines[1:]} >= set(tids)
        found = viewer.get("/transmissions", params={"q": "PO-91"}).json()
        assert found["total"] == 1 and found["items"][0]["id"] == tids[1]
        assert found["items"][0]["numbers"] == ["PO-91"]
        assert found["items"][0]["erp"] in ("waiting", "not applicable")
        by_name = viewer.get("/transmissions.csv", params={"q": "po-92.edi"}).text.splitlines()
        assert len(by_name) == 2 and tids[2] in by_name[1] and "PO-92" in by_name[1]
