"""A three-node RabbitMQ cluster started by the tests (:mod:`tests.integration.rabbit_cluster`):
quorum queues on every node, the outbox publisher and the ack consumer moving to another node
when theirs goes down, nothing lost."""

from __future__ import annotations

import collections
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest
import structlog

from gateway.bus import OutboxPublisher, declare_topology
from gateway.bus.acks import AckConsumer, encode_ack
from gateway.bus.connect import check_nodes
from gateway.bus.events import EventPublisher, wait_published
from gateway.bus.settings import BusSettings, mask_url
from gateway.core.errors import BrokerError
from gateway.store import schema
from gateway.store.db import Store, utcnow
from tests.integration.rabbit import (
    delete_topology,
    drain,
    queue_documents,
    sqlite_store,
    unique_settings,
)
from tests.integration.rabbit_cluster import RabbitCluster, start_or_skip

pytestmark = pytest.mark.integration

DOCUMENTS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    c = start_or_skip(tmp_path_factory.mktemp("cluster"))
    print(f"three-node cluster up in {c.startup_seconds:.1f} s")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def every_node_up(cluster: RabbitCluster) -> Iterator[RabbitCluster]:
    """The cluster with every node running, before and after the test."""
    for i in range(len(cluster.nodes)):
        if not cluster.nodes[i].running:
            cluster.start(i)
    yield cluster
    for i in range(len(cluster.nodes)):
        if not cluster.nodes[i].running:
            cluster.start(i)


@pytest.fixture
def settings(every_node_up: RabbitCluster) -> Iterator[BusSettings]:
    cluster = every_node_up
    s = dataclasses.replace(unique_settings(cluster.urls[0]), urls=tuple(cluster.urls),
                            queue_type="quorum")
    yield s
    for i in cluster.running():
        try:
            delete_topology(dataclasses.replace(s, urls=(cluster.urls[i],)))
            return
        except Exception:
            continue


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    st = sqlite_store(tmp_path / "edigw.sqlite3")
    yield st
    st.close()


def until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def queue_info(cluster: RabbitCluster, name: str) -> dict[str, str]:
    """``rabbitmqctl list_queues`` for one queue: its type and members."""
    out = cluster.ctl("list_queues", "--quiet", "--no-table-headers", "name", "type",
                      "members")
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == name:
            return {"type": parts[1], "members": parts[2]}
    raise AssertionError(f"queue {name} not found in\n{out}")


def test_topology_with_quorum_queues_on_the_cluster(cluster, settings):
    """Declared through one node, the quorum queues are replicated on all three; declaring
    them again as classic says what the broker holds and what to do."""
    declare_topology(settings, url=cluster.urls[1])
    declare_topology(settings)  # again, through the first node: harmless
    for name in (settings.queues[0][0], settings.dead_letter_queue):
        info = queue_info(cluster, name)
        assert info["type"] == "quorum"
        assert all(node in info["members"] for node in cluster.node_names), info
    with pytest.raises(BrokerError) as e:
        declare_topology(dataclasses.replace(settings, queue_type="classic"))
    text = str(e.value)
    assert "PRECONDITION_FAILED" in text and "x-queue-type" in text
    assert "another type" in text and "queue_type = 'quorum'" in text
    assert "guest:guest" not in text


def test_every_node_reachable_is_shown_and_a_stopped_one_too(cluster, every_node_up):
    assert [problem for _, problem in check_nodes(cluster.urls, timeout=3)] == [None] * 3
    cluster.stop(2)
    checked = check_nodes(cluster.urls, timeout=3)
    assert [p is None for _, p in checked] == [True, True, False]
    assert checked[2][0] == mask_url(cluster.urls[2]) and "***" in checked[2][0]
    assert checked[2][1] == "connection refused"


