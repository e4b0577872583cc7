"""Helpers for tests against the machine's RabbitMQ: unique names, draining, clean-up."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pika

from gateway.bus.settings import BusSettings
from gateway.store import schema
from gateway.store.db import NewDocument, Store, create_engine

RABBIT_URL = os.environ.get("EDIGW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def unique_settings(url: str = RABBIT_URL, *, tag: str | None = None,
                    bindings: tuple[str, ...] = ("order.known", "order.acme")) -> BusSettings:
    """Settings whose exchange and queues exist for this test session only."""
    tag = tag or uuid.uuid4().hex[:8]
    return BusSettings(
        url=url,
        exchange=f"edi.documents.test-{tag}",
        queues=((f"erp.orders.test-{tag}", bindings),),
        dead_letter_exchange=f"edi.documents.test-{tag}.dlx",
        dead_letter_queue=f"erp.orders.test-{tag}.dead",
        test_queue=f"erp.test.test-{tag}",
        retry_initial=0.1,
        retry_max=0.5,
        poll_interval=0.1,
    )


def via(settings: BusSettings, port: int) -> BusSettings:
    """The same settings, connecting to 127.0.0.1:``port`` (a TcpProxy) instead."""
    return replace(settings, url=f"amqp://guest:guest@127.0.0.1:{port}/%2F")


def delete_topology(settings: BusSettings) -> None:
    """Remove what :func:`gateway.bus.topology.declare_topology` declared (tests only)."""
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    try:
        channel = connection.channel()
        for name, _keys in settings.queues:
            channel.queue_delete(name)
        channel.queue_delete(settings.dead_letter_queue)
        channel.queue_delete(settings.test_queue)
        channel.exchange_delete(settings.exchange)
        channel.exchange_delete(settings.dead_letter_exchange)
    finally:
        connection.close()


def purge(settings: BusSettings) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    try:
        channel = connection.channel()
        for name, _keys in settings.queues:
            channel.queue_purge(name)
        channel.queue_purge(settings.dead_letter_queue)
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class Received:
    routing_key: str
    properties: Any  # pika.BasicProperties
    body: bytes


def drain(url: str, queue: str, *, idle: float = 1.0) -> list[Received]:
    """Every message on ``queue`` (consumed), stopping after ``idle`` s without one."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    out: list[Received] = []
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1000)
        for method, properties, body in channel.consume(queue, inactivity_timeout=idle):
            if method is None:
                break
            out.append(Received(method.routing_key, properties, body))
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    finally:
        connection.close()
    return out


def sqlite_store(path: Path) -> Store:
    """A fresh store in a SQLite file, tables created directly (not through migrations)."""
    engine = create_engine(f"sqlite:///{path}")
    schema.metadata.create_all(engine)
    return Store(engine)


def queue_documents(store: Store, count: int, *, routing_key: str = "order.known",
                    per_transmission: int = 100, partner: str = "ACME") -> list[str]:
    """Record ``count`` order documents (received, then processed); returns their message ids."""
    ids: list[str] = []
    done = 0
    while done < count:
        n = min(per_transmission, count - done)
        raw = uuid.uuid4().bytes
        tid = store.record_received(channel="folder", channel_ref=None, filename="orders.edi",
                                    size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        docs = []
        for i in range(n):
            message_id = uuid.uuid4().hex
            number = f"PO-{done + i:06d}"
            payload = (f'{{"schema":"edigw.order/1","order_number":"{number}",'
                       f'"lines":[{{"gtin":"4012345000009","quantity":{i + 1}}}]}}').encode()
            docs.append(NewDocument(doc_type="order", schema_version="edigw.order/1",
                                    business_number=number, interchange_ref="IC1",
                                    message_ref=str(i + 1), message_id=message_id,
                                    payload=payload, routing_key=routing_key))
            ids.append(message_id)
        store.record_processed(tid, partner_id=partner, fmt="edifact", standard="EANCOM D96A",
                               docs=docs)
        done += n
    return ids
