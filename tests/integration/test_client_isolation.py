"""A client can never reach another partner's data, by any route.

The whole HTTP app of ``serve`` (API, pages, /metrics) over a store the real pipeline
filled, on SQLite and PostgreSQL. Partner "example-retail" (B) has an order, its document,
an alert, a client user and an API token; partner "other" (A) has one order of its own and a
client user. Every API route of the OpenAPI table and every page route is called as A's
client, with B's ids in the path, B as the partner filter and B's order number and file
name as the search: each answer is a refusal (403, 404, 405, 409, 410, 422) or carries none
of B's ids, names or numbers; and B's data is unchanged afterwards. New routes are walked
as they are added: nothing here lists them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

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
from gateway.http.server import HttpServer, build_app
from gateway.store import schema as s
from gateway.store.read.transmissions import attempts_of
from gateway.tracker.alerts import AlertBook, Condition
from gateway.web.auth import COOKIE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
B_GLN, A_GLN = "5401234000012", "4000000000017"
B_FILE, B_ORDER = "po-b-secret-0107.edi", "PO-2024-0107"
A_ORDER = "PO-A-0001"
PASSWORD = "pw-client-long-enough"
#: Refusals a client may get; any other answer must hold nothing of B.
REFUSED = {403, 404, 405, 409, 410, 422}


def _partners() -> PartnerDirectory:
    def partner(pid: str, gln: str) -> Partner:
        return Partner(id=pid, name=pid.title(),
                       identifiers=Identifiers(unb=[UnbIdentifier(id=gln, qualifier="14")]),
                       documents=[DocumentSettings(type="order", format="edifact",
                                                   mapping="eancom-orders-d96a")])
    return PartnerDirectory([partner("example-retail", B_GLN), partner("other", A_GLN)])


@pytest.fixture
def world(tmp_path, store_url):
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    (tmp_path / "partners").mkdir()
    gw = Gateway.open(settings, partners=_partners())
    b = gw.pipeline.receive(Incoming(data=SAMPLE, channel="sftp", filename=B_FILE))
    assert gw.pipeline.process(b.transmission_id).status == s.PROCESSED
    a_bytes = SAMPLE.replace(B_GLN.encode(), A_GLN.encode()).replace(
        B_ORDER.encode(), A_ORDER.encode())
    a = gw.pipeline.receive(Incoming(data=a_bytes, channel="sftp", filename="po-a.edi"))
    assert gw.pipeline.process(a.transmission_id).status == s.PROCESSED
    AlertBook(gw.store).reconcile([Condition(kind="failure", partner_id="example-retail",
                                             key="failure:b", summary="B's failure")],
                                  kinds_checked=["failure"])
    routes, state = gw.console_routes()
    auth = state["auth"]
    b_user = auth.users.create("b-shop", PASSWORD, "client", partner_id="example-retail",
                               email="shop@example-retail.test")
    _, b_token = auth.tokens.create(b_user, "b's erp")
    a_user = auth.users.create("a-shop", PASSWORD, "client", partner_id="other")
    a_token, _ = auth.tokens.create(a_user, "a's erp")
    cookie, session = auth.sessions.create(a_user)
    b_doc = gw.store.documents_of(b.transmission_id)[0]
    alert = AlertBook(gw.store).list()[0]
    app = build_app(routes=routes, state=state)
    server = HttpServer(app, port=0)
    server.start_in_thread()
    try:
        yield dict(url=server.url, gw=gw, auth=auth, b_tid=b.transmission_id,
                   a_tid=a.transmission_id, b_doc=b_doc.id, alert=alert.id,
                   b_token=b_token.id, a_token=a_token, cookie=cookie, csrf=session.csrf_token)
    finally:
        server.stop()
        gw.close()


def _secrets(w: dict[str, Any]) -> list[str]:
    return [w["b_tid"], w["b_doc"], B_FILE, B_ORDER, "example-retail", "b-shop", B_GLN]


def _fill(path: str, w: dict[str, Any]) -> str:
    """``path`` with B's id in every parameter, by the parameter's name."""
    values = {"tid": w["b_tid"], "document_id": w["b_doc"], "did": w["b_doc"],
              "alert_id": str(w["alert"]), "aid": str(w["alert"]),
              "token_id": str(w["b_token"]), "username": "b-shop", "pid": "example-retail",
              "partner_id": "example-retail", "partner": "example-retail",
              "list_id": "example-retail", "action": "acknowledge", "what": "state"}

    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return values.get(name, w["b_tid"])
    return re.sub(r"\{([^}]+)\}", one, path)


QUERY = {"partner": "example-retail", "partner_id": "example-retail", "number": B_ORDER,
         "order": B_ORDER, "file": B_FILE, "q": B_ORDER}
BODY = {"partner": "example-retail", "partner_id": "example-retail", "reason": "walk",
        "note": "walk", "name": "walk", "user": "b-shop", "role": "admin",
        "username": "b-shop", "state": "suspended", "disabled": True}


def _judge(w: dict[str, Any], who: str, method: str, path: str, r: httpx.Response) -> None:
    where = f"{who} {method} {path}: {r.status_code} {r.text[:300]}"
    assert r.status_code < 500, where
    if r.status_code in REFUSED or r.status_code in (301, 302, 303, 307):
        return
    assert 200 <= r.status_code < 300 or r.status_code in (400, 413), where
    text = r.text
    for secret in _secrets(w):
        assert secret not in text, f"{where}\n... shows B's {secret!r}"


def _unchanged(w: dict[str, Any]) -> None:
    gw, auth = w["gw"], w["auth"]
    b = gw.store.get_transmission(w["b_tid"])
    assert b is not None and b.status == s.PROCESSED
    assert attempts_of(gw.store, w["b_tid"]) == []  # nobody reprocessed it
    user = auth.users.by_username("b-shop")
    assert user is not None and not user.disabled and user.role == "client"
    assert user.partner_id == "example-retail"
    token = auth.tokens.get(w["b_token"])
    assert token is not None and token.revoked_at is None
    alert = AlertBook(gw.store).get(w["alert"])
    assert alert.status == "open"


def test_a_client_reaches_nothing_of_another_partner_through_the_api(world):
    """Every route of the OpenAPI table, as A's client (API token), with B's ids, filters and
    numbers: refused or silent about B; B's data unchanged."""
    w = world
    bearer = {"Authorization": f"Bearer {w['a_token']}"}
    with httpx.Client(base_url=w["url"] + "/api", headers=bearer, timeout=30) as client:
        spec = client.get("/openapi.json").json()
        # The issue's own check: B's transmission by id, and A's list.
        assert client.get(f"/transmissions/{w['b_tid']}").status_code in (403, 404)
        items = client.get("/transmissions").json()["items"]
        assert [t["id"] for t in items] == [w["a_tid"]]
        assert client.get("/transmissions", params={"partner": "example-retail"}
                          ).status_code == 404
        walked = 0
        for path, ops in spec["paths"].items():
            for method in ops:
                if path in ("/logout",):
                    continue  # ends the client's own session: walked last
                url = _fill(path, w)
                for params in (None, QUERY):
                    r = client.request(method.upper(), url, params=params,
                                       json=BODY if method != "get" else None)
                    _judge(w, "client(api)", method.upper(), path, r)
                    walked += 1
        assert walked >= 40
        # B's very file, sent through A's portal: not told as a repeat of B's.
        r = client.post("/portal/upload", files={"file": ("b-again.edi", SAMPLE)})
        assert r.status_code == 201, r.text
        assert w["b_tid"] not in r.text and r.json()["duplicate_of"] is None
        assert client.get(f"/transmissions/{r.json()['transmission_id']}").status_code == 200
    _unchanged(w)


