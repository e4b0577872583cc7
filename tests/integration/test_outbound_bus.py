"""Documents for partners through the machine's RabbitMQ: ``edi.outbound`` -> the quorum
queue -> the outbound intake; refusals dead-lettered with their reason, nothing lost while
the store is down, nothing received twice."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from gateway.bus.outbound import OutboundConsumer
from gateway.bus.topology import OutboundNames, declare_outbound
from gateway.channels.intake import OutboundIntake, OutboundResult
from gateway.channels.intake_routes import route_outbound, route_outbound_batch
from gateway.config import Partner, PartnerOutbound
from gateway.core.errors import StoreError
from gateway.formats.render import OutboundMappings, RenderContext
from gateway.store.archive import Archive
from gateway.store.db import Store
from tests.integration.rabbit import drain

pytestmark = pytest.mark.integration


@dataclass
class _Body:
    text: str
    content_type: str = "text/plain"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return f"REF {control_ref}\n{self.text}".encode()


@dataclass
class _Mapping:
    """Writes the invoice number: the test is about the queue, not a syntax."""

    id: str = "plain-invoice"
    document: str = "invoice"
    syntax: str = "edifact"
    aliases: tuple[str, ...] = ("plain",)
    uses_control_ref: bool = True
    file: str = "plain.yaml"
    suffix: str = ".txt"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
        return _Body(f"INVOICE {document['invoice_number']}")


def invoice(number: str = "INV-1") -> bytes:
    return json.dumps({"schema": "edigw.invoice/1", "invoice_number": number,
                       "currency": "EUR",
                       "lines": [{"quantity": "2", "line_net_amount": "10.00"}],
                       "totals": {"tax_exclusive": "10.00", "tax_inclusive": "12.00"}}).encode()


@pytest.fixture
def names(rabbit_url: str) -> Iterator[OutboundNames]:
    tag = uuid.uuid4().hex[:8]
    n = OutboundNames(exchange=f"edi.outbound.test-{tag}", queue=f"edigw.outbound.test-{tag}",
                      dead_exchange=f"edi.outbound.test-{tag}.dead",
                      dead_queue=f"edigw.outbound.test-{tag}.dead")
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        declare_outbound(connection.channel(), n)
    finally:
        connection.close()
    yield n
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        channel = connection.channel()
        for queue in (n.queue, n.dead_queue):
            channel.queue_delete(queue)
        for exchange in (n.exchange, n.dead_exchange):
            channel.exchange_delete(exchange)
    finally:
        connection.close()


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[OutboundIntake]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.db'}")
    partners = {"acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
        formats={"invoice": "plain"}, recipient_id="5400000000003"))}
    yield OutboundIntake(store=store, archive=Archive(tmp_path / "archive"),
                         partners=partners.get,
                         mappings=OutboundMappings({"plain-invoice": _Mapping()}),
                         sender_id="5412345000013")
    store.close()


def publish(url: str, exchange: str, routing_key: str, body: bytes,
            message_id: str | None = None) -> None:
    """Publish as an ERP does: persistent JSON, with confirms."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, properties=pika.BasicProperties(
            content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id), mandatory=True)
    finally:
        connection.close()


