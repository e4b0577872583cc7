"""Fixtures for integration tests: the machine's RabbitMQ, isolated by unique names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.bus.connect import host_port
from gateway.bus.settings import BusSettings
from gateway.bus.topology import declare_topology
from gateway.store.db import Store
from tests.integration.rabbit import (
    RABBIT_URL,
    delete_topology,
    purge,
    sqlite_store,
    unique_settings,
)
from tests.services import require_service


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    """The AMQP URL of the test broker (skip, or fail in CI, when it is not there)."""
    require_service("RabbitMQ", *host_port(RABBIT_URL))
    return RABBIT_URL


@pytest.fixture(scope="session")
def bus_topology(rabbit_url: str) -> Iterator[BusSettings]:
    """An exchange, queue and dead-letter pair for this session, deleted at the end."""
    settings = unique_settings(rabbit_url)
    declare_topology(settings)
    yield settings
    delete_topology(settings)


@pytest.fixture
def bus_settings(bus_topology: BusSettings) -> BusSettings:
    """The session's topology with its queues emptied for this test."""
    purge(bus_topology)
    return bus_topology


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    """A migrated SQLite store in the test's folder, for the publisher tests."""
    store = sqlite_store(tmp_path / "edigw.sqlite3")
    yield store
    store.close()
