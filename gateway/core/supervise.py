"""Supervised work: no worker loop of ``serve`` dies from an exception.

Every long-running loop (processing, publishing, events, the acknowledgement consumer, the
pollers, the outbound sender, the tracker) runs under one of these helpers. An exception is
logged with its traceback and the work starts again after a back-off; only ``stop`` ends it.
A store or broker outage therefore pauses work, never ends it: it resumes by itself within
one back-off (capped, 5 s by default) of the outage's end.

- :class:`Backoff`: the delays between attempts (tenacity's exponential wait, capped).
- :func:`supervised`: an asyncio worker, restarted after each failure.
- :func:`supervised_thread`: the same for a worker on a thread of its own.
- :func:`periodic`: a blocking job run every ``every`` s; a failed run is tried again after
  the back-off rather than a whole period later.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import wait_exponential

log = structlog.get_logger("edigw.supervise")

#: A worker that ran this long (s) before failing counts as having recovered: its next
#: back-off starts again from the initial delay.
HEALTHY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The part of tenacity's ``RetryCallState`` its wait functions read."""

    attempt_number: int


class Backoff:
    """Delays between attempts: ``initial`` s, doubling, never above ``maximum`` s."""

    def __init__(self, initial: float = 0.5, maximum: float = 5.0) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"back-off needs 0 < initial <= maximum, not {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self._wait = wait_exponential(multiplier=initial, min=initial, max=maximum)
        self.failures = 0  # attempts failed in a row

    def next(self) -> float:
        """Count one more failure; the delay (s) to wait before the next attempt."""
        self.failures += 1
        return self.delay(self.failures)

    def delay(self, failures: int) -> float:
        """The delay (s) after ``failures`` failures in a row (0 for none)."""
        if failures <= 0:
            return 0.0
        return float(self._wait(_Attempt(failures)))  # type: ignore[arg-type]

    def reset(self) -> None:
        """The work succeeded: the next failure waits ``initial`` s again."""
        self.failures = 0


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def supervised(name: str, work: Callable[[], Awaitable[Any]], *, stop: asyncio.Event,
                     backoff: Backoff | None = None) -> None:
    """Run ``work()`` until ``stop`` is set, starting it again after the back-off whenever it
    raises (logged with the traceback) or returns early."""
    backoff = backoff or Backoff()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - started > HEALTHY_AFTER:
                backoff.reset()
            delay = backoff.next()
            log.exception("worker_failed", worker=name, error=_error(exc),
                          failures=backoff.failures, retry_in=round(delay, 2))
        else:
            if stop.is_set():
                return
            delay = backoff.next()
            log.warning("worker_ended", worker=name, retry_in=round(delay, 2))
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass


def supervised_thread(name: str, work: Callable[[], Any], *, stop: threading.Event,
                      backoff: Backoff | None = None, quiet_return: bool = False,
                      start: bool = True) -> threading.Thread:
    """A daemon thread running ``work()`` until ``stop`` is set, started again after the
    back-off whenever it raises (logged with the traceback) or returns. ``quiet_return``:
    a return is expected (one connection served) and not logged."""
    backoff = backoff or Backoff()

    def run() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                work()
            except Exception as exc:
                if time.monotonic() - started > HEALTHY_AFTER:
                    backoff.reset()
                delay = backoff.next()
                log.exception("worker_failed", worker=name, error=_error(exc),
                              failures=backoff.failures, retry_in=round(delay, 2))
            else:
                if stop.is_set():
                    return
                delay = backoff.next()
                if not quiet_return:
                    log.warning("worker_ended", worker=name, retry_in=round(delay, 2))
            stop.wait(delay)

    thread = threading.Thread(target=run, name=name, daemon=True)
    if start:
        thread.start()
    return thread


async def periodic(name: str, job: Callable[[], Any], *, every: float, stop: asyncio.Event,
                   backoff: Backoff | None = None,
                   after: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Run the blocking ``job`` (on a worker thread) now and then every ``every`` s, and the
    coroutine ``after()`` once it succeeded; a failure is logged and tried again after the
    back-off."""
    if backoff is None:
        first = min(0.5, every)
        backoff = Backoff(first, max(first, min(every, 60.0)))
    while not stop.is_set():
        try:
            await asyncio.to_thread(job)
            if after is not None:
                await after()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = backoff.next()
            log.exception("periodic_job_failed", job=name, error=_error(exc),
                          failures=backoff.failures, retry_in=round(delay, 2))
        else:
            backoff.reset()
            delay = every
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass


def periodic_loop(name: str, job: Callable[[], Any], every: float
                  ) -> Callable[[asyncio.Event], Awaitable[None]]:
    """``periodic`` as a loop taking its stop event (to run it under a lease)."""
    async def run(stop: asyncio.Event) -> None:
        await periodic(name, job, every=every, stop=stop)
    return run
