"""``edigw send``: a document for a partner rendered, recorded and delivered once, or only
shown (--dry-run), and refusals with their stage and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.store.db import Store
from tests.unit.outbound_fakes import BINARY_HEAD, install, invoice, price_list


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install(monkeypatch, tmp_path / "mappings")
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "acme.toml").write_text(
        'id = "acme"\nname = "Acme"\n[outbound]\nchannel = "folder"\n'
        'recipient_id = "5400000000003"\nformats = { invoice = "plain-invoice", price-list = "edifact" }\n'
        'price_lists = ["spring"]\n', encoding="utf-8")
    (tmp_path / "gateway.toml").write_text(
        'mappings = "mappings"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n'
        '[outbound]\npath = "out"\nsender_id = "5412345000013"\n', encoding="utf-8")
    (tmp_path / "inv.json").write_text(json.dumps(invoice()), encoding="utf-8")
    (tmp_path / "pl.json").write_text(json.dumps(price_list()), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDIGW_STORE_URL", raising=False)
    monkeypatch.delenv("EDIGW_BROKER_URL", raising=False)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def transmissions(workdir: Path) -> list[object]:
    store = Store.from_url(f"sqlite:///{workdir / 'var' / 'edigw.sqlite3'}")
    try:
        import sqlalchemy as sa

        from gateway.store import schema as s
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(s.transmissions)).all())
    finally:
        store.close()


def test_send_renders_records_and_delivers_at_once(workdir: Path) -> None:
    r = run("send", "inv.json", "--partner", "acme")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith(" DELIVERED invoice INV-1 for acme")  # a folder: at once
    assert "control ref 1, mapping plain-invoice" in lines[1]
    assert "delivered by folder: invoice written to" in lines[2]
    [written] = (workdir / "out" / "acme").iterdir()
    assert written.read_bytes() == b"REF 1\nINVOICE INV-1 for 5400000000003"
    [row] = transmissions(workdir)
    assert (row.direction, row.channel, row.filename, row.status) == ("out", "cli", "inv.json",
                                                                      "DELIVERED")


def test_send_json_and_format_by_mapping_id(workdir: Path) -> None:
    r = run("send", "inv.json", "--partner", "acme", "--format", "binary-invoice", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["status"], out["mapping"], out["delivery"], out["control_ref"]) == (
        "DELIVERED", "binary-invoice", "DELIVERED", None)
    assert out["filename"].endswith(".pdf") and out["transmission_id"]


def test_dry_run_prints_the_bytes_and_records_nothing(workdir: Path) -> None:
    r = run("send", "inv.json", "--partner", "acme", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == b"REF 1\nINVOICE INV-1 for 5400000000003"
    pdf = run("send", "inv.json", "--partner", "acme", "--dry-run", "--format", "factur-x")
    assert pdf.exit_code == 0 and pdf.stdout_bytes == BINARY_HEAD + b"INV-1"  # binary-safe
    assert transmissions(workdir) == []
    assert not (workdir / "out").exists()


def test_dry_run_of_a_price_list_renders_for_a_subscriber(workdir: Path) -> None:
    r = run("send", "inv.json", "--price-list", "spring", "--dry-run")
    assert r.exit_code == 0 and "dry run for acme" in r.stderr
    none = run("send", "inv.json", "--price-list", "autumn", "--dry-run")
    assert none.exit_code == 1 and "no partner subscribes" in none.stderr


def test_dry_run_failure_names_stage_and_reason(workdir: Path) -> None:
    (workdir / "bad.json").write_text(json.dumps(invoice("BAD")), encoding="utf-8")
    r = run("send", "bad.json", "--partner", "acme", "--dry-run")
    assert r.exit_code == 1 and r.stdout_bytes == b""
    assert "render: plain-invoice: cannot render BAD" in r.stderr
    unknown = run("send", "inv.json", "--partner", "nobody", "--dry-run")
    assert unknown.exit_code == 1 and "partner: unknown partner 'nobody'" in unknown.stderr
    assert transmissions(workdir) == []


def test_a_refused_document_is_recorded_failed_and_exits_1(workdir: Path) -> None:
    (workdir / "garbage.json").write_bytes(b"{not json")
    r = run("send", "garbage.json", "--partner", "acme")
    assert r.exit_code == 1
    assert "parse: not JSON" in r.stderr and "FAILED" in r.stdout
    [row] = transmissions(workdir)
    assert (row.status, row.stage) == ("FAILED", "parse")
    assert not (workdir / "out").exists()


def test_partner_or_price_list_is_needed(workdir: Path) -> None:
    assert run("send", "inv.json").exit_code == 2
    both = run("send", "inv.json", "--partner", "acme", "--price-list", "spring")
    assert both.exit_code == 2 and "not both" in both.stderr
    unknown = run("send", "pl.json", "--price-list", "autumn")
    assert unknown.exit_code == 1 and "no enabled partner subscribes" in unknown.stderr


def test_a_price_list_goes_to_each_subscriber(workdir: Path) -> None:
    r = run("send", "pl.json", "--price-list", "spring", "--json")
    assert r.exit_code == 0, r.stderr
    [copy] = json.loads(r.stdout)
    assert (copy["partner"], copy["doc_type"], copy["status"]) == ("acme", "price-list",
                                                                   "DELIVERED")
    [written] = (workdir / "out" / "acme").iterdir()
    assert written.read_bytes() == b"REF 1\nPRICE-LIST PL-1 for 5400000000003"
