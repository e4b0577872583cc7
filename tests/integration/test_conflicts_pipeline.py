"""Duplicates by content, conflicts by number, through the real pipeline and store.

Two UBL invoices with the same number and issue date but another payable amount are two
documents: the first is queued, the second is held as CONFLICT with the difference shown;
the first sent again unchanged (another file) is a DUPLICATE. An operator releases the
held one from the API or the CLI, with an audit row. SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.app import Gateway
from gateway.config import GatewaySettings, Identifiers, Partner, PartnerDirectory
from gateway.core.ports import Incoming
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.conflicts import ConflictDesk

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "mappings" / "xml" / "ubl-invoice.sample.xml").read_bytes()
PAYABLE = b'<cbc:PayableAmount currencyID="EUR">'


def corrected(amount: bytes) -> bytes:
    """The sample invoice, same number and date, another payable amount."""
    start = SAMPLE.index(PAYABLE) + len(PAYABLE)
    end = SAMPLE.index(b"<", start)
    return SAMPLE[:start] + amount + SAMPLE[end:]


def _settings(tmp_path: Path, store_url: str) -> GatewaySettings:
    return GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")


def _gateway(tmp_path: Path, store_url: str, on_conflict: str = "hold") -> Gateway:
    seller = Partner(id="seller", name="Seller SA", on_conflict=on_conflict,
                     identifiers=Identifiers(vat=["FR 44 732829320"]))
    return Gateway.open(_settings(tmp_path, store_url), partners=PartnerDirectory([seller]))


@pytest.fixture
def gw(tmp_path, store_url):
    g = _gateway(tmp_path, store_url)
    yield g
    g.close()


def _ingest(gw: Gateway, data: bytes, name: str):
    receipt = gw.pipeline.receive(Incoming(data=data, channel="test", filename=name))
    return gw.pipeline.process(receipt.transmission_id)


def test_a_corrected_invoice_under_the_same_number_is_held_as_conflict_not_dropped(gw):
    """Same number and date, other payable amount: both visible, the second held with the
    payable difference; the first sent again unchanged is a DUPLICATE."""
    first = _ingest(gw, SAMPLE, "invoice.xml")
    assert first.queued == 1, first.reason
    other = _ingest(gw, corrected(b"4918.84"), "invoice-corrected.xml")
    assert (other.status, other.queued) == (s.HELD, 0)
    (held,) = gw.store.documents_of(other.transmission_id)
    (original,) = gw.store.documents_of(first.transmission_id)
    assert held.status == s.DOC_CONFLICT and held.conflict_of == original.id
    assert held.business_number == original.business_number
    assert held.message_id != original.message_id  # the ERP cannot drop it as a repeat
    assert held.content_sha != original.content_sha
    assert gw.store.get_transmission(other.transmission_id).status == s.HELD
    conflict_events = [e["detail"] for e in gw.store.events(other.transmission_id)
                       if e["event"] == "conflict"]
    assert len(conflict_events) == 1 and "totals.payable" in conflict_events[0]
    assert "4918.84" in conflict_events[0]
    c = ConflictDesk(gw.store).get(held.id)
    assert [(d.path, d.after) for d in c.comparison.differences] == [
        ("totals.payable", "4918.84")]
    assert c.earlier is not None and c.earlier.id == original.id
    assert gw.store.outbox_size() == 1  # only the first

    again = _ingest(gw, SAMPLE + b"\n<!-- sent again -->\n", "invoice-again.xml")
    (dup,) = gw.store.documents_of(again.transmission_id)
    assert dup.status == s.DOC_DUPLICATE and again.queued == 0
    assert gw.store.get_transmission(again.transmission_id).status == s.PUBLISHED
    assert gw.store.outbox_size() == 1


def test_an_identical_resend_of_the_held_conflict_is_a_duplicate_not_a_second_conflict(gw):
    _ingest(gw, SAMPLE, "invoice.xml")
    _ingest(gw, corrected(b"4918.84"), "a.xml")
    out = _ingest(gw, corrected(b"4918.84") + b"\n", "b.xml")
    (doc,) = gw.store.documents_of(out.transmission_id)
    assert doc.status == s.DOC_DUPLICATE
    assert len(ConflictDesk(gw.store).list()) == 1


def test_under_on_conflict_publish_the_corrected_invoice_is_queued_with_a_note(tmp_path,
                                                                               store_url):
    gw = _gateway(tmp_path, store_url, on_conflict="publish")
    try:
        first = _ingest(gw, SAMPLE, "invoice.xml")
        other = _ingest(gw, corrected(b"4918.84"), "invoice-corrected.xml")
        assert (other.status, other.queued) == (s.PROCESSED, 1)
        (doc,) = gw.store.documents_of(other.transmission_id)
        (original,) = gw.store.documents_of(first.transmission_id)
        assert doc.status == s.PENDING and doc.conflict_of == original.id
        assert doc.message_id != original.message_id
        notes = [e["detail"] for e in gw.store.events(other.transmission_id)
                 if e["event"] == "conflict"]
        assert notes and "published anyway" in notes[0]
        assert gw.store.outbox_size() == 2
    finally:
        gw.close()


def test_release_from_the_cli_queues_it_writes_the_audit_and_settles_the_transmission(
        gw, store_url):
    from gateway import cli

    _ingest(gw, SAMPLE, "invoice.xml")
    other = _ingest(gw, corrected(b"4918.84"), "b.xml")
    (held,) = gw.store.documents_of(other.transmission_id)
    runner = CliRunner()
    env = {"EDIGW_STORE_URL": store_url}
    show = runner.invoke(cli.main, ["show", other.transmission_id], env=env)
    assert show.exit_code == 0, show.output
    assert f"transmission {other.transmission_id}  HELD" in show.output
    assert f"conflicts show {held.id}" in show.output
    log = runner.invoke(cli.main, ["log", "--status", "held"], env=env)
    assert other.transmission_id in log.output, log.output
    shown = runner.invoke(cli.main, ["conflicts", "show", held.id],
                          env={"EDIGW_STORE_URL": store_url})
    assert shown.exit_code == 0, shown.output
    assert "totals.payable" in shown.output and "4918.84" in shown.output
    out = runner.invoke(cli.main, ["conflicts", "release", held.id, "--by", "olivia",
                                   "--reason", "corrected invoice, agreed by phone"],
                        env={"EDIGW_STORE_URL": store_url})
    assert out.exit_code == 0, out.output
    assert "PENDING" in out.output
    (doc,) = gw.store.documents_of(other.transmission_id)
    assert doc.status == s.PENDING
    assert gw.store.get_transmission(other.transmission_id).status == s.PROCESSED
    assert gw.store.outbox_size() == 2
    (entry,) = AuditLog(gw.store).list(action="conflict.*")
    assert (entry.actor, entry.action, entry.target) == ("olivia", "conflict.release",
                                                         f"document:{held.id}")
    assert "conflict-released" in [e["event"] for e in gw.store.events(other.transmission_id)]
    again = runner.invoke(cli.main, ["conflicts", "release", held.id],
                          env={"EDIGW_STORE_URL": store_url})
    assert again.exit_code == 1 and "not held as a CONFLICT" in again.output


def test_reject_settles_the_transmission_partial_and_the_next_copy_conflicts_again(gw):
    """A rejected document does not count as received: a later copy of it is judged
    against the invoice published, not called a duplicate of the rejected one."""
    first = _ingest(gw, SAMPLE, "invoice.xml")
    other = _ingest(gw, corrected(b"4918.84"), "b.xml")
    (held,) = gw.store.documents_of(other.transmission_id)
    desk = ConflictDesk(gw.store)
    doc = desk.reject(held.id, by="olivia", reason="wrong amount, partner informed")
    assert doc.status == s.DOC_REJECTED and "wrong amount" in doc.reason
    assert gw.store.get_transmission(other.transmission_id).status == s.PARTIAL
    later = _ingest(gw, corrected(b"4918.84") + b"\n", "c.xml")
    (copy,) = gw.store.documents_of(later.transmission_id)
    (original,) = gw.store.documents_of(first.transmission_id)
    assert copy.status == s.DOC_CONFLICT and copy.conflict_of == original.id


def test_release_through_the_api_needs_an_operator_and_writes_the_audit(gw):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from gateway.web.api import create_console

    _ingest(gw, SAMPLE, "invoice.xml")
    other = _ingest(gw, corrected(b"4918.84"), "b.xml")
    (held,) = gw.store.documents_of(other.transmission_id)
    con = create_console(gw)
    tokens = {}
    for role in ("viewer", "operator"):
        con.auth.users.create(role, f"pw-{role}-long-enough", role)
        tokens[role] = con.auth.tokens.create(con.auth.users.by_username(role), "t")[0]
    client = TestClient(Starlette(routes=con.routes))

    def as_(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    assert client.get("/api/conflicts", headers=as_("viewer")).status_code == 403
    page = client.get("/api/conflicts", headers=as_("operator")).json()
    listed = page["items"]
    assert [c["document"]["id"] for c in listed] == [held.id] and page["total"] == 1
    assert listed[0]["differences"] == [{"path": "totals.payable", "before": "144.44",
                                         "after": "4918.84"}]
    one = client.get(f"/api/conflicts/{held.id}", headers=as_("operator")).json()
    assert one["earlier"]["id"] == held.conflict_of
    r = client.post(f"/api/conflicts/{held.id}/release", headers=as_("operator"),
                    json={"reason": "agreed with the seller"})
    assert r.status_code == 200, r.text
    assert r.json()["document"]["status"] == s.PENDING
    assert gw.store.outbox_size() == 2
    (entry,) = AuditLog(gw.store).list(action="conflict.release")
    assert entry.actor == "operator" and entry.after["reason"] == "agreed with the seller"
    again = client.post(f"/api/conflicts/{held.id}/release", headers=as_("operator"), json={})
    assert again.status_code == 409
    assert client.get("/api/conflicts/nope", headers=as_("operator")).status_code == 404
    assert client.get("/api/conflicts", headers=as_("operator")).json()["items"] == []


def test_explain_and_the_tracker_tell_the_same_held_status_and_the_alert_clears(gw):
    """``explain`` says held (not published), the tracker opens a "conflict" alert with the
    payable difference; once rejected, the alert resolves and explain says rejected."""
    from gateway.tracker import explain as tracker_explain
    from gateway.tracker.engine import Tracker

    _ingest(gw, SAMPLE, "invoice.xml")
    other = _ingest(gw, corrected(b"4918.84"), "b.xml")
    (held,) = gw.store.documents_of(other.transmission_id)
    out = tracker_explain.explain(gw.store, gw.partners, gw.settings,
                                  number=held.business_number)
    assert out.verdict == tracker_explain.HELD
    assert "held until an operator" in out.summary and "totals.payable" in out.summary
    tracker = Tracker(gw.settings.tracker, gw.partners, gw.store)
    opened = [a for a in tracker.check().opened if a.kind == "conflict"]
    assert len(opened) == 1 and opened[0].key == f"conflict:{held.id}"
    assert "totals.payable 144.44 vs 4918.84" in opened[0].summary
    assert opened[0].detail["differences"][0]["after"] == "4918.84"
    assert not [a for a in tracker.alerts.list(["open"]) if a.kind == "duplicate"]
    ConflictDesk(gw.store).reject(held.id, by="olivia", reason="wrong amount")
    resolved = [a for a in tracker.check().resolved if a.kind == "conflict"]
    assert [a.key for a in resolved] == [f"conflict:{held.id}"]
    out = tracker_explain.explain(gw.store, gw.partners, gw.settings,
                                  number=held.business_number)
    assert out.verdict == tracker_explain.REJECTED and "wrong amount" in out.summary
