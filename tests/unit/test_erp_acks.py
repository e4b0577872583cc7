"""ERP acknowledgements: the message as parsed, and what recording one does to the store."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from gateway.bus.acks import encode_ack, parse_ack
from gateway.config import Identifiers, Partner, PartnerDirectory, UnbIdentifier
from gateway.core import clock
from gateway.core.canonical import Order
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming, MappedDocument, Sender
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.erp import (
    APPLIED,
    ERP_INVALID,
    INVALID,
    REPEAT,
    STALE,
    UNKNOWN,
    ErpAck,
    ErpAcks,
    InvalidAck,
)

# -- parsing ----------------------------------------------------------------------------------


def test_accepted_ack_parses_with_its_optional_fields():
    """A full accepted acknowledgement gives its message id, status, ERP time in UTC and id."""
    body = (b'{"message_id": "abc123", "status": "accepted", "reason": "ok",'
            b' "at": "2024-05-02T09:15:00+02:00", "document_id": "d1"}')
    ack = parse_ack(body)
    assert ack == ErpAck(message_id="abc123", status=s.ERP_ACCEPTED, reason="ok",
                         at=dt.datetime(2024, 5, 2, 7, 15, tzinfo=dt.UTC), document_id="d1")


def test_status_is_read_in_any_case_and_naive_time_is_utc():
    """'REJECTED', ' Rejected ' … are rejections; a time without offset is taken as UTC."""
    for status in ("REJECTED", " Rejected ", "rejected"):
        ack = parse_ack(encode_ack("m1", "x", "bad price")
                        .replace(b'"x"', json.dumps(status).encode()))
        assert isinstance(ack, ErpAck) and ack.status == s.ERP_REJECTED
    ack = parse_ack(b'{"message_id":"m1","status":"Accepted","at":"2024-05-02T09:15:00"}')
    assert ack.at == dt.datetime(2024, 5, 2, 9, 15, tzinfo=dt.UTC)


def test_rejection_without_reason_is_invalid():
    """A rejection must say why: without a reason (or with a blank one) it is invalid."""
    for body in (b'{"message_id":"m1","status":"rejected"}',
                 b'{"message_id":"m1","status":"rejected","reason":"   "}'):
        ack = parse_ack(body)
        assert isinstance(ack, InvalidAck) and ack.message_id == "m1"
        assert "reason is required when status is rejected" in ack.reason


def test_not_json_not_an_object_and_missing_fields_are_invalid_with_their_reason():
    """Each malformed body is invalid with a reason an ERP team can act on."""
    cases = {
        b"<ack/>": "not JSON",
        b'\xff{"message_id"': "not JSON",
        b'["m1", "accepted"]': "not a JSON object but a list",
        b'{"status": "accepted"}': "message_id: Field required",
        b'{"message_id": 42, "status": "accepted"}': "message_id: Input should be a valid string",
        b'{"message_id": "m1"}': "status: Field required",
        b'{"message_id": "", "status": "accepted"}': "message_id: String should have at least 1",
        b'{"message_id": "m1", "status": "accepted", "at": "yesterday"}': "at: Input should be",
    }
    for body, words in cases.items():
        ack = parse_ack(body)
        assert isinstance(ack, InvalidAck), body
        assert words in ack.reason, (body, ack.reason)


def test_unknown_status_is_invalid_and_names_the_value():
    """'ok' is neither accepted nor rejected; the reason quotes it."""
    ack = parse_ack(b'{"message_id": "m1", "status": "ok"}')
    assert isinstance(ack, InvalidAck) and ack.message_id == "m1"
    assert "status: Input should be 'accepted' or 'rejected', not 'ok'" == ack.reason


def test_extra_fields_are_ignored():
    """Fields edigw does not know (an ERP's own order number) do not make an ack invalid."""
    ack = parse_ack(b'{"message_id": "m1", "status": "accepted", "erp_order": "SO-9",'
                    b' "lines": [1, 2]}')
    assert ack == ErpAck(message_id="m1", status=s.ERP_ACCEPTED)


def test_overlong_message_id_is_invalid_and_long_reason_is_cut():
    """A message id longer than edigw's (64) cannot name a document; a long reason is kept
    shortened rather than refused."""
    ack = parse_ack(encode_ack("x" * 65, "accepted"))
    assert isinstance(ack, InvalidAck) and "at most 64" in ack.reason
    ack = parse_ack(encode_ack("m1", "rejected", "r" * 5000))
    assert isinstance(ack, ErpAck) and len(ack.reason) == 2000 and ack.reason.endswith("…")


# -- recording over a real pipeline and store -------------------------------------------------


@dataclass
class _Parsed:
    numbers: list
    format: str = "fake"
    standard: str | None = "FAKE"
    senders: list = field(default_factory=lambda: [Sender("111", "14")])
    warnings: list = field(default_factory=list)

    def summary(self):
        return f"{len(self.numbers)} message(s)"

    def documents(self, *, partner, transmission_id, filename, known_refs=None):
        out = []
        for n in self.numbers:
            doc = Order.model_validate(dict(
                message_id=f"{partner.id}-{n}", partner=partner.id, order_number=n,
                lines=[dict(quantity=Decimal(1))],
                source=dict(format="edifact", standard="EANCOM", version="D96A", mapping="fake")))
            out.append(MappedDocument(doc_type="order", document=doc, message_id=doc.message_id,
                                      business_number=n, interchange_ref="IC", message_ref=n,
                                      schema_version="edigw.order/1"))
        return out

    def control_refs(self):
        return []

    def interchanges_seen(self):
        return []

    def replies(self, *, partner, transmission_id):
        return []


class _Reader:
    """Reads b'ORD|PO1,PO2': orders from sender 111 with reference ids acme-PO1, acme-PO2
    (published under those combined with their content's digest: see ``mid``)."""

    format = "fake"

    def sniff(self, head):
        return head.startswith(b"ORD|")

    def parse(self, data, *, filename):
        return _Parsed([n for n in data.decode().split("|")[1].split(",") if n])


@pytest.fixture
def fixed_clock():
    c = clock.FixedClock(dt.datetime(2024, 5, 2, 8, 0, tzinfo=dt.UTC))
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def pipeline(tmp_path, fixed_clock):
    partners = PartnerDirectory([Partner(id="acme", name="ACME", identifiers=Identifiers(
        unb=[UnbIdentifier(id="111", qualifier="14")]))])
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                   readers=[_Reader()])
    store.close()


