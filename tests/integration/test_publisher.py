"""The outbox publisher against the machine's RabbitMQ (no fakes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
import structlog

from gateway.bus import OutboxPublisher, check_broker, declare_topology
from gateway.bus.settings import BusSettings
from gateway.store import schema
from gateway.store.db import Store
from tests.integration.rabbit import drain, queue_documents

pytestmark = pytest.mark.integration


@pytest.fixture
def capture() -> structlog.testing.LogCapture:
    return structlog.testing.LogCapture()


def _publisher(store: Store, settings: BusSettings,
               capture: structlog.testing.LogCapture) -> OutboxPublisher:
    log = structlog.wrap_logger(structlog.testing.CapturingLogger(), processors=[capture])
    return OutboxPublisher(store, settings, log=log)


@pytest.fixture
def start_publisher(store, capture) -> Iterator:
    started: list[OutboxPublisher] = []

    def start(settings: BusSettings) -> OutboxPublisher:
        publisher = _publisher(store, settings, capture)
        publisher.start()
        started.append(publisher)
        return publisher

    yield start
    for publisher in started:
        publisher.stop(timeout=5)


def _statuses(store: Store, table: sa.Table) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.status, sa.func.count()).group_by(table.c.status))
        return {status: n for status, n in rows}


def test_publisher_drains_a_thousand_documents_with_confirms(store, bus_settings, start_publisher):
    """1,000 documents reach the queue persistent, with message_id and headers; all marked."""
    message_ids = queue_documents(store, 1000, routing_key="order.acme")
    publisher = start_publisher(bus_settings)
    publisher.wake()

    assert publisher.wait_idle(30), f"outbox still holds {store.outbox_size()} rows"
    queue = bus_settings.queues[0][0]
    received = drain(bus_settings.url, queue)

    assert len(received) == 1000
    assert {m.properties.message_id for m in received} == set(message_ids)
    first = received[0]
    assert first.routing_key == "order.acme"
    assert first.properties.delivery_mode == 2
    assert first.properties.content_type == "application/json"
    assert first.properties.type == "order"
    assert first.properties.timestamp
    headers = first.properties.headers
    assert headers["partner"] == "ACME"
    assert headers["document_type"] == "order"
    assert headers["schema"] == "edigw.order/1"
    assert headers["transmission_id"] and headers["document_id"]
    assert json.loads(first.body)["schema"] == "edigw.order/1"

    assert store.outbox_size() == 0
    assert _statuses(store, schema.documents) == {"PUBLISHED": 1000}
    assert _statuses(store, schema.transmissions) == {"PUBLISHED": 10}
    health = publisher.health
    assert health.connected and health.published == 1000 and health.in_flight == 0
    assert health.last_success is not None


def test_unroutable_document_is_marked_and_publishing_goes_on(store, bus_settings,
                                                             start_publisher, capture):
    """A routing key no queue is bound to comes back: UNROUTABLE with an event, never PUBLISHED."""
    queue_documents(store, 5, routing_key="order.known", per_transmission=5)
    lost_ids = queue_documents(store, 1, routing_key="order.nobody", per_transmission=1)
    queue_documents(store, 5, routing_key="order.known", per_transmission=5)
    publisher = start_publisher(bus_settings)

    assert publisher.wait_idle(15)
    received = drain(bus_settings.url, bus_settings.queues[0][0])

    assert len(received) == 10
    assert lost_ids[0] not in {m.properties.message_id for m in received}
    assert store.outbox_size() == 0
    assert _statuses(store, schema.documents) == {"PUBLISHED": 10, "UNROUTABLE": 1}
    (lost,) = [d for d in store.find_documents(partner="ACME", limit=100)
               if d.message_id == lost_ids[0]]
    assert lost.status == "UNROUTABLE" and lost.published_at is None
    events = store.events(lost.transmission_id)
    unroutable = [e for e in events if e["event"] == "unroutable"]
    assert len(unroutable) == 1
    assert (f"NO_ROUTE: no queue bound for routing key order.nobody on exchange "
            f"{bus_settings.exchange}") in unroutable[0]["detail"]
    assert publisher.health.unroutable == 1 and publisher.health.published == 10
    assert [e for e in capture.entries if e["event"] == "document_unroutable"]


def test_missing_exchange_keeps_documents_in_the_outbox(store, bus_settings, start_publisher):
    """Publishing to an exchange that does not exist confirms nothing: rows stay, error says why."""
    queue_documents(store, 3, per_transmission=3)
    settings = replace(bus_settings, exchange=bus_settings.exchange + ".missing")
    publisher = start_publisher(settings)

    assert not publisher.wait_idle(1.5)
    assert store.outbox_size() == 3
    assert "404" in (publisher.health.last_error or "")


def test_stop_waits_for_outstanding_confirms(store, bus_settings, capture):
    """stop() right after the publisher got going marks every confirmed row before closing."""
    queue_documents(store, 300, per_transmission=100)
    publisher = _publisher(store, bus_settings, capture)
    publisher.start()
    assert publisher.wait_idle(15)
    publisher.stop(timeout=5)

    assert not publisher.health.connected
    assert publisher.health.in_flight == 0
    assert any(e["event"] == "broker_disconnected" for e in capture.entries)


def test_declare_topology_twice_is_harmless(bus_settings):
    """Declaring the same topology again changes nothing and raises nothing."""
    declare_topology(bus_settings)


def test_check_broker(rabbit_url):
    """None when the broker answers; a reason without the password when it does not."""
    assert check_broker(rabbit_url, timeout=5) is None
    refused = check_broker("amqp://guest:hunter2@127.0.0.1:1/%2F", timeout=2)
    assert refused is not None and "hunter2" not in refused
    assert "refused" in refused.lower()
    bad_login = check_broker(rabbit_url.replace("guest:guest", "guest:wrong-pw"), timeout=5)
    assert bad_login is not None and "login refused" in bad_login
    assert "wrong-pw" not in bad_login


def test_refused_documents_are_retried_until_the_broker_takes_them(store, bus_settings,
                                                                  start_publisher):
    """A queue full with reject-publish nacks; the rows stay, count attempts, and go later."""
    import pika

    full_queue = bus_settings.queues[0][0] + ".full"
    connection = pika.BlockingConnection(pika.URLParameters(bus_settings.url))
    channel = connection.channel()
    channel.queue_declare(full_queue, durable=True,
                          arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    channel.queue_bind(full_queue, bus_settings.exchange, routing_key="order.full")
    try:
        message_ids = queue_documents(store, 5, routing_key="order.full", per_transmission=5)
        publisher = start_publisher(bus_settings)
        assert not publisher.wait_idle(1.0)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.outbox.c.attempts,
                                          schema.outbox.c.last_error)).all()
        assert len(rows) == 3
        assert all(r.attempts >= 1 and "refused by the broker" in r.last_error for r in rows)

        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while len(seen) < 5 and time.monotonic() < deadline:
            method, properties, _body = channel.basic_get(full_queue, auto_ack=True)
            if method is None:
                time.sleep(0.05)
            else:
                seen.add(properties.message_id)
        assert seen == set(message_ids)
        assert publisher.wait_idle(5)
        assert _statuses(store, schema.documents) == {"PUBLISHED": 5}
    finally:
        channel.queue_delete(full_queue)
        connection.close()


def test_store_is_never_called_on_the_io_thread(store, bus_settings, start_publisher,
                                                monkeypatch):
    """Reads and marks run on the store thread, so a slow commit never stalls publishing."""
    threads: set[str] = set()
    for name in ("pending_outbox", "mark_published", "mark_unroutable",
                 "record_publish_failure"):
        original = getattr(store, name)

        def spy(*args, __original=original, **kwargs):
            threads.add(threading.current_thread().name)
            return __original(*args, **kwargs)

        monkeypatch.setattr(store, name, spy)
    queue_documents(store, 600, per_transmission=100)
    queue_documents(store, 1, routing_key="order.nobody", per_transmission=1)
    publisher = start_publisher(bus_settings)

    assert publisher.wait_idle(30)
    assert threads == {"edigw-publisher-store"}
    assert publisher.health.published == 600 and publisher.health.unroutable == 1


def test_stop_marks_every_acked_row_before_returning(store, bus_settings, capture, monkeypatch):
    """With marks lagging behind acks, stop() still leaves nothing acked and unmarked."""
    original = store.mark_published

    def slow_mark(outbox_ids):
        time.sleep(0.2)
        original(outbox_ids)

    monkeypatch.setattr(store, "mark_published", slow_mark)
    queue_documents(store, 2000, per_transmission=100)
    publisher = _publisher(store, bus_settings, capture)
    publisher.start()
    deadline = time.monotonic() + 15
    while publisher.health.published == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    publisher.stop(timeout=5)

    published = publisher.health.published
    assert 0 < published
    assert _statuses(store, schema.documents).get("PUBLISHED", 0) == published
    assert store.outbox_size() == 2000 - published
    received = drain(bus_settings.url, bus_settings.queues[0][0])
    assert len(received) >= published, "a row was marked published without an ack"
