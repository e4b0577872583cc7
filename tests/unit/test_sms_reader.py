"""SMS envelopes through the real pipeline (SQLite store): an order from a partner's phone
becomes a canonical order with a stable message id; a line not understood fails the whole
order at parse with the line named; an unknown number is quarantined."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import DocumentSettings, Identifiers, Partner, PartnerDirectory
from gateway.core.errors import FormatNotRecognised, PayloadError
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.csv import CsvReader
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.formats.sms.envelope import SmsEnvelope, read_envelope, sms_order_number
from gateway.formats.sms.reader import SmsReader
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store

REPO = Path(__file__).resolve().parents[2]
RECEIVED = dt.datetime(2026, 11, 27, 16, 0, tzinfo=dt.UTC)


def envelope(text: str, *, sender: str = "+33612345678", message_id: str = "SM0123",
             provider: str = "twilio") -> bytes:
    return SmsEnvelope(provider=provider, message_id=message_id, sender=sender,
                       recipient="+33700000000", received=RECEIVED, text=text).to_bytes()


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet.load(REPO / "mappings")


@pytest.fixture
def pipeline(tmp_path, mappings):
    partners = PartnerDirectory([Partner(
        id="shop7", name="Shop 7", identifiers=Identifiers(gln=["4012345000009"],
                                                           phone=["+33612345678"]),
        channels=["sms"], documents=[DocumentSettings(type="order", format="sms")])])
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    # The SMS reader before CSV: CSV would otherwise claim the envelope as delimited text.
    return Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                    readers=[EdifactReader(mappings), SmsReader(), CsvReader(mappings)])


def receive(pipeline: Pipeline, data: bytes, hint: str | None = "shop7"):
    receipt = pipeline.receive(Incoming(data=data, channel="sms", channel_ref="twilio:SM0123",
                                        filename="sms-twilio-SM0123.txt", partner_hint=hint))
    return receipt, pipeline.process(receipt.transmission_id)


def test_envelope_round_trip_keeps_the_text_exactly():
    """Headers sanitised to one line; the text, CRLF and trailing blanks included, as sent."""
    text = "REF 1\r\nABC x 2\r\n\r\nmerci  "
    data = SmsEnvelope(provider="twilio", message_id="SM1", sender="+33612345678",
                       recipient="+33\n700", received=RECEIVED, text=text).to_bytes()
    assert data.startswith(b"Edigw-SMS: 1\nProvider: twilio\nMessage-Id: SM1\n"
                           b"From: +33612345678\nTo: +33 700\nReceived: 2026-11-27T16:00:00Z\n\n")
    back = read_envelope(data)
    assert (back.text, back.recipient, back.received) == (text, "+33 700", RECEIVED)


@pytest.mark.parametrize("data,reason", [
    (b"REF 1\nABC x 2", "not an SMS envelope"),
    (b"Edigw-SMS: 1\nProvider: twilio\n", "no blank line"),
    (b"Edigw-SMS: 1\nProvider: twilio\nFrom: +33612345678\nReceived: 2026-11-27T16:00:00Z"
     b"\n\nABC 1", "lacks Message-Id"),
    (b"Edigw-SMS: 1\nProvider: twilio\nMessage-Id: 1\nFrom: 1\nReceived: soon\n\nA 1",
     "not an ISO date-time"),
    (b"Edigw-SMS: 1\nProvider: twilio\nMessage-Id: 1\nFrom: 1\nnot a header\n\nA 1",
     "header line 5"),
])
def test_bad_envelopes_are_payload_errors(data, reason):
    """A file that is not a well-formed envelope says why."""
    with pytest.raises(PayloadError, match=reason):
        read_envelope(data)
    assert issubclass(FormatNotRecognised, PayloadError)


def test_an_sms_order_becomes_a_canonical_order(pipeline):
    """Buyer = the partner (GLN, name, phone), order number = the reference, lines with GTIN
    or supplier article, issue date = received date, source sms/phone."""
    receipt, out = receive(pipeline, envelope("REF PO-778\n4006381333931 x 12\nABC-12; 3\n"))
    assert (out.status, out.partner_id, out.documents, out.queued) == (s.PROCESSED, "shop7",
                                                                       1, 1)
    doc = pipeline.store.documents_of(receipt.transmission_id)[0]
    assert (doc.doc_type, doc.business_number, doc.status) == ("order", "PO-778", s.PENDING)
    order = pipeline.store.document_payload(doc.id)
    assert order["schema"] == "edigw.order/1" and order["order_number"] == "PO-778"
    assert order["issue_date"] == "2026-11-27"
    assert order["parties"]["buyer"] == {"gln": "4012345000009", "name": "Shop 7",
                                         "phone": "+33612345678"}
    assert [(line.get("gtin"), line.get("supplier_article"), line["item_code"],
             line["item_code_type"], Decimal(line["quantity"])) for line in order["lines"]] == [
        ("4006381333931", None, "4006381333931", "SRV", 12),
        (None, "ABC-12", "ABC-12", "SA", 3)]
    src = order["source"]
    assert (src["format"], src["sender_id"], src["sender_qualifier"], src["message_ref"],
            src["transmission_id"]) == ("sms", "+33612345678", "phone", "twilio:SM0123",
                                        receipt.transmission_id)
    row = pipeline.store.get_transmission(receipt.transmission_id)
    assert (row.format, row.standard) == ("sms", "SMS")


def test_the_partner_is_found_by_phone_without_a_hint(pipeline):
    """No partner hint: the envelope's From (E.164) names the partner."""
    _, out = receive(pipeline, envelope("ABC 2"), hint=None)
    assert (out.status, out.partner_id) == (s.PROCESSED, "shop7")


