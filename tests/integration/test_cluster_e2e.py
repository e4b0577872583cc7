"""The real thing: three ``edigw serve`` on one PostgreSQL store and one shared inbox, a
three-node RabbitMQ cluster with quorum queues, 3,000 files; one instance is killed with -9
and one broker node is stopped while they work.

Afterwards: every order is on ``erp.orders`` at least once (a repeat carries the same
message id), no file was received or processed twice, the outbox is empty, nothing is left
in the inbox, and the killed instance's leases were taken over.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import time

import pytest
import sqlalchemy as sa

from tests.integration.e2e import ACME_UNB, Workspace, order_file
from tests.integration.rabbit_cluster import start_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = 3000


def wait_for(condition, timeout: float, what: str, services) -> float:
    """Poll until ``condition``; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        for s in services:
            assert s.alive, f"an instance exited while waiting for {what}:\n{s.tail()}"
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n"
                                 + "\n".join(s.tail(20) for s in services))
        time.sleep(0.25)
    return time.monotonic() - start


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_three_instances_three_brokers_one_of_each_lost(tmp_path, store_url):
    cluster = start_or_skip(tmp_path / "rabbit", nodes=3)
    try:
        ws = Workspace.create(tmp_path / "gw", store_url, broker_urls=cluster.urls)
        with ws:
            ws.confirm_timeout = 5.0  # a node lost under a quorum leader: move on quickly
            ws.write_config()
            ws.add_partner("acme", *ACME_UNB)
            names = [f"order-{n:05d}.edi" for n in range(1, FILES + 1)]
            services = [ws.serve() for _ in range(3)]
            victim = services[0]
            wait_for(lambda: len(ws.store.list_instances()) == 3, 30, "three instances",
                     services)
            victim_id = next(i.id for i in ws.store.list_instances()
                             if i.pid == victim.proc.pid)
            for n, name in enumerate(names, 1):
                ws.drop(name, order_file(n))

            wait_for(lambda: ws.total() >= 600, 180, "600 transmissions", services)
            held = {lease.name for lease in ws.store.list_leases() if lease.holder == victim_id}
            victim.kill()
            killed_at = ws.counts()
            survivors = services[1:]

            wait_for(lambda: ws.total() >= 1500, 240, "1,500 transmissions", survivors)
            # The node every instance connected to first goes down while documents are
            # published: the publishers move to another node and publish again what was
            # not confirmed.
            cluster.stop(0)
            stopped_at = ws.counts()
            ws.bus = dataclasses.replace(ws.bus, url=cluster.urls[2], urls=())

            took = wait_for(lambda: ws.counts() == {"PUBLISHED": FILES}
                            and ws.store.outbox_size() == 0, 600,
                            f"{FILES} transmissions PUBLISHED", survivors)
            print(f"\nkilled {victim_id} (holding {sorted(held)}) at {killed_at}; "
                  f"broker node 0 stopped at {stopped_at}; all published {took:.0f} s later")

            # Every order at least once, each with one message id; nothing else.
            received = ws.consume(expected=FILES, timeout=60, idle=2.0)
            numbers = collections.Counter(json.loads(m.body)["order_number"] for m in received)
            ids: dict[str, set[str]] = collections.defaultdict(set)
            for m in received:
                ids[json.loads(m.body)["order_number"]].add(m.properties.message_id)
            assert len(numbers) == FILES, f"{FILES - len(numbers)} orders never reached the queue"
            assert all(len(v) == 1 for v in ids.values()), "a repeat with another message id"
            print(f"{len(received)} messages for {FILES} orders "
                  f"({len(received) - FILES} repeated, at least once)")

            # No file received twice, none processed twice.
            log = ws.log_json()
            per_file = collections.Counter(r["filename"] for r in log)
            assert sorted(per_file) == names
            assert max(per_file.values()) == 1, "a file was received twice"
            assert all(r["document_count"] == 1 for r in log), "a transmission processed twice"
            with ws.store.engine.connect() as conn:
                documents = dict(conn.execute(sa.text(
                    "SELECT status, count(*) FROM documents GROUP BY status")).all())
            assert documents == {"PUBLISHED": FILES}, documents
            assert not ws.inbox_files()
            assert ws.store.outbox_size() == 0
            by_instance = collections.Counter(t.claimed_by for t in ws.transmissions())
            print(f"transmissions by instance: {dict(by_instance)}")

            # The killed instance is dead and holds nothing; its leases are the survivors'.
            leases = ws.store.list_leases()
            assert all(lease.holder != victim_id for lease in leases)
            assert held <= {lease.name for lease in leases}
            now = dt.datetime.now(dt.UTC)
            assert victim_id not in {i.id for i in ws.store.list_instances() if i.alive(now)}
            # Each survivor's publisher lost node 0 and connected to another node.
            node0 = cluster.urls[0].rsplit("@", 1)[-1]
            for s in survivors:
                nodes = [str(e.get("node")) for e in s.events()
                         if e.get("event") == "broker_connected"]
                assert any(node0 not in n for n in nodes), f"never left node 0: {nodes}"
            for s in survivors:
                assert s.stop() == 0
    finally:
        cluster.close()
