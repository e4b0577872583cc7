"""The edigw command with AS2 and SMS configured: check-config catches what would stop the
endpoints (a wrong passphrase, a missing secret, an unreadable certificate), channels lists the
endpoints and certificates, security lists refused requests. Keys are the loopback pair made
at test time (tests/as2_keys.py, password 'test')."""

import json

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store.db import Store
from gateway.store.security import SecurityLog
from tests.as2_keys import loopback_pair

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    fixtures = loopback_pair()
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[http]\nport = 8099\n'
        '[as2]\n[[as2.identities]]\nas2_id = "WHOLESALER"\n'
        f'key_file = "{fixtures / "server_private.pem"}"\npassphrase = "${{AS2_PASS}}"\n'
        '[sms]\n[sms.twilio]\nauth_token = "${TWILIO_TOKEN:-}"\n')
    (tmp_path / "partners" / "retailer.toml").write_text(
        'id = "retailer"\nname = "Retailer"\nchannels = ["as2"]\n'
        f'[as2]\nas2_id = "RETAILER"\ncertificates = ["{fixtures / "client_public.pem"}"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AS2_PASS", "test")
    monkeypatch.setenv("TWILIO_TOKEN", "secret-token")
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def test_check_config_summarises_the_endpoints(workdir):
    r = run("check-config")
    assert r.exit_code == 0, r.output
    assert "as2        POST /as2 as WHOLESALER; partners retailer (RETAILER)" in r.output
    assert "sms        POST /sms/twilio" in r.output and "http       127.0.0.1:8099" in r.output
    assert "secret-token" not in r.output


def test_check_config_names_a_wrong_passphrase_a_missing_secret_and_a_bad_certificate(
        workdir, monkeypatch):
    monkeypatch.setenv("AS2_PASS", "not-it")
    monkeypatch.setenv("TWILIO_TOKEN", "")
    (workdir / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    profile = workdir / "partners" / "retailer.toml"
    profile.write_text(profile.read_text().replace(
        'certificates = ["', f'certificates = ["{workdir / "bad.pem"}", "'))
    r = run("check-config")
    assert r.exit_code == 2
    assert "as2 identity WHOLESALER" in r.output and "passphrase" in r.output
    assert "sms.twilio needs auth_token" in r.output
    assert "bad.pem" in r.output
    assert "not-it" not in r.output


def test_channels_lists_endpoints_and_certificates_and_security_lists_events(workdir):
    r = run("channels", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["channel"]: row for row in json.loads(r.output)}
    assert rows["as2"]["where"] == "POST http://127.0.0.1:8099/as2 as WHOLESALER"
    assert rows["as2:retailer"]["state"] == "listening"
    assert rows["sms:twilio"]["where"].endswith("/sms/twilio")
    own = rows["certificate:as2:own:WHOLESALER"]
    theirs = rows["certificate:as2:retailer:1"]
    assert own["kind"] == theirs["kind"] == "certificate"
    assert own["state"] in ("OK", "EXPIRING", "EXPIRED") and "not after" in own["detail"]
    assert theirs["partner"] == "retailer"

    assert run("security").output.strip() == "no security events"
    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    SecurityLog(store).record("sms:twilio", "bad-signature", remote="203.0.113.9",
                              detail="X-Twilio-Signature does not match")
    store.close()
    events = json.loads(run("security", "--json").output)
    assert [(e["channel"], e["kind"], e["remote"]) for e in events] == [
        ("sms:twilio", "bad-signature", "203.0.113.9")]
    assert "does not match" in run("security").output


def test_show_prints_what_the_as2_and_sms_transports_recorded(workdir):
    import datetime as dt

    import sqlalchemy as sa

    from gateway.store import schema as s

    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    now = dt.datetime(2026, 11, 27, 16, 0, tzinfo=dt.UTC)
    store.record_received_many([
        dict(id="t-as2", channel="as2", channel_ref="<m1@retailer>", filename="order.edi",
             size=10, sha256="0" * 64, partner_id="retailer", duplicate_of=None),
        dict(id="t-sms", channel="sms", channel_ref="twilio:SM1", filename="sms.txt",
             size=10, sha256="1" * 64, partner_id=None, duplicate_of=None)])
    with store._begin() as conn:
        conn.execute(sa.insert(s.as2_messages).values(
            id="a1", message_id="m1@retailer", partner_id="retailer", as2_from="RETAILER",
            as2_to="WHOLESALER", transmission_id="t-as2", received_at=now, signed=True,
            encrypted=True, compressed=False, algorithms="sha256, aes_256_cbc",
            mic="abc=, sha256", disposition="automatic-action/MDN-sent-automatically; processed",
            mdn_mode="async", mdn_signed=True, mdn_url="https://retailer.example/mdn",
            mdn_state="pending", mdn_attempts=2, mdn_last_error="HTTP 503"))
        conn.execute(sa.insert(s.webhook_messages).values(
            provider="twilio", provider_message_id="SM1", sender="+33612345678",
            transmission_id="t-sms", received_at=now, reply="Order received: 2 items"))
    store.close()
    out = run("show", "t-as2").output
    assert "AS2\n  Message-ID   m1@retailer\n  from / to    RETAILER -> WHOLESALER" in out
    assert "signed, encrypted (sha256, aes_256_cbc)" in out
    assert "MDN          async, signed, pending after 2 attempt(s)" in out
    assert "MDN error    HTTP 503" in out
    out = run("show", "t-sms").output
    assert "SMS\n  provider     twilio SM1\n  from         +33612345678" in out
    assert "replied      Order received: 2 items" in out
    data = json.loads(run("show", "t-as2", "--json").output)
    assert data["as2"]["mdn_state"] == "pending" and "sms" not in data