def publish(p: Pipeline, data: bytes) -> str:
    """Receive and process ``data``, then mark its queued documents published."""
    r = p.receive(Incoming(data=data, channel="folder", filename="orders.edi"))
    p.process(r.transmission_id)
    p.store.mark_published([i.outbox_id for i in p.store.pending_outbox(100)])
    return r.transmission_id


def mid(p: Pipeline, number: str) -> str:
    """The message id order ``number`` was published under (the reader's id combined with
    the digest of its content), the one the ERP acknowledges."""
    return next(d.message_id for d in p.store.find_documents(business_number=number)
                if d.status != s.DOC_DUPLICATE)


def doc(p: Pipeline, tid: str, number: str):
    return next(d for d in p.store.documents_of(tid) if d.business_number == number)


def erp_events(p: Pipeline, tid: str) -> list[tuple[str, str]]:
    return [(e["event"], e["detail"]) for e in p.store.events(tid) if e["event"].startswith("erp-")]


def test_accepted_ack_closes_the_published_document(pipeline, fixed_clock):
    """An acceptance sets the document's ERP status and time and adds it to the timeline."""
    tid = publish(pipeline, b"ORD|PO1,PO2")
    acks = ErpAcks(pipeline.store)
    fixed_clock.advance(minutes=5)
    raw = encode_ack(mid(pipeline, "PO1"), "accepted")
    out = acks.record(parse_ack(raw), raw)
    d = doc(pipeline, tid, "PO1")
    assert (out.result, out.status, out.document_ids, out.transmission_ids) == (
        APPLIED, s.ERP_ACCEPTED, (d.id,), (tid,))
    assert (d.erp_status, d.erp_at, d.erp_reason) == (
        s.ERP_ACCEPTED, dt.datetime(2024, 5, 2, 8, 5, tzinfo=dt.UTC), None)
    assert erp_events(pipeline, tid) == [("erp-accepted", "order PO1 accepted by the ERP")]
    [row] = acks.acks_of(d.id)
    assert (row.message_id, row.status, row.raw) == (mid(pipeline, "PO1"), s.ERP_ACCEPTED, raw)
    assert acks.erp_summary([tid]) == {tid: {"accepted": 1, "rejected": 0, "waiting": 1}}
    assert [w.business_number for w in acks.waiting()] == ["PO2"]