def test_a_client_reaches_nothing_of_another_partner_through_the_pages(world):
    """Every page route as A's client (browser session with its CSRF token): B's
    transmission, partner page, alerts, raw payload … refused or silent about B."""
    w = world
    routes = [r for r in w["gw"].console_routes()[0] if isinstance(r, Route)]
    assert len(routes) >= 15
    with httpx.Client(base_url=w["url"], cookies={COOKIE: w["cookie"]}, timeout=30,
                      follow_redirects=False) as client:
        assert client.get("/api/me").json()["user"]["partner_id"] == "other"
        for route in routes:
            if route.path in ("/logout", "/login"):
                continue
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                url = _fill(route.path, w)
                data = {"csrf_token": w["csrf"], **{k: str(v) for k, v in BODY.items()}}
                r = client.request(method, url, params=QUERY if method == "GET" else None,
                                   data=data if method == "POST" else None)
                _judge(w, "client(page)", method, route.path, r)
        # The staff's home sends a client to its portal; a staff page is refused.
        home = client.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/portal"
        assert client.get(f"/transmissions/{w['b_tid']}").status_code == 403
        assert client.get("/metrics").status_code == 403
    _unchanged(w)


def test_mounts_are_walked_too(world):
    """Only the API and the static files are mounted: a new mount must be walked here."""
    mounts = {r.path for r in world["gw"].console_routes()[0] if isinstance(r, Mount)}
    assert mounts <= {"/api", "/static"}, mounts
