"""A partner's CONTRL (or APERAK) for what edigw sent it: read as a receipt, correlated by
the interchange control reference (or the document number) with the outbound row, which it
makes DELIVERED (positive) or FAILED at receipt (negative); the inbound transmission is
PROCESSED with a "receipt for outbound X" event. One that names nothing we sent stays an
unsupported message, as before."""

from __future__ import annotations

import pytest

from gateway.config import EdifactPolicy, PartnerDirectory
from gateway.core import clock
from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.receipts import read_receipt
from gateway.tracker.rules import outbound_failed
from tests.unit.test_explain import GOUDEN, START, order
from tests.unit.test_outbound_tracking import World, invoice

US = "5412345000013"


def contrl(ref: str, action: str, *segments: str, icref: str = "77") -> bytes:
    """A CONTRL from gouden answering our interchange ``ref`` with UCI action ``action``."""
    body = "".join(f"{s}'" for s in segments)
    return (f"UNA:+.? 'UNB+UNOC:3+{GOUDEN.decode()}:14+{US}:14+240305:1012+{icref}'"
            f"UNH+1+CONTRL:D:3:UN'UCI+{ref}+{US}:14+{GOUDEN.decode()}:14+{action}'{body}"
            f"UNT+{3 + len(segments)}+1'UNZ+1+{icref}'").encode()


def aperak(*segments: str, icref: str = "88") -> bytes:
    body = "".join(f"{s}'" for s in segments)
    return (f"UNA:+.? 'UNB+UNOC:3+{GOUDEN.decode()}:14+{US}:14+240305:1012+{icref}'"
            f"UNH+1+APERAK:D:96A:UN:EAN002'{body}UNT+{2 + len(segments)}+1'"
            f"UNZ+1+{icref}'").encode()


def receipt_of(data: bytes):
    [interchange] = read_interchanges(data)
    return read_receipt(interchange.messages[0])


# -- reading ------------------------------------------------------------------------------------

def test_contrl_actions_read_as_positive_or_negative():
    ok = receipt_of(contrl("12", "7"))
    assert (ok.kind, ok.ok, ok.control_ref) == ("CONTRL", True, "12")
    assert ok.text == "CONTRL 1: interchange 12 acknowledged (UCI action 7)"
    remarks = receipt_of(contrl("12", "8"))
    assert remarks.ok and "received with remarks (UCI action 8)" in remarks.text
    rejected = receipt_of(contrl("12", "4", icref="78").replace(b"+4'", b"+4+12+UNB'"))
    assert not rejected.ok and "rejected (UCI action 4); interchange: error 12 in UNB" in \
        rejected.text


def test_a_rejected_message_makes_an_acknowledged_interchange_negative():
    r = receipt_of(contrl("12", "7", "UCM+1+INVOIC:D:96A:UN:EAN008+4", "UCS+5+13",
                          "UCD+12+2:1"))
    assert not r.ok
    assert r.text == ("CONTRL 1: interchange 12 acknowledged (UCI action 7); message(s) 1 "
                      "rejected; message 1 segment 5: error 13; element 2/1: error 12")


def test_aperak_names_our_document_and_its_errors():
    ok = receipt_of(aperak("BGM+305+AP-1+9+AP", "DOC+380+INV-1"))
    assert (ok.kind, ok.ok, ok.numbers) == ("APERAK", True, ("INV-1",))
    bad = receipt_of(aperak("BGM+305+AP-2+9", "RFF+IV:INV-2", "ERC+P02",
                            "FTX+AAO+++price does not match the order"))
    assert not bad.ok and bad.numbers == ("INV-2",)
    assert bad.text == ("APERAK AP-2 for INV-2: rejected; errors P02; price does not match "
                        "the order")
    assert receipt_of(aperak("BGM+305+AP-3+9")) is None  # names nothing


# -- through the pipeline -------------------------------------------------------------------------

@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def world(tmp_path, when):
    w = World(tmp_path)
    # Gouden wants a CONTRL for everything: never one for its own CONTRL, though.
    w.pipeline.partners = PartnerDirectory([
        p.model_copy(update={"edifact": EdifactPolicy(contrl="always")}) for p in w.partners])
    return w