def test_outbox_reaches_the_cluster_while_the_publishers_node_dies(cluster, settings, store):
    """2,000 documents published through the real OutboxPublisher with the cluster's URLs;
    the node it is connected to is killed (SIGKILL) mid-way. It reconnects to another node,
    publishes again what was not confirmed (same message_id), and the outbox drains: every
    document is on the queue at least once."""
    declare_topology(settings)
    message_ids = set(queue_documents(store, DOCUMENTS, per_transmission=200))
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(structlog.testing.CapturingLogger(), processors=[capture])
    publisher = OutboxPublisher(store, dataclasses.replace(
        settings, retry_initial=0.2, retry_max=1.0, confirm_timeout=5.0), log=log)
    publisher.start()
    try:
        assert until(lambda: publisher.health.connected, 20), publisher.health
        first = publisher.health.node
        assert first == mask_url(cluster.urls[0])
        assert until(lambda: publisher.health.published >= DOCUMENTS // 5, 60, step=0.002)
        in_flight = publisher.health.in_flight  # about, the I/O thread goes on meanwhile
        cluster.stop(0, kill=True)
        killed_at = publisher.health.published
        assert killed_at < DOCUMENTS, "the node died after everything was confirmed"
        assert until(lambda: publisher.health.connected and publisher.health.node != first,
                     60), publisher.health
        assert publisher.wait_idle(120), publisher.health
        health = publisher.health
    finally:
        publisher.stop(timeout=10)
    assert store.outbox_size() == 0
    events = [e["event"] for e in capture.entries]
    assert "broker_connection_lost" in events
    assert health.node in {mask_url(u) for u in cluster.urls[1:]}

    received = drain(cluster.urls[1], settings.queues[0][0], idle=2.0)
    by_id = collections.defaultdict(list)
    for r in received:
        by_id[r.properties.message_id].append(r)
    assert set(by_id) == message_ids, (len(by_id), len(message_ids))
    duplicates = {mid: copies for mid, copies in by_id.items() if len(copies) > 1}
    for copies in duplicates.values():  # a repeat is the same document, same message_id
        assert len({c.body for c in copies}) == 1
        assert len({c.properties.headers["document_id"] for c in copies}) == 1
    print(f"{DOCUMENTS} documents; node killed after {killed_at} confirmed ({in_flight} in "
          f"flight); {len(received)} messages on the queue, {len(duplicates)} documents twice; "
          f"confirms stalled {events.count('broker_confirms_stalled')} time(s)")
    assert drain(cluster.urls[2], settings.dead_letter_queue, idle=0.5) == []


@dataclasses.dataclass(frozen=True)
class Names:
    acks_exchange: str
    acks_queue: str


def test_ack_consumer_moves_to_another_node(cluster, every_node_up, store):
    """The node the ERP acknowledgement consumer reads from is killed: it consumes from
    another node, and an acknowledgement sent meanwhile is recorded."""
    tag = uuid.uuid4().hex[:8]
    names = Names(f"edi.acks.test-{tag}", f"edigw.acks.test-{tag}")
    consumer = AckConsumer(store, cluster.urls, names, retry_initial=0.2, retry_max=1.0)
    consumer.start()
    try:
        assert until(lambda: consumer.health.connected, 20), consumer.health
        first = consumer.health.node
        assert first == mask_url(cluster.urls[0])
        cluster.stop(0, kill=True)
        assert until(lambda: consumer.health.connected and consumer.health.node != first, 60), \
            consumer.health
        assert queue_info(cluster, names.acks_queue)["type"] == "quorum"
        connection = pika.BlockingConnection(pika.URLParameters(cluster.urls[2]))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(names.acks_exchange, "order", encode_ack(
                uuid.uuid4().hex, "accepted"), pika.BasicProperties(
                content_type="application/json", delivery_mode=2))
        finally:
            connection.close()
        assert until(lambda: consumer.health.consumed == 1, 30), consumer.health
        assert consumer.health.unknown == 1  # no such document: recorded as unknown
    finally:
        consumer.stop()
        connection = pika.BlockingConnection(pika.URLParameters(cluster.urls[1]))
        try:
            channel = connection.channel()
            channel.queue_delete(names.acks_queue)
            channel.exchange_delete(names.acks_exchange)
        finally:
            connection.close()


def test_events_publisher_moves_to_another_node(cluster, every_node_up, store):
    """The events publisher's node goes down: the events raised meanwhile go out through
    another node, each with its own message_id."""
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"edi.events.test-{tag}", f"ops.alerts.test-{tag}"
    # Declared through node 1, whose death the test plays: the queue's leader is there.
    connection = pika.BlockingConnection(pika.URLParameters(cluster.urls[0]))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, exchange, "alert.#")
    connection.close()

    def add(first: int, n: int) -> None:
        with store._begin() as conn:
            conn.execute(schema.event_outbox.insert(), [dict(
                routing_key="alert.gap.acme", message_id=f"alert-{i}-opened",
                payload=json.dumps({"alert": {"id": i}}).encode(), created_at=utcnow())
                for i in range(first, first + n)])

    publisher = EventPublisher(store, cluster.urls, exchange, every=0.1, retry_initial=0.2,
                               retry_max=1.0)
    publisher.start()
    try:
        add(0, 5)
        assert wait_published(publisher, 20)
        cluster.stop(0, kill=True)
        add(5, 5)
        assert wait_published(publisher, 60), publisher.last_error
    finally:
        publisher.stop()
    got = drain(cluster.urls[2], queue, idle=1.0)
    assert {r.properties.message_id for r in got} == {f"alert-{i}-opened" for i in range(10)}
    connection = pika.BlockingConnection(pika.URLParameters(cluster.urls[1]))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()
