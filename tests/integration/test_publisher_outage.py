"""Broker outages, played with a TCP proxy between the publisher and the real RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import structlog

from gateway.bus import OutboxPublisher
from gateway.bus.connect import host_port
from tests.integration.rabbit import drain, queue_documents, via
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(rabbit_url) -> Iterator[TcpProxy]:
    with TcpProxy(*host_port(rabbit_url)) as proxy:
        yield proxy


@pytest.fixture
def capture() -> structlog.testing.LogCapture:
    return structlog.testing.LogCapture()


@pytest.fixture
def publisher(store, bus_settings, proxy, capture) -> Iterator[OutboxPublisher]:
    log = structlog.wrap_logger(structlog.testing.CapturingLogger(), processors=[capture])
    publisher = OutboxPublisher(store, via(bus_settings, proxy.port), log=log)
    publisher.start()
    yield publisher
    publisher.stop(timeout=5)


def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_documents_wait_in_the_outbox_while_the_broker_is_unreachable(
        store, bus_settings, proxy, publisher, capture):
    """During an outage rows stay in the outbox; after it every one reaches the queue."""
    assert _until(lambda: publisher.health.connected, 10)
    proxy.cut()
    assert _until(lambda: not publisher.health.connected, 10)

    message_ids = queue_documents(store, 100, per_transmission=25)
    publisher.wake()
    time.sleep(1.5)  # several reconnect attempts (back-off 0.1 s .. 0.5 s)
    assert store.outbox_size() == 100
    health = publisher.health
    assert not health.connected and health.outage_since is not None
    assert "refused" in (health.last_error or "")

    proxy.restore()
    assert publisher.wait_idle(20), f"outbox still holds {store.outbox_size()} rows"
    received = drain(bus_settings.url, bus_settings.queues[0][0])
    assert {m.properties.message_id for m in received} == set(message_ids)
    assert store.outbox_size() == 0
    assert publisher.health.connected and publisher.health.outage_since is None

    events = [e["event"] for e in capture.entries]
    assert events.count("broker_connection_lost") == 1
    assert events.count("broker_unreachable") == 1, "an outage is reported once, not per retry"
    assert events.count("broker_connected") == 2
    (unreachable,) = [e for e in capture.entries if e["event"] == "broker_unreachable"]
    assert "documents wait in the outbox" in unreachable["message"]
    assert "guest:guest" not in repr(capture.entries), "a password reached the log"


def test_cut_mid_stream_every_document_arrives_at_least_once(
        store, bus_settings, proxy, publisher):
    """Cut with messages in flight: after restore each document is on the queue (maybe twice)."""
    count = 3000
    message_ids = queue_documents(store, count, per_transmission=500)
    publisher.wake()
    assert _until(lambda: publisher.health.published > 0, 20), "nothing published"
    proxy.cut()
    cut_at = store.outbox_size()
    time.sleep(0.5)
    proxy.restore()

    assert publisher.wait_idle(60), f"outbox still holds {store.outbox_size()} rows"
    received = drain(bus_settings.url, bus_settings.queues[0][0])
    assert {m.properties.message_id for m in received} == set(message_ids)
    assert len(received) >= count
    assert store.outbox_size() == 0
    assert 0 < cut_at < count, "the cut did not happen mid-stream"


def test_stop_during_an_outage_returns_promptly(store, bus_settings, proxy, capture):
    """stop() does not wait for a broker that is not there."""
    proxy.cut()
    log = structlog.wrap_logger(structlog.testing.CapturingLogger(), processors=[capture])
    publisher = OutboxPublisher(store, via(bus_settings, proxy.port), log=log)
    publisher.start()
    queue_documents(store, 5, per_transmission=5)
    time.sleep(0.5)
    started = time.monotonic()
    publisher.stop(timeout=2)
    assert time.monotonic() - started < 3
    assert store.outbox_size() == 5
