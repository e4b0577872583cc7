"""Pause Python's cyclic garbage collector around work that allocates millions of objects.

Reading a file, processing a batch of transmissions or mapping a huge message allocates a few
container objects per segment, field and document, and makes no reference cycles. With the
collector running, each collection walks them again: about half the time of reading and a
fifth of processing (``bench/bench_spine.py``). Memory is not affected: reference counting
still frees everything.

When the pause ends, the objects made meanwhile would all be young, and the next allocation
would traverse them all once more. They are moved straight to the oldest generation instead,
with ``gc.freeze()`` followed at once by ``gc.unfreeze()`` (which puts the frozen objects
"back into the oldest generation"): nothing is left frozen, and a full collection still sees
everything. This is skipped when something else keeps objects frozen (a pre-fork
``gc.freeze()``), so as not to undo it.

One counted pause for the whole process: nested or concurrent pauses (a batch being
processed in one thread while a file is read in another) restore the collector only when
the last one ends, and only if it was enabled before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector paused for the ``with`` block (see the module docstring)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
