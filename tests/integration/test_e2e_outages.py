"""End to end: ``edigw serve`` outlives a database outage, notices a silent broker partition,
and refuses to share its SQLite store with a second gateway (issue 13, "trust").

Outages are played by a ``TcpProxy`` between the gateway and its server (PostgreSQL or
RabbitMQ): the shared servers other tests use are never stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pika
import pytest

from gateway.bus.connect import host_port
from gateway.bus.events import EventPublisher
from tests.integration.e2e import ACME_UNB, Service, Workspace, order_file
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

ORDERS = 2000
OUTAGE = 20.0  # s


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Tap:
    """A queue of the test's own bound to the workspace's exchange: what the broker got."""

    def __init__(self, ws: Workspace) -> None:
        self.url = ws.bus.url
        self.name = f"e2e-tap-{uuid.uuid4().hex[:8]}"
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            channel = connection.channel()
            channel.queue_declare(self.name, durable=True)
            channel.queue_bind(self.name, ws.bus.exchange, "order.#")

    def depth(self) -> int:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            return connection.channel().queue_declare(self.name, passive=True).method.message_count

    def message_ids(self) -> list[str]:
        ids: list[str] = []
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            channel = connection.channel()
            while True:
                method, properties, _body = channel.basic_get(self.name, auto_ack=True)
                if method is None:
                    return ids
                ids.append(properties.message_id)

    def delete(self) -> None:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            connection.channel().queue_delete(self.name)


@pytest.fixture
def rabbit_proxy(rabbit_url: str) -> Iterator[TcpProxy]:
    with TcpProxy(*host_port(rabbit_url)) as proxy:
        yield proxy


def _readyz(service: Service) -> httpx.Response:
    return httpx.get(service.http_url + "/readyz", timeout=10)


# -- (a) a database outage in the middle of a run ------------------------------------------

@pytest.mark.slow
def test_processing_resumes_by_itself_after_a_20s_database_outage(tmp_path, pg_database):
    """PostgreSQL unreachable for 20 s in the middle of 2,000 orders: processing resumes by
    itself within 30 s of its return, nothing is left RECEIVED, and all 2,000 orders reach
    the broker (counted on a queue of the test's own)."""
    parts = urlsplit(pg_database)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as pg, \
            Workspace.create(tmp_path / "gw", pg_database) as ws:
        ws.store  # noqa: B018 - migrated directly; the test's own reads never go through the proxy
        ws.store_url = _via(pg_database, pg.port)
        ws.write_config()
        ws.add_partner("acme", *ACME_UNB)
        tap = _Tap(ws)
        try:
            service = ws.serve()
            for n in range(ORDERS):
                ws.drop(f"order-{n:05d}.edi", order_file(n))

            def done() -> int:
                c = ws.counts()
                return sum(v for k, v in c.items() if k != "RECEIVED")

            service.wait_until(lambda: done() >= 300, 180, "300 orders processed")
            pg.cut()
            cut_at = time.monotonic()
            time.sleep(OUTAGE)
            before = done()
            pg.restore()
            back_at = time.monotonic()
            service.wait_until(lambda: done() > before, 30,
                               "processing moving again within 30 s of the database's return")
            resumed_after = time.monotonic() - back_at
            service.wait_until(lambda: ws.counts() == {"PUBLISHED": ORDERS}, 600,
                               f"all {ORDERS} orders PUBLISHED")
            service.wait_until(lambda: tap.depth() >= ORDERS, 60, "every order on the tap")
            ids = tap.message_ids()
            print(f"database outage e2e: cut {back_at - cut_at:.1f} s with {before} of "
                  f"{ORDERS} done; processing resumed {resumed_after:.1f} s after the return")
            assert len(ids) == ORDERS and len(set(ids)) == ORDERS
            assert ws.counts().get("RECEIVED", 0) == 0
            assert not ws.inbox_files()
            assert service.alive
            # The outage hit the processing worker, which was restarted rather than lost.
            assert any(e.get("event") == "worker_failed" and e.get("worker") == "process"
                       for e in service.events())
            assert service.stop() == 0
        finally:
            tap.delete()


# -- (b) a silent broker partition ----------------------------------------------------------

def test_silent_broker_partition_makes_readyz_fail_within_two_heartbeats(tmp_path, rabbit_proxy):
    """The network to RabbitMQ goes silent (nothing closed, nothing through): /readyz answers
    503 within about two heartbeat intervals (2 s here), naming the broker; it is ready
    again once the partition heals."""
    heartbeat = 2
    with Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}",
                          broker_url=_via("amqp://guest:guest@127.0.0.1/%2F",
                                          rabbit_proxy.port)) as ws:
        ws.heartbeat = heartbeat
        ws.write_config()
        ws.add_partner("acme", *ACME_UNB)
        service = ws.serve()
        service.wait_until(lambda: _readyz(service).status_code == 200, 30, "ready")
        time.sleep(3 * heartbeat)  # idle: heartbeats alone keep every connection alive
        assert _readyz(service).status_code == 200, _readyz(service).json()

        rabbit_proxy.freeze()
        frozen_at = time.monotonic()
        service.wait_until(lambda: _readyz(service).status_code == 503, 4 * heartbeat + 4,
                           "/readyz 503 after the partition")
        noticed = time.monotonic() - frozen_at
        checks = _readyz(service).json()["checks"]
        print(f"partition noticed by /readyz after {noticed:.1f} s (heartbeat {heartbeat} s)")
        assert noticed <= 2 * heartbeat + 2.5
        assert "silent" in checks["broker"] or checks["broker"].startswith("not connected")
        assert checks["store"] == "ok"

        rabbit_proxy.thaw()
        service.wait_until(lambda: _readyz(service).status_code == 200, 60,
                           "ready again after the partition")
        ws.drop("after.edi", order_file(1))
        service.wait_until(lambda: ws.counts() == {"PUBLISHED": 1}, 30, "published after")
        assert service.stop() == 0