def test_no_reference_gives_a_stable_generated_order_number(pipeline):
    """SMS-<hash of provider and message id>, the same the webhook's reply names."""
    receipt, out = receive(pipeline, envelope("ABC 2"))
    doc = pipeline.store.documents_of(receipt.transmission_id)[0]
    assert doc.business_number == sms_order_number("twilio", "SM0123")
    assert doc.business_number.startswith("SMS-") and len(doc.business_number) == 14


def test_the_message_id_is_stable_across_repeats(pipeline):
    """The same provider message received twice (another Received time) gives one message id:
    the second document is a DUPLICATE without outbox row, never a second order."""
    first, _ = receive(pipeline, envelope("ABC 2"))
    later = envelope("ABC 2").replace(b"16:00:00Z", b"16:05:00Z")
    second, out = receive(pipeline, later)
    a = pipeline.store.documents_of(first.transmission_id)[0]
    b = pipeline.store.documents_of(second.transmission_id)[0]
    assert a.message_id == b.message_id
    assert (a.status, b.status, out.queued) == (s.PENDING, s.DOC_DUPLICATE, 0)
    assert pipeline.store.outbox_size() == 1


def test_a_line_not_understood_fails_the_whole_order_naming_the_line(pipeline):
    """Nothing queued; the failure says which line and why, at stage parse."""
    receipt, out = receive(pipeline, envelope("REF 9\nABC-1 x 2\n4006381333932 x 5"))
    assert (out.status, out.queued) == (s.FAILED, 0)
    doc = pipeline.store.documents_of(receipt.transmission_id)[0]
    assert (doc.status, doc.stage, doc.business_number) == (s.DOC_FAILED, "parse", "9")
    assert "line 3 '4006381333932 x 5': GTIN check digit should be 1" in doc.reason
    assert "not ordered" in doc.reason


def test_an_unknown_number_is_quarantined(pipeline):
    """No profile lists the number: quarantined at identify, naming the phone number."""
    _, out = receive(pipeline, envelope("ABC 2", sender="+33699999999"), hint=None)
    assert (out.status, out.stage) == (s.QUARANTINED, "identify")
    assert "phone +33699999999" in out.reason


def test_reprocessing_a_failed_sms_after_a_fix_is_possible(pipeline):
    """The archived envelope is read again like any file (reprocess gives the same verdict)."""
    receipt, out = receive(pipeline, envelope("ABC 12 12"))
    assert out.status == s.FAILED
    again = pipeline.process(receipt.transmission_id)
    assert again.status == s.FAILED and "two quantities" in again.reason
