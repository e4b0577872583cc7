"""Explain for what edigw sends: "was invoice X delivered?" answered with one verdict
(delivered, sent-awaiting-receipt, retrying, in-progress, failed, not-sent) and its
evidence, the same from ``explain``, ``edigw explain`` and ``GET /api/explain``."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from gateway.cli.common import CliContext
from gateway.cli.tracker import explain as explain_cmd
from gateway.core import clock
from tests.unit.test_explain import START, order
from tests.unit.test_outbound_tracking import (
    World,
    _config,
    _login,
    console,  # noqa: F401  (the console fixture)
    invoice,
    order_response,
)


@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def world(tmp_path, when):
    return World(tmp_path)


def kinds(e) -> list[str]:
    return [f.kind for f in e.evidence]


def test_delivered_by_the_channel_says_when_and_how(world, when):
    world.sender.mode = "ok"
    sent = world.out(invoice("INV-1"), ref="m1")
    when.advance(minutes=2)
    world.deliver()
    e = world.explain(partner="gouden", number="INV-1", doc_type="invoice")
    assert e.verdict == "delivered"
    assert e.summary == ("Invoice INV-1 to gouden was delivered 2024-03-05 08:02 CET "
                         "(confirmed by the folder channel: invoice written to "
                         f"/partners/gouden/in/{sent.outbound.filename}).")
    assert {"from-erp", "rendered", "delivered", "event"} <= set(kinds(e))
    assert e.transmissions[0].direction == "out" and e.documents[0].status == "OUTBOUND"


def test_delivered_by_a_contrl_names_the_contrl(world):
    sent = world.out(invoice("INV-2"), ref="m2")
    world.deliver()
    row = world.store.outbound_of(sent.transmission_id)[0]
    world.store.record_receipt(row.id, ok=True,
                               receipt="CONTRL 5: interchange 1 acknowledged (UCI action 7)")
    e = world.explain(number="INV-2")  # the console's search: no type, no partner
    assert e.verdict == "delivered"
    assert "(CONTRL from the partner: CONTRL 5: interchange 1 acknowledged" in e.summary
    assert "receipt" in kinds(e)


def test_sent_awaiting_receipt_gives_the_time_limit(world, when):
    world.out(invoice("INV-3"), ref="m3")
    world.deliver()
    when.advance(minutes=10)
    e = world.explain(partner="gouden", number="INV-3", doc_type="invoice")
    assert e.verdict == "sent-awaiting-receipt"
    assert "was sent 2024-03-05 08:00 CET via folder; the partner's receipt has not come " \
           "yet (10 min so far; the time limit is 30 min after rendering: due by " \
           "2024-03-05 08:30 CET)" in e.summary
    when.advance(minutes=40)
    late = world.explain(partner="gouden", number="INV-3", doc_type="invoice")
    assert "overdue by 20 min" in late.summary


def test_retrying_gives_attempts_next_attempt_and_last_error(world):
    world.sender.mode = "down"
    world.dispatcher.max_attempts = 5
    world.out(invoice("INV-4"), ref="m4")
    world.deliver()
    e = world.explain(partner="gouden", number="INV-4", doc_type="invoice")
    assert e.verdict == "retrying"
    assert "1 attempt(s) via folder failed, the last: ConnectionError: " \
           "sftp.gouden.example: connection refused; next attempt" in e.summary
    assert any(f.kind == "delivery" and "1 delivery attempt(s)" in f.text for f in e.evidence)


def test_rendered_and_waiting_is_in_progress(world, when):
    world.out(invoice("INV-5"), ref="m5")
    when.advance(minutes=3)
    e = world.explain(partner="gouden", number="INV-5", doc_type="invoice")
    assert e.verdict == "in-progress" and "waits for its first delivery" in e.summary


def test_failed_negative_receipt_and_refused_delivery(world):
    sent = world.out(invoice("INV-6"), ref="m6")
    world.deliver()
    row = world.store.outbound_of(sent.transmission_id)[0]
    world.store.record_receipt(row.id, ok=False, receipt="CONTRL 8: interchange 1 rejected "
                                                         "(UCI action 4); interchange: error 12")
    e = world.explain(partner="gouden", number="INV-6", doc_type="invoice")
    assert e.verdict == "failed"
    assert "was not delivered: it failed at receipt: CONTRL 8: interchange 1 rejected" in \
        e.summary and "(the partner's receipt was negative)" in e.summary
    assert f"Not sent again yet (edigw reprocess {sent.transmission_id}" in e.summary
    world.sender.mode = "refuse"
    world.out(invoice("INV-7"), ref="m7")
    world.deliver()
    refused = world.explain(partner="gouden", number="INV-7", doc_type="invoice")
    assert refused.verdict == "failed" and "failed at deliver: refused by the partner" in \
        refused.summary


def test_refused_by_the_check_is_found_in_the_erp_payload(world):
    bad = world.out(invoice("INV-8", lines=[{"quantity": "many"}]), ref="m8")  # refused
    assert bad.failed
    e = world.explain(partner="gouden", number="INV-8", doc_type="invoice")
    assert e.verdict == "failed"
    assert e.summary.startswith("Invoice INV-8 was sent by the ERP 2024-03-05 08:00 CET but "
                                f"refused at {bad.stage}")
    assert "nothing went to the partner" in e.summary
    assert kinds(e)[0] == "found-in-payload"


def test_never_sent_is_not_sent(world):
    world.out(invoice("BAD-1"), ref="b1")  # a refusal that is not it
    e = world.explain(partner="gouden", number="INV-404", doc_type="invoice")
    assert e.verdict == "not-sent"
    assert e.summary.startswith("No invoice INV-404 to gouden was sent: the ERP has not "
                                "handed edigw an invoice numbered INV-404 (1 document(s) "
                                "from the ERP were refused")
    assert kinds(e) == ["refused"]
    # A partner that is not sent invoices: an inbound question, never received.
    assert world.explain(partner="quiet", number="INV-404",
                         doc_type="invoice").verdict == "never-received"
    # Asked explicitly about what we send: not-sent whatever the profile.
    assert world.explain(partner="quiet", number="INV-404", doc_type="invoice",
                         direction="out").verdict == "not-sent"


def test_order_tells_its_order_response(world, when):
    world.send(order("1041", "PO-1"))
    world.publish()
    world.erp("PO-1", "ACCEPTED")
    e = world.explain(partner="gouden", number="PO-1", doc_type="order")
    assert e.verdict == "acknowledged"
    assert e.summary.endswith("No order response has been sent for it yet.")
    assert any(f.kind == "order-response" and "due by 2024-03-05 09:00 CET" in f.text
               for f in e.evidence)
    world.sender.mode = "ok"
    world.out(order_response("PO-1"), ref="r1")
    world.deliver()
    e = world.explain(partner="gouden", number="PO-1", doc_type="order")
    assert e.verdict == "acknowledged"
    assert "Its order response was delivered 2024-03-05 08:00 CET." in e.summary
    response = world.explain(partner="gouden", number="PO-1", doc_type="order-response")
    assert response.verdict == "delivered"
    assert response.summary.startswith("Order response PO-1 to gouden was delivered")


@click.group()
@click.option("--config")
@click.pass_context
def edigw(ctx: click.Context, config: str) -> None:
    ctx.obj = CliContext(config)


edigw.add_command(explain_cmd)


def test_cli_explain_for_outbound_documents(world, tmp_path):
    config = _config(tmp_path)
    (tmp_path / "partners" / "gouden.toml").write_text(
        'id = "gouden"\nname = "De Gouden Aar"\n[outbound]\n'
        'formats = { invoice = "plain", order-response = "plain" }\n')
    world.out(invoice("INV-1"), ref="m1")
    world.deliver()
    run = CliRunner()
    r = run.invoke(edigw, ["--config", config, "explain", "--partner", "gouden",
                           "--invoice", "INV-1"], catch_exceptions=False)
    assert r.exit_code == 4 and r.output.startswith(
        "verdict: sent, waiting for the partner's receipt (sent-awaiting-receipt)")
    r = run.invoke(edigw, ["--config", config, "explain", "--partner", "gouden",
                           "--despatch", "DES-1", "--json"], catch_exceptions=False)
    data = json.loads(r.output)
    assert data["code"] == "not-sent" and r.exit_code == 3
    assert data["query"]["doc_type"] == "despatch-advice"
    r = run.invoke(edigw, ["--config", config, "explain", "--partner", "gouden", "--invoice",
                           "X-1", "--outbound"], catch_exceptions=False)
    assert r.output.startswith("verdict: not sent: the ERP never handed it over (not-sent)")
    # A partner with no profile and nothing on record is an error, not "not sent".
    r = run.invoke(edigw, ["--config", config, "explain", "--partner", "quiet", "--invoice",
                           "X-1", "--outbound"], catch_exceptions=False)
    assert r.exit_code == 2 and "unknown partner 'quiet'" in r.stderr


def test_api_explain_and_search_for_outbound_documents(console):  # noqa: F811
    gw, server, sender = console
    sender.mode = "ok"
    gw.intake.accept(invoice("INV-9"), origin="erp", ref="m9", partner="gouden")
    gw.outbound.deliver_pending()
    viewer = _login(server, "vera")
    r = viewer.get("/api/explain", params={"partner": "gouden", "invoice": "INV-9"})
    assert r.status_code == 200, r.text
    assert r.json()["code"] == "delivered"
    assert r.json()["verdict"] == "delivered to the partner"
    assert viewer.get("/api/explain", params={"partner": "gouden",
                                              "despatch": "D-1"}).json()["code"] == "not-sent"
    assert viewer.get("/api/explain", params={"invoice": "1", "order": "2"}).status_code == 422
    found = viewer.get("/api/search", params={"number": "INV-9"}).json()
    assert found["code"] == "delivered" and found["hits"][0]["status"] == "OUTBOUND"
    page = viewer.get("/search", params={"q": "INV-9"}).text
    assert "delivered" in page and "Invoice INV-9 to gouden was delivered" in page