def test_rejection_after_acceptance_replaces_it_and_a_repeat_changes_nothing(pipeline):
    """The last word wins; the same word again is recorded but changes nothing."""
    tid = publish(pipeline, b"ORD|PO1")
    acks = ErpAcks(pipeline.store)
    acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_ACCEPTED), b"1")
    out = acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_REJECTED, "unknown GTIN 4012345000009"), b"2")
    assert out.result == APPLIED
    again = acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_REJECTED, "unknown GTIN 4012345000009"), b"2")
    assert again.result == REPEAT and again.closed
    d = doc(pipeline, tid, "PO1")
    assert (d.erp_status, d.erp_reason) == (s.ERP_REJECTED, "unknown GTIN 4012345000009")
    assert erp_events(pipeline, tid) == [
        ("erp-accepted", "order PO1 accepted by the ERP"),
        ("erp-rejected", "order PO1 rejected by the ERP: unknown GTIN 4012345000009; "
                         "it had accepted it")]
    assert [r.raw for r in acks.acks_of(d.id)] == [b"1", b"2", b"2"]
    assert acks.erp_summary([tid]) == {tid: {"accepted": 0, "rejected": 1, "waiting": 0}}


def test_older_ack_by_the_erps_own_time_does_not_undo_a_newer_one(pipeline):
    """A redelivered acceptance stamped before the rejection in force is kept, not applied."""
    tid = publish(pipeline, b"ORD|PO1")
    acks = ErpAcks(pipeline.store)
    t0 = dt.datetime(2024, 5, 2, 9, 0, tzinfo=dt.UTC)
    acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_REJECTED, "credit hold", at=t0), b"r")
    out = acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_ACCEPTED, at=t0 - dt.timedelta(minutes=1)), b"a")
    assert out.result == STALE
    assert doc(pipeline, tid, "PO1").erp_status == s.ERP_REJECTED


def test_unknown_message_id_is_recorded_without_document(pipeline):
    """An ack for an id edigw never published is kept as evidence and closes nothing."""
    tid = publish(pipeline, b"ORD|PO1")
    acks = ErpAcks(pipeline.store)
    out = acks.record(ErpAck("nobody-knows", s.ERP_ACCEPTED), b"{}")
    assert (out.result, out.closed, out.document_ids) == (UNKNOWN, False, ())
    [row] = acks.unmatched()
    assert (row.message_id, row.document_id, row.status) == ("nobody-knows", None, s.ERP_ACCEPTED)
    assert doc(pipeline, tid, "PO1").erp_status is None and erp_events(pipeline, tid) == []


def test_invalid_ack_is_recorded_with_its_reason(pipeline):
    """A malformed message becomes an INVALID row with the reason and the raw bytes."""
    raw = b'{"message_id": "acme-PO1", "status": "ok"}'
    out = ErpAcks(pipeline.store).record(parse_ack(raw), raw)
    assert (out.result, out.status, out.message_id) == (INVALID, ERP_INVALID, "acme-PO1")
    [row] = ErpAcks(pipeline.store).unmatched()
    assert (row.status, row.raw) == (ERP_INVALID, raw) and "'ok'" in row.reason


