"""The edigw command: configuration checks, partners, ingest, log and show."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with its own settings, partner folder and SQLite store."""
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n'  # nothing listens on port 1
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDIGW_STORE_URL", raising=False)
    monkeypatch.delenv("EDIGW_BROKER_URL", raising=False)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def test_check_config_prints_a_summary(workdir):
    """A valid configuration gives a summary with the masked broker URL."""
    r = run("check-config")
    assert r.exit_code == 0, r.output
    assert "configuration OK" in r.output and "guest:***@" in r.output
    assert "eancom-orders-d96a" in r.output


def test_check_config_names_file_key_and_value(workdir):
    """An unknown key exits 2 with the file, the key and the value, no traceback."""
    (workdir / "gateway.toml").write_text('[store]\nurl = "sqlite:///x.db"\ncolour = "red"\n')
    r = run("check-config")
    assert r.exit_code == 2
    assert "gateway.toml: store.colour: unknown key (value 'red')" in r.output
    assert "Traceback" not in r.output


def test_check_config_reports_a_partner_naming_a_missing_mapping(workdir):
    """A partner that names a mapping that does not exist is reported."""
    (workdir / "partners" / "acme.toml").write_text(
        'id = "acme"\nname = "ACME"\n[[documents]]\ntype = "order"\nmapping = "nope"\n')
    r = run("check-config")
    assert r.exit_code == 2 and "mapping 'nope' does not exist" in r.output


def test_partners_add_list_show(workdir):
    """partners add writes a valid profile that list and show print, also as JSON."""
    r = run("partners", "add", "acme", "--name", "ACME Retail", "--unb", "5401234000012:14",
            "--gln", "5401234000012", "--mapping", "order=eancom-orders-d96a")
    assert r.exit_code == 0, r.output
    assert (workdir / "partners" / "acme.toml").exists()
    listed = json.loads(run("partners", "list", "--json").output)
    assert listed[0]["id"] == "acme"
    assert listed[0]["identifiers"]["unb"] == [{"id": "5401234000012", "qualifier": "14"}]
    assert "5401234000012" in run("partners", "show", "acme").output
    again = run("partners", "add", "acme", "--name", "x")
    assert again.exit_code == 1 and "exists already" in again.output


def test_partners_add_refuses_a_clashing_or_bad_identifier(workdir):
    """A UNB id already used by another partner, or a malformed GLN, is refused."""
    run("partners", "add", "acme", "--name", "ACME", "--unb", "111:14")
    r = run("partners", "add", "beta", "--name", "Beta", "--unb", "111:14")
    assert r.exit_code == 2 and "already belongs to partner acme" in r.output
    assert not (workdir / "partners" / "beta.toml").exists()
    r = run("partners", "add", "gamma", "--name", "G", "--gln", "123")
    assert r.exit_code == 2 and "gln" in r.output


def test_ingest_log_show_and_find(workdir):
    """ingest stores documents (broker down: they wait), log/show/find report them."""
    run("partners", "add", "bakkerij", "--name", "Bakkerij", "--unb", "5401234000012:14")
    r = run("ingest", str(SAMPLE))
    assert r.exit_code == 0, r.output
    assert "1 document(s) for partner bakkerij" in r.output
    assert "wait in the outbox" in r.output
    rows = json.loads(run("log", "--json").output)
    assert rows[0]["status"] == "PROCESSED" and rows[0]["partner_id"] == "bakkerij"
    shown = json.loads(run("show", rows[0]["id"], "--json", "--payloads").output)
    assert [e["event"] for e in shown["events"]][:2] == ["received", "parsed"]
    assert shown["documents"][0]["payload"]["order_number"] == "PO-2024-0107"
    text = run("show", rows[0]["id"][:16]).output
    assert "timeline" in text and "PO-2024-0107" in text
    assert "PO-2024-0107" in run("find", "PO-2024-0107").output
    assert run("status").output.count("outbox") == 1
    again = run("ingest", str(SAMPLE))
    assert "DUPLICATE" in again.output


def test_ingest_of_a_bad_file_exits_1_with_the_reason(workdir):
    """A file that fails is reported with stage and reason and exit status 1."""
    bad = workdir / "bad.edi"
    bad.write_text("this is not edifact\n")
    r = run("ingest", str(bad))
    assert r.exit_code == 1
    assert "FAILED at detect" in r.output
    assert json.loads(run("log", "--json", "--status", "failed").output)[0]["filename"] == "bad.edi"


def test_log_filters_validate_their_values(workdir):
    """A bad --status or --since is a usage error, not a crash."""
    assert run("log", "--status", "nope").exit_code == 2
    assert run("log", "--since", "yesterday").exit_code == 2


def test_mappings_test_passes_on_the_committed_mappings(workdir):
    """Every committed mapping gives its expected JSON on its sample."""
    r = run("mappings", "test")
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output


