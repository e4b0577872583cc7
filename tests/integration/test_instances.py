"""Several ``edigw serve`` on one PostgreSQL store and one shared inbox: no double work.

Each file of the shared inbox is claimed by one instance (an atomic rename), each
transmission processed by the instance that claimed it, each outbox row published by one
(``SKIP LOCKED``); work that runs once (the tracker, outbound delivery …) is held by one
instance at a time through a lease, and taken over when its holder dies. On SQLite a second
instance refuses to start.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import time

import pytest

from tests.integration.e2e import ACME_UNB, Workspace, order_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

postgres_only = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def wait_for(condition, timeout: float, what: str, services) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for s in services:
            assert s.alive, f"an instance exited while waiting for {what}:\n{s.tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n"
                                 + "\n".join(s.tail(15) for s in services))
        time.sleep(0.2)


def check_everything_once(ws: Workspace, names: list[str], received) -> None:
    """One transmission per file, one order per file, every order on the queue."""
    log = ws.log_json()
    per_file = collections.Counter(r["filename"] for r in log)
    twice = [n for n, c in per_file.items() if c > 1]
    assert not twice, f"{len(twice)} files received twice: {twice[:5]}"
    assert sorted(per_file) == sorted(names)
    assert all(r["status"] == "PUBLISHED" for r in log), collections.Counter(
        r["status"] for r in log)
    numbers = collections.Counter(json.loads(m.body)["order_number"] for m in received)
    assert len(numbers) == len(names), f"{len(numbers)} distinct orders for {len(names)} files"
    ids = {m.properties.message_id for m in received}
    assert len(ids) == len(names)
    assert not ws.inbox_files()
    assert ws.store.outbox_size() == 0


@postgres_only
def test_two_instances_share_one_inbox_and_store_without_double_work(tmp_path, store_url,
                                                                     rabbit_url):
    """300 one-order files into one inbox watched by two instances on one PostgreSQL
    database: 300 transmissions, 300 distinct orders, 300 messages, the inbox empty; both
    instances worked, and each lease is held by one of them."""
    files = 300
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.add_partner("acme", *ACME_UNB)
        names = [f"order-{n:05d}.edi" for n in range(1, files + 1)]
        first, second = ws.serve(), ws.serve()
        for n, name in enumerate(names, 1):
            ws.drop(name, order_file(n))
        wait_for(lambda: ws.counts() == {"PUBLISHED": files} and ws.store.outbox_size() == 0,
                 120, f"{files} transmissions PUBLISHED", [first, second])
        received = ws.consume(expected=files, timeout=30, idle=1.0)
        assert len(received) == files, f"{len(received)} messages for {files} orders"
        check_everything_once(ws, names, received)

        instances = {i.id: i for i in ws.store.list_instances()}
        assert len(instances) == 2
        by_instance = collections.Counter(t.claimed_by for t in ws.transmissions())
        print(f"\ntwo instances: transmissions by instance {dict(by_instance)}")
        assert set(by_instance) <= set(instances)
        leases = ws.store.list_leases()
        assert {lease.name for lease in leases} >= {"outbound", "tracker", "retention"}
        assert {lease.holder for lease in leases} <= set(instances)

        status = ws.cli("instances").stdout
        for instance_id in instances:
            assert instance_id in status
        assert first.stop() == 0 and second.stop() == 0
        assert not ws.store.list_instances(), "a cleanly stopped instance is not shown live"
        assert not ws.store.list_leases(), "a cleanly stopped instance gives its leases up"


@postgres_only
def test_killed_instance_work_and_leases_are_taken_over(tmp_path, store_url, rabbit_url):
    """Two instances, 1,000 files; one is killed with -9 half-way: the other takes its
    claimed files, its RECEIVED transmissions and its leases, and every order goes out,
    each file received once."""
    files = 1000
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.add_partner("acme", *ACME_UNB)
        names = [f"order-{n:05d}.edi" for n in range(1, files + 1)]
        victim = ws.serve()
        wait_for(lambda: len(ws.store.list_leases()) >= 3, 30, "the first instance's leases",
                 [victim])
        survivor = ws.serve()
        victim_id = next(i.id for i in ws.store.list_instances() if i.pid == victim.proc.pid)
        for n, name in enumerate(names, 1):
            ws.drop(name, order_file(n))
        wait_for(lambda: ws.total() >= 300, 120, "300 transmissions", [victim, survivor])
        held = {lease.name for lease in ws.store.list_leases() if lease.holder == victim_id}
        victim.kill()
        killed_at = time.monotonic()
        print(f"\nkilled {victim_id} at {ws.counts()}, holding {sorted(held)}")

        # Its leases are the survivor's within ttl + renewal (15 + 5 s), plus a round.
        wait_for(lambda: {lease.name for lease in ws.store.list_leases()
                          if lease.holder != victim_id} >= held,
                 40, "the victim's leases taken over", [survivor])
        took = time.monotonic() - killed_at
        print(f"victim's leases taken over {took:.1f} s after the kill")
        assert took < 25

        wait_for(lambda: ws.counts() == {"PUBLISHED": files} and ws.store.outbox_size() == 0,
                 240, f"{files} transmissions PUBLISHED after the kill", [survivor])
        received = ws.consume(expected=files, timeout=30, idle=1.0)
        check_everything_once_or_repeated(ws, names, received)
        alive = [i.id for i in ws.store.list_instances()
                 if i.alive(dt.datetime.now(dt.UTC))]
        assert victim_id not in alive
        assert survivor.stop() == 0


def check_everything_once_or_repeated(ws: Workspace, names: list[str], received) -> None:
    """After a kill: one transmission per file; every order on the queue at least once
    (a message confirmed but not yet marked published goes again, same message id)."""
    log = ws.log_json()
    per_file = collections.Counter(r["filename"] for r in log)
    twice = [n for n, c in per_file.items() if c > 1]
    assert not twice, f"{len(twice)} files received twice: {twice[:5]}"
    assert sorted(per_file) == sorted(names)
    numbers = collections.Counter(json.loads(m.body)["order_number"] for m in received)
    assert len(numbers) == len(names), f"{len(numbers)} distinct orders for {len(names)} files"
    by_id: dict[str, set[str]] = collections.defaultdict(set)
    for m in received:
        by_id[json.loads(m.body)["order_number"]].add(m.properties.message_id)
    assert all(len(ids) == 1 for ids in by_id.values()), "a repeat with another message id"
    repeats = len(received) - len(names)
    print(f"{len(received)} messages for {len(names)} orders ({repeats} repeated)")
    assert not ws.inbox_files()
    assert ws.store.outbox_size() == 0


@sqlite_only
def test_a_second_instance_on_one_sqlite_file_refuses_to_start(tmp_path, store_url, rabbit_url):
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        first = ws.serve()
        second = ws.serve(wait_started=False)
        second.proc.wait(30)
        assert second.proc.returncode == 1
        assert "another edigw serve already uses this SQLite store" in second.output()
        assert first.alive
        assert first.stop() == 0
