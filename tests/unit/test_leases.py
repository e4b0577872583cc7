"""The lease keeper: loops run while their lease is held, stop when it is lost; a store
that cannot be reached makes it give its leases up before they may be another's."""

from __future__ import annotations

import asyncio

from gateway.core.errors import StoreError
from gateway.core.leases import LeaseKeeper


class FakeLeases:
    """Leases granted as the test says; the store may be 'down'."""

    def __init__(self) -> None:
        self.grant: set[str] = set()
        self.down = False
        self.beats = 0
        self.stopped: list[str] = []

    def instance_beat(self, instance_id: str) -> None:
        if self.down:
            raise StoreError("store unavailable")
        self.beats += 1

    def take_lease(self, name: str, holder: str, ttl: float) -> bool:
        return name in self.grant

    def instance_stopped(self, instance_id: str) -> None:
        self.stopped.append(instance_id)


async def test_a_leased_loop_runs_only_while_the_lease_is_held():
    store = FakeLeases()
    keeper = LeaseKeeper(store, "me", ttl=0.3, every=0.05)
    runs: list[str] = []

    async def poller(stop: asyncio.Event) -> None:
        runs.append("start")
        await stop.wait()
        runs.append("stop")

    stop = asyncio.Event()
    tasks = [asyncio.create_task(keeper.run(stop)),
             asyncio.create_task(keeper.leased("loop:sftp", poller)(stop))]
    await asyncio.sleep(0.2)
    assert runs == [] and store.beats >= 2, "not held: not started"
    store.grant.add("loop:sftp")
    await asyncio.sleep(0.2)
    assert runs == ["start"] and keeper.holds("loop:sftp")
    store.grant.clear()  # another instance has it now
    await asyncio.sleep(0.2)
    assert runs == ["start", "stop"]
    store.grant.add("loop:sftp")
    await asyncio.sleep(0.2)
    assert runs == ["start", "stop", "start"]
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert runs[-1] == "stop"


async def test_leases_are_given_up_when_the_store_is_away_for_their_lifetime():
    store = FakeLeases()
    store.grant.add("tracker")
    keeper = LeaseKeeper(store, "me", ttl=0.4, every=0.1)
    ran: list[int] = []
    keeper.want("tracker")

    def job() -> None:  # as deliver_outbound does
        if keeper.holds("tracker"):
            ran.append(1)
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    await asyncio.sleep(0.15)
    job()
    assert ran == [1]
    store.down = True
    await asyncio.sleep(0.1)
    assert keeper.holds("tracker"), "a short outage: still within the lease"
    await asyncio.sleep(0.5)
    assert not keeper.holds("tracker"), "past ttl - every without renewal: given up"
    assert keeper.last_error and "store unavailable" in keeper.last_error
    job()
    assert ran == [1], "a periodic job of a lease not held does nothing"
    store.down = False
    await asyncio.sleep(0.2)
    assert keeper.holds("tracker") and keeper.last_error is None
    stop.set()
    await asyncio.wait_for(task, 2)
    keeper.stopped()
    assert store.stopped == ["me"]


async def test_a_loop_that_returns_is_not_restarted_in_a_busy_loop():
    store = FakeLeases()
    store.grant.add("x")
    keeper = LeaseKeeper(store, "me", ttl=1.0, every=0.2)
    starts: list[int] = []

    async def quick(stop: asyncio.Event) -> None:
        starts.append(1)

    stop = asyncio.Event()
    tasks = [asyncio.create_task(keeper.run(stop)),
             asyncio.create_task(keeper.leased("x", quick)(stop))]
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert 1 <= len(starts) <= 4


async def test_a_store_that_hangs_makes_the_leases_run_out_too():
    """A round the store never answers (a half-open connection) counts as a failure: the
    leases are given up once they may have expired, without waiting for the round."""
    import threading

    store = FakeLeases()
    store.grant.add("tracker")
    release = threading.Event()
    keeper = LeaseKeeper(store, "me", ttl=0.4, every=0.1)
    keeper.want("tracker")
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    await asyncio.sleep(0.15)
    assert keeper.holds("tracker")
    store.instance_beat = lambda _id: release.wait(5)  # hangs until released
    await asyncio.sleep(0.6)
    assert not keeper.holds("tracker")
    assert "did not answer" in (keeper.last_error or "")
    release.set()
    await asyncio.sleep(0.3)
    assert keeper.holds("tracker"), "the store answers again: taken again"
    stop.set()
    await asyncio.wait_for(task, 2)
