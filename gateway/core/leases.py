"""One instance at a time: the heartbeat of a ``serve`` and the leases it holds.

Several ``edigw serve`` may share one store. Work every instance may do at once (a shared
inbox folder whose files are claimed by rename, the processing of what each one received,
HTTP) runs everywhere; work that must run once (each SFTP poller, each mailbox, the tracker,
retention, AS2 MDN delivery, the certificate check, outbound delivery) runs under a lease.

``LeaseKeeper.run`` beats this instance's heartbeat and takes or renews every lease asked
for, every ``every`` seconds; a lease lasts ``ttl`` seconds. A loop under ``leased`` starts
when its lease is taken and is stopped when it is lost; a job done now and then asks ``holds``. When
the store cannot be reached, the leases held are given up (their loops stopped) once they
may have expired, so that two instances never believe they hold the same one. When a holder
dies, another instance takes its leases within ``ttl + every`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger("edigw.leases")

Loop = Callable[[asyncio.Event], Awaitable[Any]]


class LeaseStore(Protocol):
    """What the keeper needs of the store (``gateway.store.instances``)."""

    def instance_beat(self, instance_id: str) -> None: ...

    def take_lease(self, name: str, holder: str, ttl: float) -> bool: ...

    def instance_stopped(self, instance_id: str) -> None: ...


class LeaseKeeper:
    """The heartbeat and leases of one instance."""

    def __init__(self, store: LeaseStore, instance_id: str, *, ttl: float = 15.0,
                 every: float = 5.0) -> None:
        if not 0 < every < ttl:
            raise ValueError("leases: every must be positive and below ttl")
        self.store = store
        self.instance_id = instance_id
        self.ttl = ttl
        self.every = every
        self.wanted: set[str] = set()
        self.held: set[str] = set()
        #: When each held lease was last taken or renewed (monotonic seconds).
        self._renewed: dict[str, float] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.last_beat: float | None = None  # monotonic, for status
        self.last_error: str | None = None

    def want(self, name: str) -> None:
        """Ask for ``name`` from the next round on."""
        self.wanted.add(name)

    def holds(self, name: str) -> bool:
        """Whether this instance holds ``name`` now (asking for it if it did not)."""
        self.wanted.add(name)
        return name in self.held

    def _event(self, name: str) -> asyncio.Event:
        return self._changed.setdefault(name, asyncio.Event())

    def _set_held(self, name: str, held: bool) -> None:
        if held == (name in self.held):
            return
        if held:
            self.held.add(name)
            log.info("lease_taken", lease=name, instance=self.instance_id)
        else:
            self.held.discard(name)
            self._renewed.pop(name, None)
            log.warning("lease_lost", lease=name, instance=self.instance_id)
        self._event(name).set()

    def round(self) -> dict[str, float | None]:
        """One heartbeat and one look at every lease wanted (blocking: a worker thread).
        Returns, for each lease, when it was taken or renewed (monotonic), or None when
        another instance holds it; ``apply`` (on the event loop) acts on it."""
        self.store.instance_beat(self.instance_id)
        self.last_beat = time.monotonic()
        taken: dict[str, float | None] = {}
        for name in sorted(self.wanted):
            held = self.store.take_lease(name, self.instance_id, self.ttl)
            taken[name] = time.monotonic() if held else None
        return taken

    def apply(self, taken: dict[str, float | None]) -> None:
        """Start using the leases taken, stop using those another instance holds."""
        for name, at in taken.items():
            if at is not None:
                self._renewed[name] = at
            self._set_held(name, at is not None)

    def _expire(self) -> None:
        """The store did not answer: leases not renewed for ``ttl - every`` seconds may
        already be another instance's; stop using them."""
        now = time.monotonic()
        for name in list(self.held):
            if now - self._renewed.get(name, 0.0) > self.ttl - self.every:
                self._set_held(name, False)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the heartbeat and leases until ``stop``; then give the leases up."""
        pending: asyncio.Future[dict[str, float | None]] | None = None  # not answered yet
        while not stop.is_set():
            started = time.monotonic()
            if pending is None:
                pending = asyncio.ensure_future(asyncio.to_thread(self.round))
            done, _ = await asyncio.wait({pending}, timeout=self.every)
            if pending in done:
                round_, pending = pending, None
                exc = round_.exception()
                if exc is None:
                    self.last_error = None
                    self.apply(round_.result())
                    self._expire()  # a round that answered late: what ran out meanwhile
                else:  # a store outage: leases run out, never crash
                    self._failed(str(exc) or type(exc).__name__)
            else:  # the store hangs: the round goes on, the leases run out meanwhile
                self._failed(f"the store did not answer within {self.every:g} s")
            try:
                await asyncio.wait_for(stop.wait(),
                                       timeout=max(0.0, self.every - (time.monotonic() - started)))
            except TimeoutError:
                pass
        for name in list(self.held):
            self._set_held(name, False)

    def _failed(self, error: str) -> None:
        self.last_error = error
        log.warning("heartbeat_failed", instance=self.instance_id, error=error)
        self._expire()

    def stopped(self) -> None:
        """A clean stop: this instance is dead at once, its leases free (blocking)."""
        try:
            self.store.instance_stopped(self.instance_id)
        except Exception as exc:  # the others take over after ``ttl`` instead
            log.warning("instance_stop_not_recorded", instance=self.instance_id, error=str(exc))

    def leased(self, name: str, loop: Loop) -> Loop:
        """``loop`` run only while this instance holds the lease ``name``: started when it is
        taken, stopped (its stop event set) when it is lost or when ``stop`` is set."""
        self.want(name)

        async def run(stop: asyncio.Event) -> None:
            changed = self._event(name)
            while not stop.is_set():
                if name not in self.held:
                    changed.clear()
                    await _first(stop, changed)
                    continue
                inner = asyncio.Event()
                task = asyncio.ensure_future(loop(inner))
                while not stop.is_set() and name in self.held and not task.done():
                    changed.clear()
                    await _first(stop, changed, task)
                ended = task.done()
                inner.set()
                await task  # an exception goes to the supervisor, which starts us again
                if ended and not stop.is_set():  # it returned by itself: not at once again
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=self.every)
                    except TimeoutError:
                        pass
        return run


async def _first(*waits: asyncio.Event | asyncio.Future[Any]) -> None:
    """Wait until one of the events is set or the future is done."""
    futures = [asyncio.ensure_future(w.wait()) if isinstance(w, asyncio.Event) else w
               for w in waits]
    own = [f for f, w in zip(futures, waits, strict=True) if isinstance(w, asyncio.Event)]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in own:
            f.cancel()

