"""``edigw partners state`` and ``edigw partners checklist``: a state changed from the
command line is audited and refused as the console refuses it; going live releases the
files held while the partner was suspended."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from tests.unit.test_onboarding import PROFILE, ROOT, order


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "retail.toml").write_text(PROFILE.format(state='state = "test"'))
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n'  # nothing listens on port 1
        '[outbound]\npath = "var/outbound"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDIGW_STORE_URL", raising=False)
    monkeypatch.delenv("EDIGW_BROKER_URL", raising=False)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def _audit(workdir) -> list:
    store = Store.from_url(f"sqlite:///{workdir / 'var' / 'edigw.sqlite3'}")
    try:
        return AuditLog(store).list(target="partner:retail")
    finally:
        store.close()


def test_check_config_and_list_show_the_state(workdir):
    assert run("check-config").exit_code == 0
    r = run("partners", "list")
    header, row = r.output.splitlines()[:2]
    assert r.exit_code == 0 and "state" in header and row.split()[:4] == ["retail", "Retail", "SA", "test"]


def test_checklist_lists_what_is_missing_and_exits_1(workdir):
    r = run("partners", "checklist", "retail")
    assert r.exit_code == 1, r.output
    assert "not ready to go live" in r.output
    assert "[ ] order received in test: no order received" in r.output
    r = run("partners", "checklist", "retail", "--json")
    body = json.loads(r.output)
    assert body["ready"] is False and body["state"] == "test"
    assert run("partners", "checklist", "nobody").exit_code == 1


def test_promotion_refused_then_ready_after_a_test_file(workdir):
    """Refused with the missing items on stderr and the profile untouched; after one test
    order (its CONTRL written to the outbound folder) the checklist is done and the
    promotion goes through, audited under the command's user."""
    r = run("partners", "state", "retail", "live", "--reason", "recette ok")
    assert r.exit_code == 1
    assert "not ready to go live" in r.output and "- CONTRL returned" in r.output
    assert 'state = "test"' in (workdir / "partners" / "retail.toml").read_text()
    sample = workdir / "order.edi"
    sample.write_bytes(order(1))
    assert run("ingest", "--no-publish", str(sample)).exit_code == 0
    r = run("partners", "checklist", "retail")
    assert r.exit_code == 0 and "ready to go live" in r.output, r.output
    r = run("partners", "state", "retail", "live", "--reason", "recette ok", "--by", "bob")
    assert r.exit_code == 0, r.output
    assert "partner retail: live" in r.output
    assert "state" not in tomllib.loads((workdir / "partners" / "retail.toml").read_text())
    entry = _audit(workdir)[0]
    assert (entry.actor, entry.action) == ("cli:bob", "partner.state")
    assert entry.before == {"state": "test"} and entry.after["reason"] == "recette ok"


def test_forced_promotion_and_refusals(workdir):
    r = run("partners", "state", "retail", "live", "--reason", "urgent", "--force")
    assert r.exit_code == 0, r.output
    assert _audit(workdir)[0].after["forced"] is True
    assert run("partners", "state", "retail", "beta", "--reason", "x").exit_code == 2
    assert run("partners", "state", "retail", "draft").exit_code == 2  # no --reason
    r = run("partners", "state", "retail", "draft", "--reason", "  ")
    assert r.exit_code == 1 and "reason" in r.output
    assert run("partners", "state", "nobody", "draft", "--reason", "x").exit_code == 1


def test_going_live_releases_the_files_held_while_suspended(workdir):
    assert run("partners", "state", "retail", "suspended", "--reason", "unpaid",
               "--force").exit_code == 0
    sample = workdir / "order.edi"
    sample.write_bytes(order(7))
    r = run("ingest", "--no-publish", str(sample))
    assert "QUARANTINED" in r.output and "suspended" in r.output
    r = run("partners", "state", "retail", "live", "--reason", "paid", "--wait", "0.1")
    assert r.exit_code == 0, r.output
    assert "1 held file(s) released" in r.output
    assert "wait in the outbox" in r.output  # the broker is not there: kept for serve
