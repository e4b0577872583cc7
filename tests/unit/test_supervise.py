"""Supervised work: a worker that raises is logged, restarted after a back-off, never stops."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.core.supervise import Backoff, periodic, supervised, supervised_thread


def test_backoff_doubles_and_is_capped() -> None:
    """The delays double from the initial one and never pass the cap; a reset starts over."""
    b = Backoff(0.5, 5.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert b.failures == 7
    b.reset()
    assert b.next() == 0.5


def test_backoff_rejects_a_cap_below_the_start() -> None:
    """A back-off that could never wait its initial delay is refused."""
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


async def test_failing_task_is_restarted_with_backoff_and_never_stops() -> None:
    """A task that raises five times is started again each time, waiting longer each time,
    and keeps running until stopped."""
    stop = asyncio.Event()
    starts: list[float] = []

    async def work() -> None:
        starts.append(time.monotonic())
        if len(starts) <= 5:
            raise RuntimeError(f"database down ({len(starts)})")
        await stop.wait()

    task = asyncio.create_task(supervised("flaky", work, stop=stop,
                                          backoff=Backoff(0.02, 0.08)))
    for _ in range(200):
        if len(starts) >= 6:
            break
        await asyncio.sleep(0.01)
    assert len(starts) == 6
    assert not task.done()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.02 and gaps[-1] >= 0.08 - 0.005
    assert max(gaps) < 0.5  # capped
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_task_returning_early_is_started_again() -> None:
    """A worker loop that returns while the gateway still runs is restarted too."""
    stop = asyncio.Event()
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            stop.set()

    await asyncio.wait_for(supervised("short", work, stop=stop, backoff=Backoff(0.01, 0.01)),
                           2.0)
    assert runs == 3


def test_failing_thread_is_restarted_until_stopped() -> None:
    """A thread whose work raises runs it again after the back-off, until stop is set."""
    stop = threading.Event()
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if len(calls) < 4:
            raise OSError("connection refused")
        stop.wait(5)

    thread = supervised_thread("flaky-thread", work, stop=stop, backoff=Backoff(0.01, 0.02))
    deadline = time.monotonic() + 3
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 4 and thread.is_alive()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()


async def test_periodic_job_retries_a_failure_before_its_period() -> None:
    """A periodic job that fails is tried again after the back-off, not a period later."""
    stop = asyncio.Event()
    calls: list[float] = []

    def job() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("store down")
        if len(calls) == 2:
            stop.set()

    await asyncio.wait_for(periodic("job", job, every=3600, stop=stop,
                                    backoff=Backoff(0.01, 0.01)), 2.0)
    assert len(calls) == 2


class _OutagePipeline:
    """A pipeline whose store is down for the first ``down`` calls of any kind."""

    def __init__(self, down: int, received: list[str]) -> None:
        self.down = down
        self.received = received  # what the store holds RECEIVED
        self.processed: list[str] = []
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.calls <= self.down:
            raise ConnectionError("could not connect to server: Connection refused")

    def process_many(self, tids: list[str]) -> list[Any]:
        self._call()
        self.processed += tids
        for t in tids:
            if t in self.received:
                self.received.remove(t)
        return []

    def resume(self) -> int:
        self._call()
        done = list(self.received)
        self.processed += done
        self.received.clear()
        return len(done)


async def test_store_outage_while_processing_does_not_end_processing() -> None:
    """The store fails while a batch is processed and again on the retry's resume(): the
    processing worker keeps going, processes the batch once the store is back, and every
    later transmission too (issue 13: it used to die without a word)."""
    received = ["t1"]
    pipeline = _OutagePipeline(down=3, received=received)
    gw = Gateway(settings=None, partners=None, store=None, archive=None,  # type: ignore[arg-type]
                 mappings=None, pipeline=pipeline)  # type: ignore[arg-type]
    queue: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    queue.put_nowait("t1")
    task = asyncio.create_task(gw._process_worker(queue, stop))
    for _ in range(100):
        if pipeline.calls > 3:
            break
        await asyncio.sleep(0.05)
    received.append("t2")
    queue.put_nowait("t2")
    for _ in range(200):
        if "t2" in pipeline.processed:
            break
        await asyncio.sleep(0.05)
    assert not task.done(), task.exception() if task.done() else None
    assert "t1" in pipeline.processed and "t2" in pipeline.processed
    assert received == []
    stop.set()
    await asyncio.wait_for(task, 3.0)


async def test_batch_interrupted_by_a_store_outage_is_processed_once_it_is_back() -> None:
    """The store fails twice while a batch is processed: the same batch is processed when
    it answers again, without going through resume() (which counts crash restarts)."""
    pipeline = _OutagePipeline(down=0, received=[])
    gw = Gateway(settings=None, partners=None, store=None, archive=None,  # type: ignore[arg-type]
                 mappings=None, pipeline=pipeline)  # type: ignore[arg-type]
    queue: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    task = asyncio.create_task(gw._process_worker(queue, stop))
    for _ in range(100):  # the start's resume() done
        if pipeline.calls:
            break
        await asyncio.sleep(0.02)
    pipeline.down = pipeline.calls + 2
    for tid in ("a", "b", "c"):
        queue.put_nowait(tid)
    for _ in range(200):
        if pipeline.processed == ["a", "b", "c"]:
            break
        await asyncio.sleep(0.05)
    assert pipeline.processed == ["a", "b", "c"] and pipeline.calls == 4
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 3.0)

def test_readyz_reports_stalled_processing_and_recovers(tmp_path: Path) -> None:
    """/readyz's processing check: a transmission RECEIVED past stalled_after while nothing
    was processed is a problem naming it; once processing moves, the check passes."""
    from gateway.config import GatewaySettings
    from gateway.core.clock import FixedClock, set_clock
    from gateway.store.db import Store

    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    clock = FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    set_clock(clock)
    try:
        tid = store.record_received(channel="folder", channel_ref="in/a.edi",
                                    filename="a.edi", size=3, sha256="0" * 64)
    finally:
        set_clock(None)
    gw = Gateway(settings=GatewaySettings(), partners=None, store=store,  # type: ignore[arg-type]
                 archive=None, mappings=None, pipeline=None)  # type: ignore[arg-type]
    checks = dict(gw.ready_checks())
    assert checks["processing"]() is None  # just started: processing had no time to stall
    gw.last_progress = time.monotonic() - gw.settings.processing.stalled_after - 10
    problem = checks["processing"]()
    assert problem is not None and tid in problem and "stalled" in problem
    gw.last_progress = time.monotonic()  # a batch was processed
    assert checks["processing"]() is None
    store.close()
