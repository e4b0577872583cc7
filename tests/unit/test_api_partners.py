"""``/partners`` routes: viewers read profiles with activity, only admins change them, and
refusals map to 404, 409 and 422."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from gateway.config import GatewaySettings, load_partners
from gateway.store.audit import MASK
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.web.auth import Authenticator, AuthError
from gateway.web.routes.partners import router
from tests.as2_keys import loopback_pair
from tests.conftest import ROOT
from tests.unit.test_partners_admin import ACME, BETA, ENV


@pytest.fixture
def api(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # var/secrets and var/certs land here
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text(ACME, encoding="utf-8")
    (partners / "beta.toml").write_text(BETA, encoding="utf-8")
    # Our AS2 identity and an SMTP server: check-config wants them for partners with [as2]
    # and mail acknowledgements, and every change is judged as check-config would.
    pair = loopback_pair()
    settings = GatewaySettings.model_validate(
        {"partners": str(partners), "mappings": str(ROOT / "mappings"),
         "smtp": {"host": "127.0.0.1"},
         "as2": {"identities": [{"as2_id": "as2server", "passphrase": "test",
                                 "key_file": str(pair / "server_private.pem")}]}})
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    directory = load_partners(partners)
    gateway = SimpleNamespace(settings=settings, store=store, partners=directory,
                              pipeline=SimpleNamespace(partners=directory), outbound=None)

    def partners_changed(new: object) -> None:  # what gateway.app.Gateway does, in short
        gateway.partners = gateway.pipeline.partners = new

    gateway.partners_changed = partners_changed
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
    ChannelRecords(store).failed("sftp:acme", "sftp", "connection refused", partner_id="acme")
    with TestClient(app, client=("192.0.2.5", 50000)) as client:
        yield client, tokens, gateway, tmp_path
    store.close()


def test_viewer_lists_partners_with_activity_and_secrets_masked(api):
    """The list has each profile, its channels' health and open alerts; no secret."""
    client, tokens, _, _ = api
    r = client.get("/partners", headers=tokens["viewer"])
    assert r.status_code == 200
    acme = next(p for p in r.json() if p["id"] == "acme")
    assert acme["sftp"]["password"] == MASK and "env-secret-pw" not in r.text
    assert acme["channels"][0]["channel"] == "sftp:acme"
    assert acme["channels"][0]["healthy"] is False and acme["open_alerts"] == 0
    assert client.get("/partners/beta", headers=tokens["viewer"]).json()["last_contact"] == {}
    assert client.get("/partners/nobody", headers=tokens["viewer"]).status_code == 404
    assert client.get("/partners").status_code == 401


def test_only_admins_change_partners(api):
    """Viewers and operators are refused every change; nobody is asked to log in."""
    client, tokens, _, tmp = api
    before = (tmp / "partners" / "acme.toml").read_bytes()
    for who, code in (("viewer", 403), ("operator", 403)):
        h = tokens[who]
        assert client.post("/partners/acme/disable", headers=h).status_code == code
        assert client.patch("/partners/acme/contacts", json={"emails": ["x@y.z"]},
                            headers=h).status_code == code
        assert client.put("/partners/acme/sftp/password", json={"password": "p"},
                          headers=h).status_code == code
        assert client.delete("/partners/acme/phones/+33612345678",
                             headers=h).status_code == code
    assert client.post("/partners", json={"id": "x", "name": "X"}).status_code == 401
    assert (tmp / "partners" / "acme.toml").read_bytes() == before


def test_admin_changes_are_applied_audited_and_swapped_into_the_gateway(api):
    """An admin's change lands in the file, in the running gateway and in the audit trail
    with the admin's name and address."""
    client, tokens, gateway, tmp = api
    h = tokens["admin"]
    r = client.patch("/partners/acme/contacts", json={"emails": ["new@acme.example"]},
                     headers=h)
    assert r.status_code == 200 and r.json()["identifiers"]["email"] == ["new@acme.example"]
    assert gateway.partners.get("acme").identifiers.email == ["new@acme.example"]
    assert gateway.pipeline.partners is gateway.partners
    entry = client.app.state.partner_admin.audit.list()[0]
    assert (entry.actor, entry.action, entry.remote) == ("admin", "partner.contacts",
                                                         "192.0.2.5")
    assert client.post("/partners", json={"id": "gamma", "name": "Gamma"},
                       headers=h).status_code == 201
    assert client.post("/partners/gamma/disable", headers=h).json()["enabled"] is False
    assert client.post("/partners/acme/phones", json={"number": "06 11 22 33 44"},
                       headers=h).status_code == 201
    assert client.delete("/partners/acme/phones/0611223344", headers=h).status_code == 200
    r = client.put("/partners/acme/sftp/password", json={"password": "fresh-one"}, headers=h)
    assert r.status_code == 200 and "fresh-one" not in r.text
    assert (tmp / "var" / "secrets" / "acme" / "sftp-password").read_text() == "fresh-one"
    r = client.patch("/partners/acme/acknowledgements", json={"contrl": "errors"}, headers=h)
    assert r.json()["edifact"]["contrl"] == "errors"
    r = client.put("/partners/acme/documents", json={"documents": [
        {"type": "order", "format": "edifact", "mapping": "eancom-orders-d96a"}]}, headers=h)
    assert r.status_code == 200


