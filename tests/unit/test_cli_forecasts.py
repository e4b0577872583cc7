"""``edigw forecasts import`` and ``list``: a CSV imported all or nothing (the bad line
named), then listed against what was ordered, as a table and as JSON."""

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store.db import NewDocument, Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "acme.toml").write_text('id = "acme"\nname = "ACME"\n')
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[tracker]\ntimezone = "Europe/Paris"\n')
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def test_import_is_all_or_nothing_and_list_shows_the_gap(workdir):
    bad = workdir / "bad.csv"
    bad.write_text("partner_id,month,currency,amount\nacme,2026-03,EUR,100\n"
                   "ghost,2026-03,EUR,5\n")
    refused = run("forecasts", "import", str(bad))
    assert refused.exit_code == 1
    assert "line 3" in refused.output and "ghost" in refused.output
    assert "no forecast" in run("forecasts", "list", "--from", "2026-03").output

    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    tid = store.record_received(channel="folder", channel_ref=None, filename="f", size=1,
                                sha256="ab" * 32)
    store.record_processed(tid, partner_id="acme", fmt="edifact", standard=None, docs=[
        NewDocument(doc_type="order", schema_version="edigw.order/1", business_number="1",
                    interchange_ref=None, message_ref=None, message_id="m1",
                    payload=json.dumps({"currency": "EUR", "lines": [
                        {"quantity": "3", "line_amount": "80"}]}).encode(),
                    routing_key="order")])
    from gateway.store import schema as s

    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().values(
            received_at=dt.datetime(2026, 3, 10, 10, tzinfo=dt.UTC)))
    store.close()

    good = workdir / "good.csv"
    good.write_text("partner_id,month,currency,amount\nacme,2026-03,EUR,100\n")
    done = run("forecasts", "import", str(good))
    assert done.exit_code == 0, done.output
    assert "1 forecast(s) imported" in done.output
    listed = run("forecasts", "list", "--from", "2026-03")
    assert listed.exit_code == 0, listed.output
    assert "acme" in listed.output and "-20.00" in listed.output and "-20.0" in listed.output
    rows = json.loads(run("forecasts", "list", "--from", "2026-03", "--json").output)
    assert [(r["partner_id"], r["forecast"], r["actual"], r["gap_percent"]) for r in rows] == [
        ("acme", "100", "80.00", -20.0)]
