"""``POST /partners/{id}/state`` and ``GET /partners/{id}/checklist``: only admins change a
state, with a reason; a promotion not ready answers 409 with what is missing; viewers read
the checklist; going live releases what was held."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from gateway.store.audit import AuditLog
from gateway.web.auth import Authenticator, AuthError
from gateway.web.routes.partners import router
from tests.unit.test_onboarding import World


@pytest.fixture
def api(tmp_path):
    world = World(tmp_path, "test")
    auth = Authenticator(world.gw.store)
    app = FastAPI()
    app.state.auth = auth
    app.state.gateway = world.gw
    app.state.partner_admin = world.admin

    @app.exception_handler(AuthError)
    async def refused(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    app.include_router(router)
    tokens = {}
    for role in ("viewer", "operator", "admin"):
        user = auth.users.create(role, "a long enough password", role)
        tokens[role] = {"Authorization": f"Bearer {auth.tokens.create(user, 'test')[0]}"}
    with TestClient(app, client=("192.0.2.7", 50000)) as client:
        yield client, tokens, world
    world.gw.close()


def test_viewers_read_the_checklist(api):
    client, tokens, _ = api
    r = client.get("/partners/retail/checklist", headers=tokens["viewer"])
    assert r.status_code == 200
    body = r.json()
    assert (body["partner"], body["state"], body["ready"]) == ("retail", "test", False)
    assert {i["name"]: i["ok"] for i in body["items"]} == {"order received in test": False,
                                                           "CONTRL returned": False}
    assert client.get("/partners/nobody/checklist", headers=tokens["viewer"]).status_code == 404
    assert client.get("/partners/retail/checklist").status_code == 401


def test_only_admins_change_a_state(api):
    client, tokens, world = api
    for who in ("viewer", "operator"):
        r = client.post("/partners/retail/state", headers=tokens[who],
                        json={"state": "suspended", "reason": "why"})
        assert r.status_code == 403
    assert client.post("/partners/retail/state",
                       json={"state": "suspended", "reason": "why"}).status_code == 401
    assert world.gw.partners.get("retail").state == "test"


def test_refusals_unknown_state_missing_reason_unknown_partner(api):
    client, tokens, world = api
    h = tokens["admin"]
    r = client.post("/partners/retail/state", headers=h, json={"state": "beta", "reason": "x"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "state"
    r = client.post("/partners/retail/state", headers=h, json={"state": "draft"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "reason"
    r = client.post("/partners/nobody/state", headers=h, json={"state": "draft", "reason": "x"})
    assert r.status_code == 404
    r = client.post("/partners/retail/state", headers=h,
                    json={"state": "live", "reason": "x", "extra": 1})
    assert r.status_code == 422
    assert world.gw.partners.get("retail").state == "test"


def test_promotion_not_ready_answers_409_with_the_missing_items_then_forced(api):
    """Refused with the list; forced by an admin with a reason, audited with its address."""
    client, tokens, world = api
    h = tokens["admin"]
    r = client.post("/partners/retail/state", headers=h, json={"state": "live", "reason": "go"})
    assert r.status_code == 409
    missing = r.json()["detail"]["missing"]
    assert {m["name"] for m in missing} == {"order received in test", "CONTRL returned"}
    assert all(m["ok"] is False and m["detail"] for m in missing)
    assert world.gw.partners.get("retail").state == "test"
    r = client.post("/partners/retail/state", headers=h,
                    json={"state": "live", "reason": "customer insists", "force": True})
    assert r.status_code == 200 and r.json()["state"] == "live"
    entry = AuditLog(world.gw.store).list(target="partner:retail")[0]
    assert (entry.actor, entry.action, entry.remote) == ("admin", "partner.state", "192.0.2.7")
    assert entry.after["forced"] is True and entry.after["reason"] == "customer insists"


def test_going_live_through_the_api_releases_held_files(api):
    client, tokens, world = api
    h = tokens["admin"]
    assert client.post("/partners/retail/state", headers=h,
                       json={"state": "suspended", "reason": "unpaid"}).status_code == 200
    held = world.ingest()
    assert held.reason and "suspended" in held.reason
    # Suspended -> live is a return, not a promotion: no checklist.
    r = client.post("/partners/retail/state", headers=h, json={"state": "live", "reason": "paid"})
    assert r.status_code == 200 and r.json()["released"] == 1
    assert world.outbox_keys() == ["order.retail"]
