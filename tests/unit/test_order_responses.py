"""Automatic order responses: built from the stored order and the ERP's word, handed to the
outbound intake once per order, and asked for by the acknowledgement consumer."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.bus.acks import AckConsumer, _Delivery, encode_ack
from gateway.channels.intake import OutboundIntake
from gateway.channels.order_responses import build_order_response, order_responder
from gateway.config import Partner, PartnerOutbound
from gateway.core.canonical import OrderResponse
from gateway.core.errors import StoreError
from gateway.formats.render import OutboundMappings, RenderContext
from gateway.store.archive import Archive
from gateway.store.db import Store
from tests.integration.rabbit import queue_documents

ORDER: dict[str, Any] = {
    "schema": "edigw.order/1", "message_id": "m-1", "partner": "acme",
    "order_number": "PO-4711", "issue_date": "2024-03-01",
    "requested_delivery_date": "2024-03-12", "currency": "EUR",
    "parties": {"buyer": {"gln": "4000001000005"}, "supplier": {"gln": "4012345000009"}},
    "lines": [
        {"line_number": "1", "gtin": "4012345678901", "quantity": "10", "unit": "PCE",
         "unit_price": "12.50"},
        {"line_number": "2", "gtin": "4012345678918", "quantity": "6", "unit": "KGM",
         "requested_delivery_date": "2024-03-15"},
        {"line_number": "3", "gtin": "4012345678925", "quantity": "2"},
    ],
    "source": {"format": "edifact", "standard": "EANCOM", "version": "D96A",
               "mapping": "eancom-orders-d96a"},
}
TODAY = dt.date(2024, 3, 2)


def test_an_accepted_order_is_answered_line_by_line_as_ordered() -> None:
    r = build_order_response(ORDER, document_id="doc1", erp_status="ACCEPTED", today=TODAY)
    doc = OrderResponse.model_validate(r)
    assert (doc.status, doc.order_number, doc.message_id) == ("accepted", "PO-4711",
                                                              "ordrsp-doc1")
    assert doc.issue_date == TODAY and str(doc.order_date) == "2024-03-01"
    assert doc.parties.buyer is not None and doc.parties.buyer.gln == "4000001000005"
    assert [(ln.line_number, ln.status, str(ln.quantity), str(ln.ordered_quantity))
            for ln in doc.lines] == [("1", "accepted", "10", "10"), ("2", "accepted", "6", "6"),
                                     ("3", "accepted", "2", "2")]
    # A line's own requested date, else the order's.
    assert [str(ln.delivery_date) for ln in doc.lines] == ["2024-03-12", "2024-03-15",
                                                          "2024-03-12"]
    assert str(doc.lines[0].unit_price) == "12.50" and doc.lines[0].gtin == "4012345678901"


def test_line_details_of_the_erp_make_it_accepted_with_changes() -> None:
    details = json.loads(encode_ack("m-1", "accepted"))
    details["lines"] = [{"line_number": "2", "quantity": "4", "reason": "partial stock"},
                        {"line_number": "3", "status": "rejected", "reason": "discontinued"},
                        {"line_number": "1", "quantity": "10.000"},  # as ordered
                        {"line_number": "9", "quantity": "1"}, "garbage"]
    r = build_order_response(ORDER, document_id="doc1", erp_status="ACCEPTED",
                             reason="stock", details=details, today=TODAY)
    doc = OrderResponse.model_validate(r)
    assert doc.status == "accepted-with-changes" and doc.reason == "stock"
    got = [(ln.status, str(ln.quantity), ln.reason) for ln in doc.lines]
    assert got == [("accepted", "10.000", None), ("changed", "4", "partial stock"),
                   ("rejected", "0", "discontinued")]
    assert "9" in doc.notes[0]


def test_a_changed_date_alone_is_a_change() -> None:
    details = {"lines": [{"line_number": "1", "delivery_date": "2024-03-20"}]}
    r = build_order_response(ORDER, document_id="d", erp_status="ACCEPTED", details=details,
                             today=TODAY)
    assert r["status"] == "accepted-with-changes"
    assert r["lines"][0]["status"] == "changed" and r["lines"][0]["delivery_date"] == "2024-03-20"


def test_a_rejected_order_is_rejected_whole_with_the_erps_reason() -> None:
    r = build_order_response(ORDER, document_id="d", erp_status="REJECTED",
                             reason="unknown delivery point", today=TODAY)
    doc = OrderResponse.model_validate(r)
    assert (doc.status, doc.reason) == ("rejected", "unknown delivery point")
    assert [(ln.line_number, ln.status, str(ln.quantity), str(ln.ordered_quantity))
            for ln in doc.lines] == [("1", "rejected", "0", "10"), ("2", "rejected", "0", "6"),
                                     ("3", "rejected", "0", "2")]


# -- handed to the intake ---------------------------------------------------------------------

@dataclass
class _Body:
    text: str
    content_type: str = "text/plain"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return self.text.encode()


@dataclass
class _Mapping:
    id: str = "plain-ordrsp"
    document: str = "order-response"
    syntax: str = "csv"
    aliases: tuple[str, ...] = ("plain",)
    uses_control_ref: bool = False
    file: str = "plain.yaml"
    suffix: str = ".txt"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
        return _Body(f"{document['status']} {document['order_number']} "
                     f"{len(document.get('lines', []))}")


@pytest.fixture
def world(tmp_path: Path) -> Any:
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.db'}")
    partners = {
        "acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
            formats={"order-response": "plain"}, order_responses="auto")),
        "quiet": Partner(id="quiet", name="Quiet", outbound=PartnerOutbound(
            formats={"order-response": "plain"})),
    }
    intake = OutboundIntake(store=store, archive=Archive(tmp_path / "archive"),
                            partners=partners.get,
                            mappings=OutboundMappings({"plain-ordrsp": _Mapping()}))
    answer = order_responder(store, intake, partners.get, today=lambda: TODAY)
    yield SimpleNamespace(store=store, intake=intake, answer=answer)
    store.close()


def _order_id(store: Store, partner: str) -> str:
    queue_documents(store, 1, partner=partner)
    return store.find_documents(partner=partner)[0].id


def test_an_answered_order_of_an_auto_partner_is_responded_to_once(world: Any) -> None:
    doc = _order_id(world.store, "acme")
    first = world.answer(doc, "ACCEPTED", None, {})
    assert first.status == "RENDERED" and not first.repeat and first.doc_type == "order-response"
    again = world.answer(doc, "ACCEPTED", None, {})  # the acknowledgement redelivered
    assert again.repeat and again.transmission_id == first.transmission_id
    row = world.store.get_transmission(first.transmission_id)
    assert (row.channel, row.channel_ref, row.partner_id) == ("ack", f"ordrsp:{doc}", "acme")
    [out] = world.store.pending_outbound()
    assert world.intake.archive.get(out.sha256).startswith(b"accepted PO-000000 1")


def test_no_response_for_other_partners_documents_or_unknown_ids(world: Any) -> None:
    quiet = _order_id(world.store, "quiet")
    assert world.answer(quiet, "REJECTED", "no", {}) is None
    assert world.answer("nosuchdocument", "ACCEPTED", None, {}) is None
    assert world.store.pending_outbound() == []


# -- asked for by the acknowledgement consumer ------------------------------------------------

class _Channel:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acked.append(tag)


def _names() -> Any:
    return SimpleNamespace(acks_exchange="edi.acks.unit", acks_queue="edigw.acks.unit")


def test_the_ack_consumer_tells_of_answered_documents_before_acking(world: Any) -> None:
    doc = _order_id(world.store, "acme")
    mid = world.store.find_documents(partner="acme")[0].message_id
    told: list[tuple[str, str, str | None, dict[str, Any]]] = []
    consumer = AckConsumer(world.store, "amqp://guest:guest@127.0.0.1:1/%2F", _names(),
                           on_order_answered=lambda *a: told.append(a))
    body = json.loads(encode_ack(mid, "rejected", "closed"))
    body["lines"] = [{"line_number": "1", "quantity": "0"}]
    raw = json.dumps(body).encode()
    channel = _Channel()
    consumer._pending = [_Delivery(7, raw), _Delivery(8, encode_ack("nobody", "accepted"))]
    consumer._settle(None, channel)
    assert told == [(doc, "REJECTED", "closed", body)]
    assert channel.acked == [8]
    # Redelivered (a repeat): told again; the responder sends nothing twice.
    consumer._pending = [_Delivery(9, raw)]
    consumer._settle(None, channel)
    assert len(told) == 2 and channel.acked == [8, 9]


def test_a_store_error_while_answering_leaves_the_ack_on_the_broker(world: Any) -> None:
    _order_id(world.store, "acme")
    mid = world.store.find_documents(partner="acme")[0].message_id

    def down(*_: Any) -> None:
        raise StoreError("database is locked")

    calls: list[str] = []

    def buggy(document_id: str, *_: Any) -> None:
        calls.append(document_id)
        raise KeyError("bug")

    channel = _Channel()
    consumer = AckConsumer(world.store, "amqp://guest:guest@127.0.0.1:1/%2F", _names(),
                           on_order_answered=down)
    consumer._pending = [_Delivery(3, encode_ack(mid, "accepted"))]
    with pytest.raises(StoreError):
        consumer._settle(None, channel)
    assert channel.acked == []  # the connection closes: the broker redelivers it
    # A bug in the callback does not hold acknowledgements up.
    consumer = AckConsumer(world.store, "amqp://guest:guest@127.0.0.1:1/%2F", _names(),
                           on_order_answered=buggy)
    consumer._pending = [_Delivery(4, encode_ack(mid, "accepted"))]
    consumer._settle(None, channel)
    assert channel.acked == [4] and len(calls) == 1


# -- through the real outbound mappings ------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
_REAL = OutboundMappings.load(ROOT / "mappings")


@pytest.mark.parametrize("mapping", sorted(m.id for m in _REAL if m.document == "order-response"))
@pytest.mark.parametrize("erp_status, details", [
    ("ACCEPTED", {}),
    ("ACCEPTED", {"lines": [{"line_number": "2", "quantity": "4"},
                            {"line_number": "3", "status": "rejected", "reason": "gone"}]}),
    ("REJECTED", {}),
])
def test_every_order_response_mapping_renders_what_is_built(mapping: str, erp_status: str,
                                                            details: dict[str, Any]) -> None:
    built = build_order_response(ORDER, document_id="d1", erp_status=erp_status,
                                 reason="no stock", details=details, today=TODAY)
    doc = json.loads(OrderResponse.model_validate(built).to_json_bytes())
    ctx = RenderContext(partner_id="acme", sender_id="5412345000013", sender_qualifier="14",
                        recipient_id="5400000000003", recipient_qualifier="14", test=False,
                        ack_requested=False, now=dt.datetime(2024, 3, 2, tzinfo=dt.UTC))
    out = _REAL.mappings[mapping].render(doc, ctx).seal("7")
    assert b"PO-4711" in out
    if mapping.startswith("eancom"):
        code = {"ACCEPTED": b"+29'" if not details else b"+4'", "REJECTED": b"+27'"}[erp_status]
        bgm = next(seg for seg in out.split(b"\n") if seg.startswith(b"BGM")) \
            if b"\n" in out else out[out.index(b"BGM"):out.index(b"'", out.index(b"BGM")) + 1]
        assert bgm.endswith(code), bgm
