"""ERP acknowledgements through the machine's RabbitMQ into SQLite and PostgreSQL stores."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
import sqlalchemy as sa

from gateway.bus.acks import AckConsumer, encode_ack
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.erp import ERP_INVALID, ErpAcks
from tests.integration.rabbit import queue_documents
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Names:
    """Acknowledgement exchange and queue for one test (the [tracker] settings' shape)."""

    acks_exchange: str
    acks_queue: str


@pytest.fixture
def names(rabbit_url: str) -> Iterator[Names]:
    tag = uuid.uuid4().hex[:8]
    n = Names(acks_exchange=f"edi.acks.test-{tag}", acks_queue=f"edigw.acks.test-{tag}")
    yield n
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        channel = connection.channel()
        channel.queue_delete(n.acks_queue)
        channel.exchange_delete(n.acks_exchange)
    finally:
        connection.close()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store.from_url(store_url)
    yield st
    st.close()


def published(store: Store, count: int) -> list[str]:
    """``count`` order documents recorded and marked published; their message ids."""
    ids = queue_documents(store, count, per_transmission=count)
    store.mark_published([i.outbox_id for i in store.pending_outbox(count + 10)])
    return ids


def send(url: str, exchange: str, bodies: list[bytes], routing_key: str = "ack.order") -> None:
    """Publish acknowledgements the way an ERP does (persistent, JSON, with confirms)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish(exchange, routing_key, body, properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
                message_id=uuid.uuid4().hex), mandatory=True)
    finally:
        connection.close()


def ack_rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(s.erp_acks).order_by(s.erp_acks.c.id)).all()]


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def ready_count(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def consumer(store: Store, url: str, names: Names) -> AckConsumer:
    c = AckConsumer(store, url, names, retry_initial=0.1, retry_max=0.5)
    c.start()
    wait_for(lambda: c.health.connected)
    return c


def test_acks_from_the_erp_close_their_documents(store, rabbit_url, names):
    """Accepted and rejected acks on the acks exchange set each document's ERP status."""
    ids = published(store, 3)
    c = consumer(store, rabbit_url, names)
    try:
        send(rabbit_url, names.acks_exchange, [
            encode_ack(ids[0], "accepted"),
            encode_ack(ids[1], "REJECTED", "unknown delivery point 5412345000013")])
        wait_for(lambda: len(ack_rows(store)) == 2)
        # The counters move just after the commit, in the consumer's thread.
        wait_for(lambda: c.health.accepted == 1 and c.health.rejected == 1)
    finally:
        c.stop()
    docs = {d.message_id: d for d in store.find_documents(partner="ACME")}
    assert docs[ids[0]].erp_status == s.ERP_ACCEPTED
    assert (docs[ids[1]].erp_status, docs[ids[1]].erp_reason) == (
        s.ERP_REJECTED, "unknown delivery point 5412345000013")
    assert docs[ids[2]].erp_status is None
    assert [w.message_id for w in ErpAcks(store).waiting()] == [ids[2]]
    assert ready_count(rabbit_url, names.acks_queue) == 0


def test_malformed_ack_is_recorded_invalid_and_does_not_block_the_next(store, rabbit_url, names):
    """Garbage is kept as INVALID with its reason and acknowledged; the ack after it applies."""
    ids = published(store, 1)
    c = consumer(store, rabbit_url, names)
    try:
        send(rabbit_url, names.acks_exchange, [
            b"not json at all", b'{"message_id": "x", "status": "maybe"}',
            encode_ack("never-published", "accepted"), encode_ack(ids[0], "accepted")])
        wait_for(lambda: len(ack_rows(store)) == 4)
        # The counters move just after the commit, in the consumer's thread.
        wait_for(lambda: (c.health.invalid, c.health.unknown, c.health.accepted) == (2, 1, 1))
    finally:
        c.stop()
    rows = ack_rows(store)
    assert [r["status"] for r in rows] == [ERP_INVALID, ERP_INVALID, s.ERP_ACCEPTED,
                                           s.ERP_ACCEPTED]
    assert rows[0]["reason"].startswith("not JSON") and "'maybe'" in rows[1]["reason"]
    assert rows[2]["document_id"] is None and rows[3]["document_id"] is not None
    assert ready_count(rabbit_url, names.acks_queue) == 0


def test_acks_sent_while_the_consumer_is_stopped_are_all_recorded_after_restart(
        store, rabbit_url, names):
    """Nothing is lost across a restart: acks wait on the durable queue."""
    ids = published(store, 120)
    consumer(store, rabbit_url, names).stop()  # declares the queue, then goes away
    send(rabbit_url, names.acks_exchange, [encode_ack(m, "accepted") for m in ids])
    assert ready_count(rabbit_url, names.acks_queue) == 120
    c = consumer(store, rabbit_url, names)
    try:
        wait_for(lambda: c.health.consumed == 120)
    finally:
        c.stop()
    assert {d.erp_status for d in store.find_documents(partner="ACME", limit=500)} == {
        s.ERP_ACCEPTED}
    assert ready_count(rabbit_url, names.acks_queue) == 0


def test_broker_outage_loses_no_ack(store, rabbit_url, names):
    """The consumer reconnects after the broker connection is cut and records what came."""
    ids = published(store, 2)
    parts = urlsplit(rabbit_url)
    with TcpProxy(parts.hostname, parts.port or 5672) as proxy:
        via = urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
        c = consumer(store, via, names)
        try:
            send(rabbit_url, names.acks_exchange, [encode_ack(ids[0], "accepted")])
            wait_for(lambda: c.health.consumed == 1)
            proxy.cut()
            wait_for(lambda: not c.health.connected)
            send(rabbit_url, names.acks_exchange, [encode_ack(ids[1], "rejected", "closed")])
            proxy.restore()
            wait_for(lambda: c.health.consumed == 2)
        finally:
            c.stop()
    assert {d.message_id: d.erp_status for d in store.find_documents(partner="ACME")} == {
        ids[0]: s.ERP_ACCEPTED, ids[1]: s.ERP_REJECTED}


def test_store_outage_keeps_acks_on_the_broker_until_the_store_answers(
        pg_database, rabbit_url, names):
    """PostgreSQL unreachable: acks stay unacknowledged, then are recorded, none lost."""
    schema = f"s_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_database)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    base = sa.engine.make_url(pg_database)
    try:
        with TcpProxy(base.host or "127.0.0.1", base.port or 5432) as proxy:
            url = base.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False) + f"?options=-csearch_path%3D{schema}"
            store = Store.from_url(url)
            ids = published(store, 5)
            c = consumer(store, rabbit_url, names)
            try:
                proxy.cut()
                send(rabbit_url, names.acks_exchange, [encode_ack(m, "accepted") for m in ids])
                wait_for(lambda: c.health.store_outage_since is not None)
                time.sleep(1.0)  # a few failed attempts
                assert c.health.consumed == 0
                proxy.restore()
                wait_for(lambda: c.health.consumed == 5, timeout=30)
                assert c.health.store_outage_since is None
            finally:
                c.stop()
            assert len(ack_rows(store)) == 5
            assert {d.erp_status for d in store.find_documents(partner="ACME")} == {
                s.ERP_ACCEPTED}
            store.close()
            assert ready_count(rabbit_url, names.acks_queue) == 0
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