def _sent(world, number: str):
    result = world.out(invoice(number), ref=number)
    world.deliver()
    assert world.store.get_transmission(result.transmission_id).status == "SENT"
    return result


def test_a_positive_contrl_delivers_what_we_sent(world):
    first = _sent(world, "INV-1")
    second = _sent(world, "INV-2")
    assert second.outbound.control_ref == "2"
    tid = world.send(contrl("2", "7"), filename="contrl.edi")
    inbound = world.store.get_transmission(tid)
    assert (inbound.status, inbound.document_count, inbound.partner_id) == ("PROCESSED", 0,
                                                                           "gouden")
    [event] = [e for e in world.store.events(tid) if e["event"] == "receipt"]
    assert event["detail"] == (f"receipt for outbound {second.transmission_id} (invoice, "
                               "interchange 2): positive, CONTRL 1: interchange 2 "
                               "acknowledged (UCI action 7)")
    assert world.store.documents_of(tid) == [] and world.store.outbound_of(tid) == []  # no reply
    row = world.store.outbound_of(second.transmission_id)[0]
    assert row.status == "DELIVERED" and row.receipt.startswith("CONTRL 1: interchange 2")
    assert world.store.get_transmission(second.transmission_id).status == "DELIVERED"
    assert world.store.get_transmission(first.transmission_id).status == "SENT"
    e = world.explain(partner="gouden", number="INV-2", doc_type="invoice")
    assert e.verdict == "delivered" and "CONTRL from the partner" in e.summary
    by_file = world.explain(filename="contrl.edi")
    assert by_file.verdict == "receipt"
    assert f"receipt for outbound {second.transmission_id}" in by_file.summary


def test_a_negative_contrl_fails_it_at_receipt_and_alerts(world):
    sent = _sent(world, "INV-3")
    tid = world.send(contrl("1", "4", "UCM+1+INVOIC:D:96A:UN:EAN008+4+13+QTY"))
    assert world.store.get_transmission(tid).status == "PROCESSED"
    out = world.store.get_transmission(sent.transmission_id)
    assert (out.status, out.stage) == ("FAILED", "receipt")
    assert "message 1: error 13 in QTY" in out.reason
    [alert] = world.check(outbound_failed).opened
    assert alert.summary.startswith("invoice INV-3 to gouden failed at receipt: CONTRL 1: "
                                    "interchange 1 rejected (UCI action 4)")


def test_an_aperak_naming_our_invoice_is_its_receipt(world):
    sent = _sent(world, "INV-4")
    tid = world.send(aperak("BGM+305+AP-9+9+RE", "RFF+IV:INV-4", "ERC+P02"))
    assert world.store.get_transmission(tid).status == "PROCESSED"
    out = world.store.get_transmission(sent.transmission_id)
    assert (out.status, out.stage) == ("FAILED", "receipt")
    assert out.reason == "APERAK AP-9 for INV-4: rejected (BGM 4343 RE); errors P02"


def test_a_contrl_for_nothing_we_sent_stays_unsupported(world):
    _sent(world, "INV-5")
    tid = world.send(contrl("999", "7"))
    t = world.store.get_transmission(tid)
    assert t.status == "FAILED" and "unsupported message type CONTRL" in t.reason
    [doc] = world.store.documents_of(tid)
    assert doc.status == "UNSUPPORTED"
    assert not [e for e in world.store.events(tid) if e["event"] == "receipt"]


def test_a_receipt_beside_an_order_lets_the_order_go_on(world):
    sent = _sent(world, "INV-6")
    orders = order("1041", "PO-1")
    # The CONTRL message placed in the order's interchange, before its UNZ.
    unz = orders.rindex(b"UNZ+")
    message = (f"UNH+2+CONTRL:D:3:UN'UCI+1+{US}:14+{GOUDEN.decode()}:14+7'UNT+3+2'").encode()
    data = orders[:unz].rstrip() + message + orders[unz:].replace(b"UNZ+1+", b"UNZ+2+")
    tid = world.send(data)
    t = world.store.get_transmission(tid)
    assert t.status == "PROCESSED" and t.document_count == 1  # the order, in the outbox
    [doc] = world.store.documents_of(tid)
    assert doc.business_number == "PO-1"
    assert world.store.get_transmission(sent.transmission_id).status == "DELIVERED"
