"""A partner's certificates as its page and the API list them: read from the files its
profile names, each judged now with its badge ("expires in N days", "expired", "not yet
valid", "unreadable") and its use (current, rotation, CA)."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization

from gateway.config import GatewaySettings
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.web.partners_admin import PartnerAdmin
from tests.as2_keys import self_signed
from tests.conftest import ROOT


def _pem(tmp_path, name: str, **validity) -> str:
    _key, cert = self_signed(name, **validity)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_certificates_are_judged_with_their_badge_and_use(tmp_path):
    """Current valid 40 days, rotation expired, a CA not yet valid, a missing file."""
    now = dt.datetime.now(dt.UTC)
    current = _pem(tmp_path, "current", not_after=now + dt.timedelta(days=40, hours=1))
    old = _pem(tmp_path, "old", not_before=now - dt.timedelta(days=400),
               not_after=now - dt.timedelta(days=3))
    ca = _pem(tmp_path, "ca", not_before=now + dt.timedelta(days=2),
              not_after=now + dt.timedelta(days=900))
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text(
        'id = "acme"\nname = "ACME"\n[as2]\nas2_id = "ACME"\n'
        f'certificates = ["{current}", "{old}"]\n'
        f'ca_certificates = ["{ca}", "{tmp_path / "gone.pem"}"]\n')
    settings = GatewaySettings.model_validate({"partners": str(partners),
                                               "mappings": str(ROOT / "mappings")})
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    admin = PartnerAdmin(settings, audit=AuditLog(store), env={})
    found = admin.certificates("acme")
    assert [(c.place, c.subject, c.badge) for c in found] == [
        ("current", "CN=current", "expires in 40 days"),
        ("rotation", "CN=old", "expired"),
        ("ca", "CN=ca", "not yet valid"),
        ("ca", None, "unreadable")]
    assert found[0].state == "ok" and found[1].state == "expired"
    assert found[0].usage.startswith("verifies its signatures")
    assert "cannot read the file" in (found[3].detail or "")
    assert found[1].as_dict()["not_after"].startswith((now - dt.timedelta(days=3)).date()
                                                      .isoformat())
    store.close()
