"""A partner's state against the machine's RabbitMQ (no fakes): in test its sample order
reaches the test queue and the orders queue stays empty; set to live, its next order
reaches the orders queue; suspended, its file is held and published once it is live. On
SQLite and PostgreSQL (the checklist's and the release's queries)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pika
import pytest

from gateway.bus import OutboxPublisher, declare_topology
from gateway.bus.settings import BusSettings
from tests.integration.rabbit import delete_topology, drain, unique_settings
from tests.unit.test_onboarding import World

pytestmark = pytest.mark.integration


@pytest.fixture
def bus(rabbit_url: str) -> Iterator[BusSettings]:
    """Unique exchange, orders queue and test queue, deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    settings = replace(unique_settings(rabbit_url, tag=tag, bindings=("order.#",)),
                       test_queue=f"erp.test.test-{tag}")
    declare_topology(settings, outbound=None)  # never the shared edigw.outbound names
    yield settings
    connection = pika.BlockingConnection(pika.URLParameters(settings.url))
    try:
        connection.channel().queue_delete(settings.test_queue)
    finally:
        connection.close()
    delete_topology(settings)


@pytest.fixture
def world(tmp_path, store_url) -> Iterator[World]:
    """A partner in test on a SQLite, then a PostgreSQL store."""
    w = World(tmp_path, "test", store_url)
    yield w
    w.gw.close()


def _publish(world: World, settings: BusSettings) -> None:
    publisher = OutboxPublisher(world.gw.store, settings)
    publisher.start()
    try:
        publisher.wake()
        assert publisher.wait_idle(20), f"{world.gw.store.outbox_size()} still in the outbox"
    finally:
        publisher.stop(timeout=5)


def test_a_test_partners_order_reaches_the_test_queue_then_production_once_live(world, bus):
    orders = bus.queues[0][0]
    first = world.ingest()
    assert first.queued == 1, first.reason
    _publish(world, bus)
    tested = drain(bus.url, bus.test_queue)
    assert [m.routing_key for m in tested] == ["test.order.retail"]
    assert tested[0].properties.headers["partner"] == "retail"
    assert drain(bus.url, orders) == []

    # Its CONTRL went to its folder: the checklist is done, the promotion is not forced.
    world.admin.set_state("admin", "retail", "live", reason="recette signed")
    second = world.ingest()
    _publish(world, bus)
    published = drain(bus.url, orders)
    assert [m.routing_key for m in published] == ["order.retail"]
    assert drain(bus.url, bus.test_queue) == []
    assert world.gw.store.get_transmission(second.transmission_id).status == "PUBLISHED"


def test_a_suspended_partners_file_is_held_and_published_once_live(world, bus):
    world.admin.set_state("admin", "retail", "live", reason="go", force=True)
    world.admin.set_state("admin", "retail", "suspended", reason="unpaid invoices")
    held = world.ingest()
    _publish(world, bus)
    assert drain(bus.url, bus.queues[0][0], idle=0.5) == []
    assert world.gw.store.get_transmission(held.transmission_id).status == "QUARANTINED"

    shown = world.admin.set_state("admin", "retail", "live", reason="paid",
                                  release=world.release())
    assert shown["released"] == 1
    _publish(world, bus)
    (message,) = drain(bus.url, bus.queues[0][0])
    assert message.routing_key == "order.retail"
    assert drain(bus.url, bus.test_queue, idle=0.5) == []