def test_refusals_are_404_409_and_422_with_the_field(api):
    """Unknown partner 404, another partner's number 409 with its owner, bad value 422."""
    client, tokens, _, _ = api
    h = tokens["admin"]
    assert client.post("/partners/nobody/disable", headers=h).status_code == 404
    r = client.post("/partners/acme/phones", json={"number": "0699887766"}, headers=h)
    assert r.status_code == 409 and r.json()["detail"]["owner"] == "beta"
    r = client.put("/partners/acme/sftp/host-key", json={"host_key": "nonsense"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "host_key"
    r = client.patch("/partners/acme/acknowledgements", json={"contrl": "sometimes"}, headers=h)
    assert r.status_code == 422


def test_certificate_upload_as_raw_body_and_multipart(api):
    """A PEM body and a multipart DER-or-PEM file both land in [as2]; garbage is 422."""
    fixtures = loopback_pair()
    client, tokens, _, tmp = api
    h = tokens["admin"]
    r = client.post("/partners/acme/as2/certificates?as2_id=ACMEAS2",
                    content=(fixtures / "client_public.pem").read_bytes(),
                    headers={**h, "Content-Type": "application/x-pem-file"})
    assert r.status_code == 201 and r.json()["certificate"]["subject"] == "CN=as2client"
    r = client.post("/partners/acme/as2/certificates", headers=h, files={
        "certificate": ("server.pem", (fixtures / "server_public.pem").read_bytes())})
    assert r.status_code == 201 and r.json()["certificate"]["subject"] == "CN=as2server"
    profile = tomllib.loads((tmp / "partners" / "acme.toml").read_text())
    assert len(profile["as2"]["certificates"]) == 2
    r = client.post("/partners/acme/as2/certificates", content=b"garbage", headers=h)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "certificate"


def test_identifiers_are_patched_per_scheme_and_refused_when_taken(api):
    """PATCH identifiers replaces the schemes given (UNB as object or ID:QUALIFIER), keeps
    the others; another partner's phone is 409; a malformed GLN 422; a viewer 403."""
    client, tokens, _, tmp = api
    h = tokens["admin"]
    r = client.patch("/partners/acme/identifiers", headers=h, json={
        "unb": [{"id": "5412345000013", "qualifier": "14"}, "ACME01:ZZ"],
        "gln": ["5412345000013"]})
    assert r.status_code == 200, r.text
    ids = tomllib.loads((tmp / "partners" / "acme.toml").read_text())["identifiers"]
    assert ids["unb"] == [{"id": "5412345000013", "qualifier": "14"},
                          {"id": "ACME01", "qualifier": "ZZ"}]
    assert ids["gln"] == ["5412345000013"] and ids["email"] == ["orders@acme.example"]
    r = client.patch("/partners/acme/identifiers", headers=h, json={"phone": ["+33699887766"]})
    assert r.status_code == 409 and r.json()["detail"]["owner"] == "beta"
    r = client.patch("/partners/acme/identifiers", headers=h, json={"gln": ["12"]})
    assert r.status_code == 422 and r.json()["detail"]["field"].startswith("identifiers.gln")
    assert client.patch("/partners/acme/identifiers", headers=tokens["viewer"],
                        json={"gln": []}).status_code == 403


def test_certificates_are_listed_with_expiry_and_removed_by_fingerprint(api):
    """Two certificates uploaded: listed current then rotation, each with subject, serial,
    days left and its badge; removing the rotation one (admin) leaves the current one."""
    fixtures = loopback_pair()
    client, tokens, _, tmp = api
    h = tokens["admin"]
    for name in ("client_public.pem", "server_public.pem"):
        r = client.post("/partners/acme/as2/certificates?as2_id=ACMEAS2", headers=h,
                        content=(fixtures / name).read_bytes())
        assert r.status_code == 201, r.text
    r = client.get("/partners/acme/certificates", headers=tokens["viewer"])
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(c["place"], c["subject"]) for c in items] == [
        ("current", "CN=as2server"), ("rotation", "CN=as2client")]
    assert items[0]["badge"].startswith("expires in ") and items[0]["days_left"] > 3000
    assert items[0]["serial"] and items[0]["issuer"] == "CN=as2server"
    gone = items[1]["fingerprint"]
    assert client.delete(f"/partners/acme/certificates/{gone}",
                         headers=tokens["viewer"]).status_code == 403
    r = client.delete(f"/partners/acme/certificates/{gone}", headers=h)
    assert r.status_code == 200, r.text
    left = client.get("/partners/acme/certificates", headers=h).json()["items"]
    assert [c["subject"] for c in left] == ["CN=as2server"]
    assert client.delete(f"/partners/acme/certificates/{gone}", headers=h).status_code == 422
