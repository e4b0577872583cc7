"""The event publisher against the real RabbitMQ: pending events reach ``edi.events`` with
their routing keys and stable message ids, are marked published only once confirmed, and
wait out a broker outage (RabbitMQ reached through a proxy the test cuts)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
import sqlalchemy as sa

from gateway.bus.connect import host_port
from gateway.bus.events import EventPublisher, wait_published
from gateway.store import schema as s
from gateway.store.db import Store, utcnow
from gateway.store.events import EventOutbox
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def events(rabbit_url) -> Iterator[tuple[str, str]]:
    """A unique events exchange and a queue bound to alert.# on it."""
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"edi.events.test-{tag}", f"ops.alerts.test-{tag}"
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    ch = conn.channel()
    ch.exchange_declare(exchange, exchange_type="topic", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, "alert.#")
    conn.close()
    yield exchange, queue
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    conn.channel().queue_delete(queue)
    conn.channel().exchange_delete(exchange)
    conn.close()


def _add(store: Store, n: int, kind: str = "gap", partner: str = "acme") -> None:
    with store._begin() as conn:
        conn.execute(s.event_outbox.insert(), [dict(
            routing_key=f"alert.{kind}.{partner}", message_id=f"alert-{i}-opened",
            payload=json.dumps({"event": "alert.opened", "alert": {"id": i}}).encode(),
            created_at=utcnow()) for i in range(n)])


def _drain(url: str, queue: str, expected: int, timeout: float = 10) -> list:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    got, deadline = [], time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        m, p, b = ch.basic_get(queue, auto_ack=True)
        if m is None:
            time.sleep(0.05)
            continue
        got.append((m.routing_key, p.message_id, json.loads(b)))
    conn.close()
    return got


def test_pending_events_are_published_with_keys_and_ids(store_url, rabbit_url, events):
    exchange, queue = events
    store = Store.from_url(store_url)
    _add(store, 3)
    pub = EventPublisher(store, rabbit_url, exchange, every=0.1)
    pub.start()
    try:
        assert wait_published(pub, 10)
    finally:
        pub.stop()
    got = _drain(rabbit_url, queue, 3)
    assert [(k, mid) for k, mid, _ in got] == [
        ("alert.gap.acme", f"alert-{i}-opened") for i in range(3)]
    assert got[0][2] == {"event": "alert.opened", "alert": {"id": 0}}
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(s.event_outbox.c.published_at, s.event_outbox.c.attempts)
                            ).all()
    assert all(r.published_at is not None and r.attempts == 1 for r in rows)
    store.close()


def test_events_wait_out_a_broker_outage(store_url, rabbit_url, events):
    exchange, queue = events
    store = Store.from_url(store_url)
    with TcpProxy(*host_port(rabbit_url)) as proxy:
        pub = EventPublisher(store, f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F",
                             exchange, every=0.1, retry_initial=0.1, retry_max=0.3)
        pub.start()
        try:
            _add(store, 1)
            assert wait_published(pub, 10)
            proxy.cut()
            _add(store, 2, kind="silence", partner="beta")
            pub.wake()
            time.sleep(1.0)
            assert EventOutbox(store).size() == 2, "nothing marked while the broker is away"
            assert pub.last_error
            proxy.restore()
            assert wait_published(pub, 15)
        finally:
            pub.stop()
    got = _drain(rabbit_url, queue, 3)
    assert sorted(k for k, _, _ in got) == ["alert.gap.acme", "alert.silence.beta",
                                            "alert.silence.beta"]
    store.close()