def test_quarantined_file_is_reprocessed_after_the_partner_is_added(workdir):
    """An unknown sender is quarantined; once the partner exists, reprocess replays it as a
    new attempt linked to the first, recording who asked and why on both timelines."""
    r = run("ingest", str(SAMPLE))
    assert r.exit_code == 1 and "QUARANTINED at identify" in r.output
    tid = json.loads(run("log", "--json").output)[0]["id"]
    run("partners", "add", "bakkerij", "--name", "Bakkerij", "--unb", "5401234000012:14")
    assert run("reprocess", tid).exit_code == 2, "a reason is required"
    r = run("reprocess", tid, "--reason", "profile added for Bakkerij", "--by", "alice")
    assert r.exit_code == 0, r.output
    assert "1 document(s) for partner bakkerij" in r.output
    attempt = r.output.split("replayed as ")[1].split()[0]
    first = json.loads(run("show", tid, "--json").output)
    assert first["status"] == "QUARANTINED", "the first attempt keeps its outcome"
    assert [e["detail"] for e in first["events"] if e["event"] == "reprocessed"] == [
        f"new attempt {attempt} requested by alice: profile added for Bakkerij"]
    second = json.loads(run("show", attempt, "--json").output)
    assert second["status"] == "PROCESSED" and second["partner_id"] == "bakkerij"
    assert (second["reprocess_of"], second["requested_by"], second["request_reason"]) == (
        tid, "alice", "profile added for Bakkerij")
    assert second["sha256"] == first["sha256"]
    assert "nothing to reprocess" in run("reprocess", attempt, "--reason", "again").output
    from gateway.store.audit import AuditLog
    from gateway.store.db import Store

    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    [entry] = AuditLog(store).list(action="transmission.reprocess")
    store.close()
    assert (entry.actor, entry.target) == ("cli:alice", f"transmission:{tid}")
    r = run("reprocess", "no-such-id", "--reason", "x")
    assert r.exit_code == 1 and "no transmission no-such-id" in r.output


def test_log_and_show_say_what_the_erp_said(workdir):
    """Once published, a transmission's documents wait for the ERP; its acknowledgement shows
    in the log's erp column and on the document in show."""
    from gateway.store.db import Store
    from gateway.store.erp import ErpAck, ErpAcks

    run("partners", "add", "bakkerij", "--name", "Bakkerij", "--unb", "5401234000012:14")
    run("ingest", str(SAMPLE), "--no-publish")
    tid = json.loads(run("log", "--json").output)[0]["id"]
    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    assert json.loads(run("log", "--json").output)[0]["erp"] == "not applicable", \
        "not published yet"
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    assert run("log").output.splitlines()[1].split()[-1] == "waiting"
    assert " waiting " in run("show", tid).output, "show says what log says"
    [doc] = store.documents_of(tid)
    ErpAcks(store).record(ErpAck(doc.message_id, "REJECTED", "unknown article 4020000012342"),
                          b"{}")
    store.close()
    assert run("log").output.splitlines()[1].split()[-1] == "rejected"
    assert json.loads(run("log", "--json").output)[0]["erp"] == "rejected"
    out = run("show", tid).output
    assert "ERP REJECTED" in out and "unknown article 4020000012342" in out


def test_log_pages_with_a_footer_offset_all_and_csv(workdir):
    """Five transmissions shown two at a time: the footer says which of how many and how to
    see the others; --offset turns the page; --all and --csv give every row, with the order
    number of each."""
    run("partners", "add", "bakkerij", "--name", "Bakkerij", "--unb", "5401234000012:14")
    data = SAMPLE.read_bytes()
    for n in range(5):
        one = workdir / f"po-{n}.edi"
        one.write_bytes(data.replace(b"PO-2024-0107", f"PO-77{n}".encode())
                        .replace(b"ICR0042", f"ICR009{n}".encode()))
        assert run("ingest", str(one), "--no-publish").exit_code == 0
    first = run("log", "--limit", "2").output.splitlines()
    assert first[-1] == "2 of 5 — use --limit/--offset or --all"
    assert "PO-774" in first[1] and "PO-773" in first[2], "newest first, order number shown"
    second = run("log", "--limit", "2", "--offset", "2").output.splitlines()
    assert second[-1] == "3–4 of 5 — use --limit/--offset or --all"
    assert "PO-772" in second[1]
    everything = run("log", "--all").output.splitlines()
    assert everything[-1] == "5 of 5" and len(everything) == 7
    csv_rows = run("log", "--csv", "--all").output.splitlines()
    assert csv_rows[0].startswith("received_at,id,direction") and len(csv_rows) == 6
    assert [r.split(",")[10] for r in csv_rows[1:]] == [f"PO-77{n}" for n in (4, 3, 2, 1, 0)]
    found = json.loads(run("log", "--json", "--search", "PO-772").output)
    assert [r["numbers"] for r in found] == [["PO-772"]]
    assert run("log", "--search", "nothing-like-it").output == "no transmission matches\n"


def test_show_pages_the_documents_of_a_big_file(workdir):
    """show prints one page of documents with where it stands, --offset the next, --all
    every one; --json says how many there are in all."""
    from tests.unit.test_portal import _many_orders

    run("partners", "add", "acme", "--name", "ACME", "--unb", "5401234000012:14",
        "--mapping", "order=eancom-orders-d96a")
    big = workdir / "many.edi"
    big.write_bytes(_many_orders(45))
    assert run("ingest", str(big)).exit_code == 0
    tid = json.loads(run("log", "--json").output)[0]["id"]
    first = run("show", tid, "--limit", "20").output
    assert "documents (45)" in first and "documents 1–20 of 45" in first
    assert "PO-20 " in first and "PO-21 " not in first
    last = run("show", tid, "--limit", "20", "--offset", "40").output
    assert "documents 41–45 of 45" in last and "PO-45" in last and "PO-40 " not in last
    every = run("show", tid, "--all").output
    assert all(f"PO-{i} " in every for i in range(1, 46)) and "of 45 —" not in every
    page = json.loads(run("show", tid, "--json", "--limit", "10", "--offset", "5").output)
    assert page["documents_total"] == 45 and page["documents_offset"] == 5
    assert [d["business_number"] for d in page["documents"]] == [f"PO-{i}" for i in
                                                                  range(6, 16)]
