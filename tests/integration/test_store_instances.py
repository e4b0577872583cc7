"""Instances, leases and claims in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid

import pytest

from gateway.core import clock
from gateway.store.db import Store
from gateway.store.instances import DEAD_AFTER
from tests.integration.rabbit import queue_documents

pytestmark = pytest.mark.integration


@pytest.fixture
def moment():
    """A clock the test moves on (leases and heartbeats age with it)."""
    fixed = clock.FixedClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(None)


def instance(url: str, name: str) -> Store:
    """One store handle per instance, as each ``serve`` has."""
    store = Store.from_url(url)
    store.register_instance(name, host="test", pid=1, version=None)
    store.instance_id = name
    return store


def received(store: Store, n: int) -> list[str]:
    out = []
    for _ in range(n):
        raw = uuid.uuid4().bytes
        out.append(store.record_received(channel="folder", channel_ref=None, filename="x.edi",
                                         size=len(raw), sha256=hashlib.sha256(raw).hexdigest()))
    return out


def test_a_lease_has_one_holder_until_it_expires(store_url, moment):
    a, b = instance(store_url, "a"), instance(store_url, "b")
    assert a.take_lease("tracker", "a", ttl=15)
    assert not b.take_lease("tracker", "b", ttl=15)
    moment.advance(seconds=10)
    assert a.take_lease("tracker", "a", ttl=15)  # renewed: until 25 s
    moment.advance(seconds=10)
    assert not b.take_lease("tracker", "b", ttl=15)
    moment.advance(seconds=6)  # a stopped renewing: expired
    assert b.take_lease("tracker", "b", ttl=15)
    assert not a.take_lease("tracker", "a", ttl=15), "the old holder lost it"
    assert [(x.name, x.holder) for x in a.list_leases()] == [("tracker", "b")]
    b.release_leases("b")
    assert a.take_lease("tracker", "a", ttl=15)


def test_a_stopped_instance_frees_its_leases_at_once(store_url, moment):
    a, b = instance(store_url, "a"), instance(store_url, "b")
    assert a.take_lease("sftp:acme", "a", ttl=15)
    a.instance_stopped("a")
    assert b.take_lease("sftp:acme", "b", ttl=15)
    assert [i.id for i in b.list_instances()] == ["b"]
    assert {i.id for i in b.list_instances(stopped=True)} == {"a", "b"}


def test_received_transmissions_are_left_to_their_live_instance_then_taken_over(store_url, moment):
    a, b = instance(store_url, "a"), instance(store_url, "b")
    mine = received(a, 3)
    assert {a.get_transmission(t).claimed_by for t in mine} == {"a"}
    assert b.claim_received(limit=10) == [], "a lives: its work is its own"
    assert [t.id for t in a.claim_received(limit=10)] == mine, "its own, after a restart of the loop"
    moment.advance(seconds=DEAD_AFTER - 1)
    b.instance_beat("b")
    assert b.claim_received(limit=10, since=clock.now()) == []
    moment.advance(seconds=2)  # a's heartbeat is now too old: dead
    b.instance_beat("b")
    taken = b.claim_received(limit=10, since=clock.now() - dt.timedelta(seconds=60))
    assert sorted(t.id for t in taken) == sorted(mine)
    assert {b.get_transmission(t).claimed_by for t in mine} == {"b"}
    assert a.claim_received(limit=10) == [], "taken over: no longer a's"


def test_unclaimed_transmissions_wait_for_their_age_in_a_sweep(store_url, moment):
    cli = Store.from_url(store_url)  # edigw ingest: no instance
    (tid,) = received(cli, 1)
    b = instance(store_url, "b")
    assert b.claim_received(limit=10, since=clock.now() - dt.timedelta(seconds=60)) == []
    moment.advance(seconds=61)
    b.instance_beat("b")
    assert [t.id for t in b.claim_received(limit=10, since=clock.now() - dt.timedelta(seconds=60))] == [tid]


def test_outbox_rows_are_claimed_by_one_instance(store_url, moment):
    a, b = instance(store_url, "a"), instance(store_url, "b")
    queue_documents(a, 10, per_transmission=5)
    got_a = a.pending_outbox(6)
    got_b = b.pending_outbox(100)
    assert len(got_a) == 6 and len(got_b) == 4
    assert not {x.outbox_id for x in got_a} & {x.outbox_id for x in got_b}
    assert a.pending_outbox(100, exclude=[x.outbox_id for x in got_a]) == []
    moment.advance(seconds=DEAD_AFTER + 1)  # a dies; b lives
    b.instance_beat("b")
    again = b.pending_outbox(100, exclude=[x.outbox_id for x in got_b])
    assert sorted(x.outbox_id for x in again) == sorted(x.outbox_id for x in got_a)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_concurrent_claims_never_overlap(store_url):
    """Four instances claim 400 unclaimed transmissions at once (SKIP LOCKED): each is
    claimed by exactly one."""
    cli = Store.from_url(store_url)
    tids = received(cli, 400)
    stores = [instance(store_url, f"i{n}") for n in range(4)]
    claims: dict[str, list[str]] = {s.instance_id: [] for s in stores}
    start = threading.Barrier(len(stores))

    def work(store: Store) -> None:
        start.wait()
        while rows := store.claim_received(limit=16):
            claims[store.instance_id] += [r.id for r in rows]
            for r in rows:  # done with (as processing would be): no longer RECEIVED
                store.record_failed(r.id, stage="test", reason="claimed")

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    every = [tid for ids in claims.values() for tid in ids]
    assert sorted(every) == sorted(tids), "each claimed once, none forgotten"
    print({k: len(v) for k, v in claims.items()})