def test_ack_by_gateway_document_id(pipeline):
    """With document_id the ack closes that document, provided its message id agrees."""
    tid = publish(pipeline, b"ORD|PO1,PO2")
    acks = ErpAcks(pipeline.store)
    d2 = doc(pipeline, tid, "PO2")
    out = acks.record(ErpAck(mid(pipeline, "PO2"), s.ERP_ACCEPTED, document_id=d2.id), b"x")
    assert out.document_ids == (d2.id,) and doc(pipeline, tid, "PO2").erp_status == s.ERP_ACCEPTED
    wrong = acks.record(ErpAck(mid(pipeline, "PO1"), s.ERP_ACCEPTED, document_id=d2.id), b"y")
    assert wrong.result == UNKNOWN and doc(pipeline, tid, "PO1").erp_status is None


def test_duplicate_row_with_the_same_message_id_is_not_the_one_closed(pipeline):
    """PO1 received again later is a DUPLICATE row; the ack closes the published first row."""
    first = publish(pipeline, b"ORD|PO1")
    second = publish(pipeline, b"ORD|PO1,PO3")
    dup = doc(pipeline, second, "PO1")
    assert dup.status == s.DOC_DUPLICATE
    out = ErpAcks(pipeline.store).record(ErpAck(mid(pipeline, "PO1"), s.ERP_ACCEPTED), b"x")
    assert out.document_ids == (doc(pipeline, first, "PO1").id,)
    assert doc(pipeline, second, "PO1").erp_status is None
    assert doc(pipeline, first, "PO1").erp_status == s.ERP_ACCEPTED
    assert erp_events(pipeline, second) == []


def test_ack_before_the_broker_confirm_is_recorded_closes_the_pending_document(pipeline):
    """The ERP may answer before edigw marks the confirm: the PENDING row is the one."""
    r = pipeline.receive(Incoming(data=b"ORD|PO7", channel="folder", filename="o.edi"))
    pipeline.process(r.transmission_id)
    out = ErpAcks(pipeline.store).record(ErpAck(mid(pipeline, "PO7"), s.ERP_ACCEPTED), b"x")
    assert out.result == APPLIED
    assert doc(pipeline, r.transmission_id, "PO7").erp_status == s.ERP_ACCEPTED


def test_waiting_filters_by_publication_time_and_partner(pipeline, fixed_clock):
    """waiting() lists what the ERP has not answered, published before a deadline."""
    publish(pipeline, b"ORD|A1")
    fixed_clock.advance(minutes=40)
    publish(pipeline, b"ORD|A2")
    acks = ErpAcks(pipeline.store)
    deadline = fixed_clock.current - dt.timedelta(minutes=30)
    assert [w.business_number for w in acks.waiting(published_before=deadline)] == ["A1"]
    assert [w.business_number for w in acks.waiting(since=deadline)] == ["A2"]
    assert acks.waiting(partner_id="other") == []


def test_ack_naming_a_price_list_closes_each_of_its_parts(pipeline):
    """A price list published in parts (ids <id>-p1, -p2) is closed by an ack for <id>."""
    from gateway.store.db import NewDocument

    store = pipeline.store
    tid = store.record_received(channel="folder", channel_ref=None, filename="pl.edi", size=1,
                                sha256="0" * 64)
    store.record_processed(tid, partner_id="acme", fmt="edifact", standard="EANCOM", docs=[
        NewDocument(doc_type="price-list", schema_version="edigw.price-list/1",
                    business_number="PL9", interchange_ref="IC", message_ref="1",
                    message_id=f"pl9-p{n}", payload=b"{}", routing_key="price-list.acme")
        for n in (1, 2)])
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    out = ErpAcks(store).record(ErpAck("pl9", s.ERP_REJECTED, "prices not yet valid"), b"x")
    assert out.result == APPLIED and len(out.document_ids) == 2 and len(out.ack_ids) == 2
    assert {d.erp_status for d in store.documents_of(tid)} == {s.ERP_REJECTED}
    assert ErpAcks(store).record(ErpAck("pl", s.ERP_ACCEPTED), b"y").result == UNKNOWN
