"""The gateway's clock. Everything that stamps or compares times asks ``now()``; tests that
play a scenario over days (the tracker's) set it with ``set_clock`` and move it on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current time, timezone-aware (UTC)."""
    return _now()


def set_clock(source: Callable[[], dt.datetime] | None) -> None:
    """Use ``source`` as the clock (``None``: the system clock again)."""
    global _now
    _now = source if source is not None else (lambda: dt.datetime.now(dt.UTC))


class FixedClock:
    """A clock a test sets and moves: ``clock = FixedClock(start); set_clock(clock)``."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware time")
        self.current = start

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> dt.datetime:
        self.current += dt.timedelta(**delta)
        return self.current

    def set(self, when: dt.datetime) -> dt.datetime:
        self.current = when
        return when
