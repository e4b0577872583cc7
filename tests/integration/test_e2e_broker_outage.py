"""End to end: a running ``edigw serve`` rides out a RabbitMQ outage with its outbox.

The service reaches RabbitMQ through a ``TcpProxy``; cutting the proxy is the outage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from gateway.bus.connect import host_port
from tests.integration.e2e import ACME_UNB, Workspace, order_file
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

FILES = 100


@pytest.fixture
def proxy(rabbit_url) -> Iterator[TcpProxy]:
    with TcpProxy(*host_port(rabbit_url)) as proxy:
        yield proxy


@pytest.mark.slow
def test_orders_wait_in_the_outbox_during_a_broker_outage_and_all_arrive_after(tmp_path, store_url, proxy):
    """With the broker cut, 100 dropped orders are PROCESSED into the outbox (as `edigw status` shows); once it is back every one arrives on the queue and the transmissions are PUBLISHED."""
    root = tmp_path / "gw"
    with Workspace.create(root, store_url,
                          broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F") as ws:
        ws.add_partner("acme", *ACME_UNB)
        service = ws.serve()
        # A first order published end to end: the publisher is connected and in confirm mode
        # (a cut while it declares the topology would be a different story).
        ws.drop("order-0000.edi", order_file(0))
        service.wait_until(lambda: ws.counts() == {"PUBLISHED": 1}, 30, "first order published")
        assert [json.loads(m.body)["order_number"] for m in ws.consume(expected=1)] == ["PO-000000"]
        proxy.cut()
        service.wait_for_log("broker_connection_lost", 20)

        for n in range(1, FILES + 1):
            ws.drop(f"order-{n:04d}.edi", order_file(n))
        service.wait_until(lambda: ws.counts().get("PROCESSED") == FILES, 60,
                           f"{FILES} transmissions PROCESSED")
        time.sleep(1.0)  # several reconnect attempts (retry 0.1 s .. 1 s) while cut
        assert ws.counts() == {"PROCESSED": FILES, "PUBLISHED": 1}
        assert ws.store.outbox_size() == FILES
        assert ws.status() == {"PROCESSED": FILES, "PUBLISHED": 1, "outbox": FILES}
        assert ws.queue_depth() == 0
        assert not ws.inbox_files(), "files are moved once received, broker or not"
        events = [e["event"] for e in service.events()]
        assert events.count("broker_connection_lost") == 1
        assert events.count("broker_unreachable") <= 1, "an outage is reported once, not per retry"

        proxy.restore()
        service.wait_until(lambda: ws.counts() == {"PUBLISHED": FILES + 1}
                           and ws.store.outbox_size() == 0, 60, "every transmission PUBLISHED")
        received = ws.consume(expected=FILES, timeout=30)
        message_ids = {m.properties.message_id for m in received}
        assert len(message_ids) == FILES, f"{len(message_ids)} distinct message ids"
        assert {json.loads(m.body)["order_number"] for m in received} == {
            f"PO-{n:06d}" for n in range(1, FILES + 1)}
        print(f"broker outage e2e: {len(received)} messages for {FILES} documents")
        assert ws.status() == {"PUBLISHED": FILES + 1, "outbox": 0}
        assert service.alive
        assert service.stop() == 0
