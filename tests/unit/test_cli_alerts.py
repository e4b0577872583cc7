"""``edigw alerts``: list (open and acknowledged by default), ack, resolve with who and a
note, check (the rules once, now), refusals of unknown ids and invalid transitions."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store.db import Store
from gateway.tracker.alerts import AlertBook, Condition

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n')
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def _open_two() -> list[int]:
    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    result = AlertBook(store).reconcile([
        Condition("gap", "acme", "gap:acme:1043-1044",
                  "interchanges from acme: received 1045 while expecting 1043"),
        Condition("silence", "beta", "silence:beta:order:2026-12-01",
                  "beta sent no order on 2026-12-01 before 10:00")],
        kinds_checked=["gap", "silence"])
    store.close()
    return [a.id for a in result.opened]


def test_list_ack_resolve(workdir):
    assert run("alerts").output.strip() == "no alerts"
    gap, silence = _open_two()
    out = run("alerts").output
    assert "received 1045 while expecting 1043" in out and "beta sent no order" in out

    r = run("alerts", "ack", str(gap), "--note", "calling acme", "--by", "marie")
    assert r.exit_code == 0 and f"alert {gap} acknowledged" in r.output
    [acked] = json.loads(run("alerts", "--partner", "acme", "--json").output)
    assert (acked["status"], acked["acknowledged_by"], acked["note"]) == (
        "acknowledged", "marie", "calling acme")

    r = run("alerts", "resolve", str(silence), "--by", "marie", "--note", "shop closed")
    assert r.exit_code == 0
    assert [a["id"] for a in json.loads(run("alerts", "--json").output)] == [gap]
    resolved = json.loads(run("alerts", "--status", "resolved", "--json").output)
    assert [(a["id"], a["resolved_by"]) for a in resolved] == [(silence, "marie")]
    assert len(json.loads(run("alerts", "--status", "all", "--json").output)) == 2


def test_unknown_alert_and_invalid_transition_are_refused(workdir):
    _gap, silence = _open_two()
    r = run("alerts", "ack", "999")
    assert r.exit_code == 1 and "999" in r.output
    assert run("alerts", "resolve", str(silence)).exit_code == 0
    r = run("alerts", "ack", str(silence))
    assert r.exit_code == 1 and "resolved" in r.output


def test_check_runs_the_rules_once(workdir):
    """A quarantined file (no partner knows its sender) opens a quarantine alert; a second
    check opens nothing more."""
    run("ingest", str(SAMPLE), "--no-publish")
    r = run("alerts", "check")
    assert r.exit_code == 0, r.output
    assert "opened   " in r.output and "quarantine" in r.output
    assert r.output.strip().endswith("1 opened, 0 still open, 0 resolved")
    again = run("alerts", "check").output
    assert again.strip().endswith("0 opened, 1 still open, 0 resolved")


def test_several_alerts_resolved_at_once_and_listed_a_page_at_a_time(workdir):
    """'alerts resolve A B' resolves both; one that cannot be is named with exit 1 while the
    others are done; --limit/--offset page the list with a footer."""
    gap, silence = _open_two()
    out = run("alerts", "--limit", "1").output.splitlines()
    assert out[-1] == "1–1 of 2 — use --limit/--offset"
    second = run("alerts", "--limit", "1", "--offset", "1").output.splitlines()
    assert second[-1] == "2–2 of 2 — use --limit/--offset"
    assert {out[1].split()[0], second[1].split()[0]} == {str(gap), str(silence)}
    r = run("alerts", "resolve", str(gap), str(silence), "--by", "marie", "--note", "done")
    assert r.exit_code == 0, r.output
    assert f"alert {gap} resolved" in r.output and f"alert {silence} resolved" in r.output
    assert run("alerts").output.strip() == "no alerts"
    r = run("alerts", "ack", str(gap), "999")
    assert r.exit_code == 1 and "no alert 999" in r.output and "resolved" in r.output
