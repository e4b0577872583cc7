"""``POST /api/outbound``: operators and admins hand a document to a partner; 202 with the
transmission, 422 with stage and reason (still recorded), a dry run answers the bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from gateway.channels.intake import OutboundIntake, OutboundResult
from gateway.config import Partner, PartnerOutbound
from gateway.formats.render import OutboundMappings
from gateway.store.archive import Archive
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.web.api import create_console
from gateway.web.auth import Authenticator, AuthError
from gateway.web.routes.outbound import router
from tests.unit.outbound_fakes import BINARY_HEAD, install, invoice


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    root = install(monkeypatch, tmp_path / "mappings")
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    partners = {
        "acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
            formats={"invoice": "edifact"}, recipient_id="5400000000003",
            price_lists=["spring"])),
        "beta": Partner(id="beta", name="Beta", outbound=PartnerOutbound(
            formats={"invoice": "factur-x"}, price_lists=["spring"])),
    }
    intake = OutboundIntake(store=store, archive=Archive(tmp_path / "archive"),
                            partners=partners.get, mappings=OutboundMappings.load(root),
                            sender_id="5412345000013")
    distributed: list[dict[str, Any]] = []

    class Lists:
        def distribute(self, body: bytes, *, list_id: str, origin: str,
                       ref: str | None) -> list[OutboundResult]:
            distributed.append({"list_id": list_id, "origin": origin, "ref": ref})
            return [intake.accept(body, origin=origin, ref=ref, partner=p.id)
                    for p in partners.values() if list_id in p.outbound.price_lists]

    gateway = SimpleNamespace(store=store, intake=intake, partners=list(partners.values()),
                              distributor=Lists(), distributed=distributed)
    auth = Authenticator(store)
    app = FastAPI()
    app.state.auth = auth
    app.state.gateway = gateway

    @app.exception_handler(AuthError)
    async def refused(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    app.include_router(router)
    tokens = {}
    for role in ("viewer", "operator", "admin"):
        user = auth.users.create(role, "a long enough password", role)
        tokens[role] = {"Authorization": f"Bearer {auth.tokens.create(user, 'test')[0]}"}
    with TestClient(app, client=("192.0.2.5", 50000)) as client:
        yield SimpleNamespace(client=client, tokens=tokens, gateway=gateway, store=store)
    store.close()


def post(api: Any, body: bytes, role: str = "operator", **query: Any) -> Any:
    return api.client.post("/outbound", content=body, params=query,
                           headers={**api.tokens[role], "Content-Type": "application/json"})


def test_an_operator_sends_a_document_202(api: Any) -> None:
    r = post(api, json.dumps(invoice()).encode(), partner="acme")
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["status"], out["partner_id"], out["doc_type"], out["number"], out["control_ref"]) \
        == ("RENDERED", "acme", "invoice", "INV-1", "1")
    row = api.store.get_transmission(out["transmission_id"])
    assert (row.channel, row.direction, row.status) == ("api", "out", "RENDERED")
    [pending] = api.store.pending_outbound()
    assert pending.transmission_id == out["transmission_id"]
    [entry] = AuditLog(api.store).list()
    assert (entry.action, entry.actor) == ("outbound.send", "operator")


def test_a_refused_document_is_422_with_stage_and_reason_and_recorded(api: Any) -> None:
    r = post(api, b"{not json", partner="acme")
    assert r.status_code == 422
    out = r.json()
    assert out["stage"] == "parse" and "not JSON" in out["reason"]
    assert out["detail"].startswith("parse: not JSON")
    assert api.store.get_transmission(out["transmission_id"]).status == "FAILED"
    unknown = post(api, json.dumps(invoice()).encode(), partner="nobody").json()
    assert unknown["stage"] == "partner" and "unknown partner 'nobody'" in unknown["reason"]
    assert api.store.pending_outbound() == []


def test_only_operators_and_admins_send(api: Any) -> None:
    body = json.dumps(invoice()).encode()
    assert post(api, body, "viewer", partner="acme").status_code == 403
    assert api.client.post("/outbound", content=body, params={"partner": "acme"}).status_code \
        == 401
    assert post(api, body, "admin", partner="acme").status_code == 202
    assert post(api, body, partner=None).status_code == 400


def test_dry_run_answers_the_bytes_with_the_mappings_type(api: Any) -> None:
    body = json.dumps(invoice()).encode()
    r = post(api, body, partner="acme", dry_run="true")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/EDIFACT"
    assert r.content == b"REF 1\nINVOICE INV-1 for 5400000000003"
    pdf = post(api, body, partner="acme", dry_run="true", format="binary-invoice")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == BINARY_HEAD + b"INV-1"
    bad = post(api, json.dumps(invoice("BAD")).encode(), partner="acme", dry_run="true")
    assert bad.status_code == 422 and bad.json()["stage"] == "render"
    assert api.store.pending_outbound() == [] and api.store.last_control_ref("acme") == 0


def test_a_price_list_goes_to_every_subscriber(api: Any) -> None:
    body = json.dumps(invoice("PL-1")).encode()
    r = post(api, body, price_list="spring")
    assert r.status_code == 202, r.text
    got = {x["partner_id"]: x["status"] for x in r.json()["results"]}
    assert got == {"acme": "RENDERED", "beta": "RENDERED"}
    assert api.gateway.distributed == [{"list_id": "spring", "origin": "api", "ref": None}]
    none = post(api, body, price_list="autumn")
    assert none.status_code == 422 and "no partner subscribes" in none.json()["detail"]


def test_the_console_mounts_the_route_with_a_larger_body_limit(api: Any) -> None:
    console = create_console(api.gateway)
    assert any(p == r"/api/outbound" and n > 64 * 1024 for p, n in console.body_limits)
    assert "post" in console.api.openapi()["paths"]["/outbound"]