def test_idle_events_connection_keeps_its_heartbeats(rabbit_url, store):
    """The events thread, idle between rounds, services its connection: with a 1 s
    heartbeat the broker keeps it (it used to drop it after missed heartbeats), and the
    broker is heard from all along."""
    exchange = f"edi.events.hb-{uuid.uuid4().hex[:8]}"
    events = EventPublisher(store, rabbit_url, exchange, every=30.0, heartbeat=1)
    events.start()
    try:
        deadline = time.monotonic() + 10
        while not events.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events.connected
        first = events._connection
        samples = []
        for _ in range(12):  # 6 s: several heartbeat timeouts
            time.sleep(0.5)
            samples.append(events.silent_for())
        assert events.connected and events._connection is first and first.is_open
        assert events.last_error is None
        assert all(s is not None and s < 2.0 for s in samples), samples
    finally:
        events.stop()
        with pika.BlockingConnection(pika.URLParameters(rabbit_url)) as connection:
            connection.channel().exchange_delete(exchange)


# -- (c) one gateway per SQLite store --------------------------------------------------------

def test_second_serve_on_the_same_sqlite_store_is_refused_naming_the_first(tmp_path):
    """A second ``edigw serve`` on the same SQLite file and inbox exits non-zero at once,
    naming the first one's PID; the first goes on and processes each file once."""
    with Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}") as ws:
        ws.add_partner("acme", *ACME_UNB)
        first = ws.serve()
        assert first.proc is not None
        second = Service(ws)
        second.start()
        assert second.proc is not None
        code = second.proc.wait(60)
        second._log.close()
        out = second.output()
        assert code == 1, out
        assert f"PID {first.proc.pid}" in out and "already uses this SQLite store" in out
        assert "Traceback" not in out
        for n in range(20):
            ws.drop(f"order-{n:03d}.edi", order_file(n))
        first.wait_until(lambda: ws.counts() == {"PUBLISHED": 20}, 60, "20 orders published")
        assert len(ws.consume(expected=20)) == 20
        assert first.alive
        assert first.stop() == 0