def queue_depth(url: str, queue: str) -> tuple[int, int]:
    """(ready, consumers) of ``queue``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = connection.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        connection.close()


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def outbound_transmissions(store: Store) -> list[Any]:
    import sqlalchemy as sa

    from gateway.store import schema as s

    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(s.transmissions)
                                 .where(s.transmissions.c.direction == "out")
                                 .order_by(s.transmissions.c.received_at)).all())


def consumer(url: str, names: OutboundNames, accept: Callable[..., OutboundResult] | None = None,
             *, batch: Callable[..., Any] | None = None) -> OutboundConsumer:
    c = OutboundConsumer(url, accept, accept_batch=batch, names=names, retry_initial=0.1,
                         retry_max=0.3, declare=False)
    c.start()
    return c


def test_a_valid_invoice_is_rendered_and_acknowledged(rabbit_url: str, names: OutboundNames,
                                                      intake: OutboundIntake) -> None:
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake))
    try:
        publish(rabbit_url, names.exchange, "invoice.acme", invoice(), "erp-1")
        wait_for(lambda: c.health.received == 1)
        rows = outbound_transmissions(intake.store)
        assert [(r.status, r.channel, r.channel_ref, r.partner_id) for r in rows] == [
            ("RENDERED", "erp", "erp-1", "acme")]
        out = intake.store.outbound_of(rows[0].id)
        assert [(o.kind, o.control_ref) for o in out] == [("invoice", "1")]
        assert intake.archive.get(out[0].sha256) == b"REF 1\nINVOICE INV-1"
    finally:
        c.stop()
    assert queue_depth(rabbit_url, names.queue) == (0, 0)  # acked, not left unacked
    assert drain(rabbit_url, names.dead_queue, idle=0.3) == []


@pytest.mark.parametrize("batched", [True, False])
def test_refusals_are_dead_lettered_with_their_reason(rabbit_url: str, names: OutboundNames,
                                                      intake: OutboundIntake,
                                                      batched: bool) -> None:
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake)) if batched \
        else consumer(rabbit_url, names, route_outbound(intake))
    try:
        publish(rabbit_url, names.exchange, "invoice.nobody", invoice("INV-9"), "erp-9")
        publish(rabbit_url, names.exchange, "invoice.acme", b"{not json", "erp-10")
        wait_for(lambda: c.health.refused == 2)
    finally:
        c.stop()
    dead = drain(rabbit_url, names.dead_queue, idle=0.5)
    assert [d.routing_key for d in dead] == ["invoice.nobody", "invoice.acme"]
    unknown, garbled = (d.properties.headers for d in dead)
    assert "unknown partner 'nobody'" in unknown["x-edigw-reason"]
    assert unknown["x-edigw-stage"] == "partner" and unknown["x-edigw-partner"] == "nobody"
    assert garbled["x-edigw-stage"] == "parse" and "not JSON" in garbled["x-edigw-reason"]
    assert dead[1].body == b"{not json" and dead[1].properties.message_id == "erp-10"
    rows = {r.channel_ref: r for r in outbound_transmissions(intake.store)}
    assert unknown["x-edigw-transmission"] == rows["erp-9"].id
    assert (rows["erp-9"].status, rows["erp-9"].stage) == ("FAILED", "partner")
    assert (rows["erp-10"].status, rows["erp-10"].stage) == ("FAILED", "parse")
    assert intake.store.pending_outbound() == []  # nothing to send
    assert intake.store.outbound_of(rows["erp-9"].id) == []
    assert queue_depth(rabbit_url, names.queue) == (0, 0)


def test_the_same_message_twice_is_one_transmission(rabbit_url: str, names: OutboundNames,
                                                    intake: OutboundIntake) -> None:
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake))
    try:
        for _ in range(2):
            publish(rabbit_url, names.exchange, "invoice.acme", invoice(), "erp-same")
        # Without a message id: the bytes' digest is the reference.
        for _ in range(2):
            publish(rabbit_url, names.exchange, "invoice.acme", invoice("INV-2"))
        wait_for(lambda: c.health.received == 4)
    finally:
        c.stop()
    rows = outbound_transmissions(intake.store)
    assert len(rows) == 2 and {r.status for r in rows} == {"RENDERED"}
    assert rows[1].channel_ref.startswith("sha256:")
    assert len(intake.store.pending_outbound()) == 2


def test_store_outage_returns_the_message_and_it_is_taken_later(
        rabbit_url: str, names: OutboundNames, intake: OutboundIntake) -> None:
    down = {"calls": 0, "until": 3}
    accept = route_outbound(intake)

    def flaky(body: bytes, key: str, mid: str | None, headers: dict[str, Any]
              ) -> OutboundResult:
        down["calls"] += 1
        if down["calls"] <= down["until"]:
            raise StoreError("database is locked (the store is down)")
        return accept(body, key, mid, headers)

    c = consumer(rabbit_url, names, flaky)
    try:
        publish(rabbit_url, names.exchange, "invoice.acme", invoice("INV-A"), "erp-a")
        publish(rabbit_url, names.exchange, "invoice.acme", invoice("INV-B"), "erp-b")
        wait_for(lambda: c.health.received == 2)
        health = c.health
    finally:
        c.stop()
    assert health.returned >= 3 and health.outage_since is None
    rows = outbound_transmissions(intake.store)
    assert sorted(r.channel_ref for r in rows) == ["erp-a", "erp-b"]
    assert {r.status for r in rows} == {"RENDERED"}
    assert queue_depth(rabbit_url, names.queue) == (0, 0)
    assert drain(rabbit_url, names.dead_queue, idle=0.3) == []


def test_an_unwritable_archive_keeps_the_message_on_the_queue(
        rabbit_url: str, names: OutboundNames, intake: OutboundIntake, tmp_path: Path) -> None:
    """A real outage: the archive's folder is gone (a file in its place), so nothing can be
    received; the message stays on the broker until the archive writes again, then is
    recorded once."""
    archive = tmp_path / "archive"
    assert not archive.exists()  # made at the first write
    archive.write_bytes(b"not a folder")
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake))
    try:
        publish(rabbit_url, names.exchange, "invoice.acme", invoice("INV-RO"), "erp-ro")
        wait_for(lambda: c.health.returned >= 2)
        assert c.health.received == 0 and c.health.outage_since is not None
        assert outbound_transmissions(intake.store) == []
        archive.unlink()
        wait_for(lambda: c.health.received == 1)
    finally:
        c.stop()
    rows = outbound_transmissions(intake.store)
    assert [(r.channel_ref, r.status) for r in rows] == [("erp-ro", "RENDERED")]
    assert queue_depth(rabbit_url, names.queue) == (0, 0)


def test_a_price_list_key_naming_a_list_goes_to_the_distributor(
        rabbit_url: str, names: OutboundNames, intake: OutboundIntake) -> None:
    """``price-list.<list>``: not a partner but a list; the distributor's results decide
    (a refusal among them is dead-lettered); a list nobody takes is an unknown partner."""
    calls: list[tuple[str, str, str | None]] = []

    def distribute(body: bytes, *, list_id: str, origin: str, ref: str | None
                   ) -> list[OutboundResult]:
        calls.append((list_id, origin, ref))
        if list_id != "spring":
            return []
        return [OutboundResult("t-1", "RENDERED", "acme", "price-list"),
                OutboundResult("t-2", "FAILED", "beta", "price-list", stage="mapping",
                               reason="partner beta's profile names no format")]

    lists = SimpleNamespace(distribute=distribute)
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake, lists))
    try:
        publish(rabbit_url, names.exchange, "price-list.spring", b'{"schema": "edigw.price-list/1"}', "pl-1")
        publish(rabbit_url, names.exchange, "price-list.autumn", b'{"schema": "edigw.price-list/1"}', "pl-2")
        wait_for(lambda: c.health.refused == 2)
    finally:
        c.stop()
    assert calls == [("spring", "erp", "pl-1"), ("autumn", "erp", "pl-2")]
    dead = {d.properties.message_id: d.properties.headers
            for d in drain(rabbit_url, names.dead_queue, idle=0.5)}
    assert (dead["pl-1"]["x-edigw-partner"], dead["pl-1"]["x-edigw-transmission"]) == (
        "beta", "t-2")
    assert "unknown partner 'autumn'" in dead["pl-2"]["x-edigw-reason"]
    assert queue_depth(rabbit_url, names.queue) == (0, 0)


def test_the_topology_declares_the_outbound_exchange_and_quorum_queues(
        rabbit_url: str, names: OutboundNames) -> None:
    from gateway.bus.topology import declare_topology
    from tests.integration.rabbit import delete_topology, unique_settings

    settings = unique_settings(rabbit_url)
    try:
        declare_topology(settings, outbound=names)
        declare_topology(settings, outbound=names)  # idempotent
    finally:
        delete_topology(settings)
    publish(rabbit_url, names.exchange, "invoice.acme", invoice(), "t-1")
    assert queue_depth(rabbit_url, names.queue) == (1, 0)
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:  # quorum: declaring it classic is refused
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            connection.channel().queue_declare(names.queue, durable=True,
                                               arguments={"x-queue-type": "classic"})
        assert refused.value.reply_code == 406
    finally:
        if connection.is_open:
            connection.close()


def test_an_order_the_erp_accepts_is_answered_automatically(
        rabbit_url: str, intake: OutboundIntake, tmp_path: Path) -> None:
    """edi.acks -> AckConsumer -> order_responder -> the intake: one order response, even
    when the acknowledgement comes twice."""
    from gateway.bus.acks import AckConsumer, encode_ack
    from gateway.channels.order_responses import order_responder
    from tests.integration.rabbit import queue_documents

    @dataclass
    class _Ordrsp(_Mapping):
        id: str = "plain-ordrsp"
        document: str = "order-response"
        uses_control_ref: bool = False

        def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
            return _Body(f"ORDRSP {document['status']} {document['order_number']}")

    intake.mappings.mappings["plain-ordrsp"] = _Ordrsp()
    partners = {"acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
        formats={"order-response": "plain-ordrsp"}, order_responses="auto"))}
    intake.partners = partners.get
    store = intake.store
    [mid] = queue_documents(store, 1, partner="acme")
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    tag = uuid.uuid4().hex[:8]

    @dataclass(frozen=True)
    class Names:
        acks_exchange: str = f"edi.acks.test-{tag}"
        acks_queue: str = f"edigw.acks.test-{tag}"

    acks = AckConsumer(store, rabbit_url, Names(), retry_initial=0.1, retry_max=0.5,
                       on_order_answered=order_responder(store, intake, partners.get))
    acks.start()
    try:
        wait_for(lambda: acks.health.connected)
        for _ in range(2):
            publish(rabbit_url, Names.acks_exchange, "ack.order",
                    encode_ack(mid, "accepted"), uuid.uuid4().hex)
        wait_for(lambda: acks.health.consumed == 2)
    finally:
        acks.stop()
        connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
        try:
            channel = connection.channel()
            channel.queue_delete(Names.acks_queue)
            channel.exchange_delete(Names.acks_exchange)
        finally:
            connection.close()
    [row] = outbound_transmissions(store)
    assert (row.channel, row.status, row.partner_id) == ("ack", "RENDERED", "acme")
    [out] = store.outbound_of(row.id)
    assert out.kind == "order-response"
    assert intake.archive.get(out.sha256) == b"REF \nORDRSP accepted PO-000000"  # no UNB ref


def test_a_price_list_reaches_each_subscriber_through_the_real_distributor(
        rabbit_url: str, names: OutboundNames, tmp_path: Path) -> None:
    """``price-list.spring`` with the gateway's distributor and the real mappings: each
    subscriber gets its copy in its own format; the same message again sends nothing."""
    from gateway.channels.pricelists import PriceListDistributor

    root = Path(__file__).resolve().parents[2] / "mappings"
    partners = {
        "acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
            formats={"price-list": "csv-pricelist-out"}, price_lists=["spring"])),
        "beta": Partner(id="beta", name="Beta", outbound=PartnerOutbound(
            formats={"price-list": "eancom-pricat-d96a"}, recipient_id="5400000000003",
            price_lists=["spring"])),
    }
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.db'}")
    archive = Archive(tmp_path / "archive")
    intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                            mappings=OutboundMappings.load(root), sender_id="5412345000013")
    lists = PriceListDistributor(store, archive, lambda: list(partners.values()), intake)
    sample = json.loads((root / "outbound" / "csv" / "csv-pricelist-out.sample.json")
                        .read_text(encoding="utf-8"))
    sample.pop("partner", None)
    c = consumer(rabbit_url, names, batch=route_outbound_batch(intake, lists))
    try:
        for _ in range(2):
            publish(rabbit_url, names.exchange, "price-list.spring",
                    json.dumps(sample).encode(), "pl-spring-1")
        wait_for(lambda: c.health.received == 2)
    finally:
        c.stop()
    copies = {o.partner_id: o for o in store.pending_outbound()}
    assert sorted(copies) == ["acme", "beta"]
    assert copies["acme"].mapping == "csv-pricelist-out"
    assert b"UNB+UNOC:3+5412345000013:14+5400000000003" in archive.get(copies["beta"].sha256)
    assert queue_depth(rabbit_url, names.queue) == (0, 0)
    assert drain(rabbit_url, names.dead_queue, idle=0.3) == []
    store.close()
