"""A time limit for processing one payload, checked cooperatively.

A thread cannot be stopped from outside, so the code that may run long on a payload (a
reader's segment loop, a mapping over many lines, a streamed file) calls ``check()`` now and
then; past the limit it raises ``TimeLimitExceeded`` and that transmission fails alone, with
the others going on. ``check`` costs one call to ``time.monotonic`` when a limit is set, and
nothing else; outside ``limit()`` it does nothing.

    with deadline.limit(60.0, what="transmission 0190…"):
        reader.parse(data)            # calls deadline.check() every few thousand segments
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from gateway.core.errors import TimeLimitExceeded

_local = threading.local()


def check() -> None:
    """Raise ``TimeLimitExceeded`` when the current thread's limit has passed."""
    end = getattr(_local, "end", None)
    if end is not None and time.monotonic() > end:
        seconds = _local.seconds
        _local.end = None  # raised once: the handler's own work is not cut short
        raise TimeLimitExceeded(f"processing took longer than the {seconds:g}-second limit "
                                "([processing] time_limit)")


def remaining() -> float | None:
    """Seconds left under the current limit, None without one."""
    end = getattr(_local, "end", None)
    return None if end is None else max(0.0, end - time.monotonic())


@contextlib.contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Run the block under a limit of ``seconds`` (None or 0: no limit) for this thread."""
    previous = getattr(_local, "end", None), getattr(_local, "seconds", None)
    if seconds:
        _local.end = time.monotonic() + seconds
        _local.seconds = seconds
    else:
        _local.end = None
    try:
        yield
    finally:
        _local.end, _local.seconds = previous
