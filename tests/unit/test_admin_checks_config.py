"""A change made in the console is judged as ``edigw check-config`` judges the configuration,
before anything is written: the certificate upload that once left a profile check-config
refused (the partner's new ``[as2]`` on a gateway without our AS2 identity, while ``serve``
kept running) is refused with check-config's reason, and nothing is written."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import load_settings
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.web.partners_admin import CheckFailed, PartnerAdmin
from tests.as2_keys import loopback_pair
from tests.conftest import ROOT

ACME = 'id = "acme"\nname = "ACME Retail"\n[identifiers]\nunb = [{ id = "5412345000013" }]\n'


def _world(tmp_path, as2: str = ""):
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text(ACME, encoding="utf-8")
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{partners}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "edigw.sqlite3"}"\n' + as2, encoding="utf-8")
    settings = load_settings(tmp_path / "gateway.toml", env={})
    store = Store.from_url(settings.store.url)
    admin = PartnerAdmin(settings, audit=AuditLog(store), certs_dir=tmp_path / "certs",
                         secrets_dir=tmp_path / "secrets", env={})
    return admin, store


def check_config(tmp_path) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--config", str(tmp_path / "gateway.toml"), "check-config"])
    return r.exit_code, r.output


def test_certificate_upload_that_check_config_would_refuse_is_refused_and_nothing_written(
        tmp_path):
    """No [as2] in gateway.toml: the upload creating the partner's [as2] is refused with
    check-config's own words; profile, certificate folder and audit trail stay as they were,
    and check-config still passes."""
    admin, store = _world(tmp_path)
    assert check_config(tmp_path)[0] == 0
    before = (tmp_path / "partners" / "acme.toml").read_bytes()
    cert = (loopback_pair() / "client_public.pem").read_bytes()
    with pytest.raises(CheckFailed) as refused:
        admin.upload_as2_certificate("ada", "acme", cert, as2_id="ACMEAS2")
    assert "as2 needs [as2] with our identity" in str(refused.value)
    assert refused.value.problems and refused.value.field == "check-config"
    assert (tmp_path / "partners" / "acme.toml").read_bytes() == before
    assert not list((tmp_path / "certs").rglob("*.pem"))
    assert admin.audit.list(action="partner.as2-certificate") == []
    code, out = check_config(tmp_path)
    assert code == 0, out
    store.close()


def test_certificate_upload_passes_when_check_config_would_and_check_config_agrees(tmp_path):
    """With our AS2 identity configured the same upload is written, and check-config
    accepts the configuration it left."""
    pair = loopback_pair()
    admin, store = _world(tmp_path, as2=(
        f'[as2]\n[[as2.identities]]\nas2_id = "as2server"\n'
        f'key_file = "{pair / "server_private.pem"}"\npassphrase = "test"\n'))
    shown = admin.upload_as2_certificate("ada", "acme", (pair / "client_public.pem").read_bytes(),
                                         as2_id="ACMEAS2")
    assert shown["as2"]["as2_id"] == "ACMEAS2"
    code, out = check_config(tmp_path)
    assert code == 0, out
    store.close()


def test_removing_the_only_certificate_is_refused_as_check_config_would(tmp_path):
    """An AS2 partner without a certificate is a check-config problem: removing its only
    certificate is refused and the profile keeps it."""
    pair = loopback_pair()
    admin, store = _world(tmp_path, as2=(
        f'[as2]\n[[as2.identities]]\nas2_id = "as2server"\n'
        f'key_file = "{pair / "server_private.pem"}"\npassphrase = "test"\n'))
    shown = admin.upload_as2_certificate("ada", "acme", (pair / "client_public.pem").read_bytes(),
                                         as2_id="ACMEAS2")
    fingerprint = shown["certificate"]["sha256"]
    with pytest.raises(CheckFailed) as refused:
        admin.remove_certificate("ada", "acme", fingerprint)
    assert "the partner's certificate is needed" in str(refused.value)
    raw = tomllib.loads((tmp_path / "partners" / "acme.toml").read_text())
    assert raw["as2"]["certificates"] == [shown["certificate"]["file"]]
    store.close()


def test_a_problem_already_there_does_not_block_an_unrelated_change(tmp_path):
    """Only what a change adds is refused: another partner's old problem (a mapping that
    does not exist) does not stop renaming acme."""
    admin, store = _world(tmp_path)
    (tmp_path / "partners" / "beta.toml").write_text(
        'id = "beta"\nname = "Beta"\n[[documents]]\ntype = "order"\nmapping = "nope"\n')
    assert check_config(tmp_path)[0] == 2
    admin.set_contacts("ada", "acme", name="ACME Retail Group")
    assert tomllib.loads((tmp_path / "partners" / "acme.toml").read_text())["name"] == \
        "ACME Retail Group"
    store.close()


def test_partners_add_refuses_what_check_config_would_and_writes_nothing(tmp_path):
    """``edigw partners add`` naming a mapping that does not exist exits 1 with
    check-config's reason; no profile is written and check-config still passes."""
    _admin, store = _world(tmp_path)
    store.close()
    r = CliRunner().invoke(main, ["--config", str(tmp_path / "gateway.toml"), "partners", "add",
                                  "zuid", "--name", "Zuid", "--mapping", "order=nope"])
    assert r.exit_code == 1 and "mapping 'nope' does not exist" in r.output
    assert not (tmp_path / "partners" / "zuid.toml").exists()
    assert check_config(tmp_path)[0] == 0
