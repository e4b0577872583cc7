"""The outbox publisher's store thread: every outbox read and write, off pika's I/O thread.

The I/O thread only publishes and tracks confirms. It tells this thread what the broker
settled (:meth:`OutboxStoreThread.settle`, :meth:`~OutboxStoreThread.unroutable`,
:meth:`~OutboxStoreThread.failed`) and asks it for the next rows to publish
(:meth:`~OutboxStoreThread.request_rows`, answered through ``on_rows`` and
:meth:`~OutboxStoreThread.take_rows`). None of these calls waits for the store.

**Claims.** A row read for the I/O thread stays *claimed* until it is marked published or
unroutable, or until its connection ends (:meth:`~OutboxStoreThread.connection_lost`). Reads
exclude claimed rows, so a row is never on the wire twice on one connection. When a connection
ends every claim is dropped except for rows the broker settled and that still wait to be
marked; the next connection publishes the others again with the same ``message_id``
(at-least-once). A row is marked published only after the broker acked it.

**Coalescing.** Acked ids accumulate and are marked published in one transaction, at most
``flush_interval`` s after the first of them arrived, or at once when ``flush_max`` wait. While
a transaction runs (SQLite may also wait for the pipeline's write lock) new acks simply pile
up for the next one.

**Two threads.** Reads run on a thread of their own, so that the next rows never wait behind
a mark transaction (which waits for the pipeline's commits on SQLite: reads queued behind
marks left the I/O thread idle for 100 ms at a time, publishing at half the broker's rate).
Both threads are named ``edigw-publisher-store``. Reads take no write lock (SQLite's WAL
lets them run beside a write); a read's exclusion list is taken before its query, and a row
marked meanwhile is gone from the outbox when the mark's commit is done. After a connection
loss the first read is made by the marking thread, after the marks that wait, as before:
its exclusion list is then short, and marks never run in two transactions at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from structlog.typing import FilteringBoundLogger

from gateway.store.db import Store
from gateway.store.records import OutboxItem

STORE_RETRY = 1.0  # seconds before a failed mark is tried again


@dataclass(frozen=True, slots=True)
class Rows:
    """The answer to one :meth:`OutboxStoreThread.request_rows` (no rows and ``more`` False
    when the store failed: it was logged, and the publisher asks again at its next poll)."""

    items: list[OutboxItem]
    more: bool  # the read was full: more rows may be waiting


@dataclass(slots=True)
class _Work:
    """What the thread does in one round, taken from the shared state under the lock."""

    failures: list[tuple[list[int], str]] = field(default_factory=list)
    unroutable: list[tuple[int, str]] = field(default_factory=list)
    read: tuple[int, int] | None = None  # (generation, limit)
    marks: list[int] = field(default_factory=list)
    marks_first: bool = False  # mark before reading, so that the read's exclusion list is short

    def __bool__(self) -> bool:
        return bool(self.failures or self.unroutable or self.read or self.marks)


class OutboxStoreThread:
    """Owns the publisher's store calls and the set of claimed outbox rows.

    Every public method is thread-safe and returns at once. ``on_rows`` is called on this
    thread after each read; it should get the I/O thread to call :meth:`take_rows`.
    ``on_error`` receives a short description of each failed store call.
    """

    def __init__(self, store: Store, *, log: FilteringBoundLogger, on_rows: Callable[[], None],
                 on_error: Callable[[str], None], flush_interval: float = 0.025,
                 flush_max: int = 1000) -> None:
        self._store = store
        self._log = log
        self._on_rows = on_rows
        self._on_error = on_error
        self._flush_interval = flush_interval
        self._flush_max = flush_max
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        # Shared state, guarded by _cond.
        self._stopping = False
        self._generation = 0  # connections ended so far; a read for an older one is void
        self._claimed: set[int] = set()
        self._to_mark: list[int] = []
        self._mark_due: float | None = None  # monotonic time by which _to_mark is flushed
        self._unroutable: list[tuple[int, str]] = []
        self._unroutable_due = 0.0
        self._failures: list[tuple[list[int], str]] = []
        self._read: tuple[int, int] | None = None
        self._released = False  # claims were dropped since the last read
        self._marking: set[int] = set()  # ids in a mark transaction right now
        self._rows: list[Rows] = []
        # Health (written by this thread, read by anyone).
        self.published = 0
        self.unroutable_count = 0
        self.last_success: dt.datetime | None = None

    # -- API (any thread) -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edigw-publisher-store",
                                        daemon=True)
        self._reader = threading.Thread(target=self._run_reads, name="edigw-publisher-store",
                                        daemon=True)
        self._thread.start()
        self._reader.start()

    def stop(self, timeout: float) -> None:
        """Mark everything settled so far (one attempt each), then end the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._reader, self._thread):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None and self._thread.is_alive():
            self._log.warning("publisher_store_stop_timeout", timeout=timeout,
                              waiting=self.pending)

    @property
    def pending(self) -> int:
        """Settled rows not yet marked in the store (waiting or in a transaction)."""
        with self._cond:
            return len(self._to_mark) + len(self._unroutable) + len(self._marking)

    def request_rows(self, limit: int) -> None:
        """Read up to ``limit`` unclaimed rows, oldest first; ``on_rows`` follows."""
        with self._cond:
            self._read = (self._generation, limit)
            self._cond.notify_all()

    def take_rows(self) -> list[Rows]:
        """The answers to reads for the current connection, not yet taken."""
        with self._cond:
            rows, self._rows = self._rows, []
            return rows

    def settle(self, outbox_ids: list[int]) -> None:
        """The broker acked these rows: mark them published (soon, in a batch)."""
        if not outbox_ids:
            return
        with self._cond:
            self._to_mark.extend(outbox_ids)
            now = time.monotonic()
            if self._mark_due is None:
                self._mark_due = now + self._flush_interval
                self._cond.notify_all()
            elif len(self._to_mark) >= self._flush_max and self._mark_due > now:
                self._mark_due = now
                self._cond.notify_all()

    def unroutable(self, outbox_id: int, reason: str) -> None:
        """The broker returned this row before acking it: mark it unroutable."""
        with self._cond:
            self._unroutable.append((outbox_id, reason))
            self._cond.notify_all()

    def failed(self, outbox_ids: list[int], reason: str) -> None:
        """Count a failed attempt for rows the I/O thread keeps (claimed) to publish again."""
        if outbox_ids:
            with self._cond:
                self._failures.append((list(outbox_ids), reason))
                self._cond.notify_all()

    def connection_lost(self, unconfirmed: list[int], reason: str) -> None:
        """The connection ended: count ``unconfirmed`` as failed attempts and drop every claim
        except rows waiting to be marked, so that the next connection reads the rest again."""
        with self._cond:
            self._generation += 1
            self._read = None
            self._rows = []
            if unconfirmed:
                self._failures.append((list(unconfirmed), reason))
            keep = set(self._to_mark) | self._marking | {i for i, _ in self._unroutable}
            self._released = len(keep) < len(self._claimed)
            self._claimed &= keep
            self._cond.notify_all()

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        """The marking thread: failures, unroutable rows and coalesced marks."""
        while True:
            with self._cond:
                work = self._wait_for_work()
            if work is None:
                return
            self._safely(work)

    def _run_reads(self) -> None:
        """The reading thread: one read at a time, as the I/O thread asks."""
        while True:
            with self._cond:
                work = self._wait_for_read()
            if work is None:
                return
            self._safely(work)

    def _safely(self, work: _Work) -> None:
        try:
            self._do(work)
        except Exception as exc:  # a bug must not end the thread: the publisher needs it
            self._log.exception("publisher_error", error=str(exc))

    def _wait_for_work(self) -> _Work | None:
        while True:
            now = time.monotonic()
            work = self._take(now)
            if work:
                return work
            if self._stopping:
                return None
            dues = [self._mark_due] if self._to_mark and self._mark_due is not None else []
            if self._unroutable:
                dues.append(self._unroutable_due)
            self._cond.wait(max(0.0, min(dues) - now) if dues else None)

    def _wait_for_read(self) -> _Work | None:
        while True:
            if self._stopping:
                return None
            if self._read is not None and not self._released:  # else: ``_take`` reads
                work = _Work()
                work.read, self._read = self._read, None
                return work
            self._cond.wait()

    def _take(self, now: float) -> _Work:
        work = _Work()
        work.failures, self._failures = self._failures, []
        if self._unroutable and (self._stopping or now >= self._unroutable_due):
            work.unroutable, self._unroutable = self._unroutable, []
        if self._read is not None and self._released and not self._stopping:
            # The first read after a connection loss: after the marks (see the module).
            work.read, self._read = self._read, None
            work.marks_first = True
        due = self._mark_due is not None and now >= self._mark_due
        if self._to_mark and (self._stopping or due or work.marks_first):
            work.marks, self._to_mark, self._mark_due = self._to_mark, [], None
        self._marking.update(work.marks)
        self._marking.update(i for i, _ in work.unroutable)
        return work

    def _do(self, work: _Work) -> None:
        for outbox_ids, reason in work.failures:
            self._call(self._store.record_publish_failure, outbox_ids, reason)
        for outbox_id, reason in work.unroutable:
            self._mark_unroutable(outbox_id, reason)
        if work.marks and work.marks_first:
            self._mark_published(work.marks)
        if work.read is not None:
            self._read_rows(*work.read)
        if work.marks and not work.marks_first:
            self._mark_published(work.marks)

    def _read_rows(self, generation: int, limit: int) -> None:
        with self._cond:
            exclude = set(self._claimed)
        items = self._call(self._store.pending_outbox, limit, exclude=exclude)
        with self._cond:
            if generation != self._generation:
                return  # the connection that asked is gone; nothing was claimed
            if items is None:
                self._rows.append(Rows([], more=False))
            else:
                fresh = [item for item in items if item.outbox_id not in self._claimed]
                self._claimed.update(item.outbox_id for item in fresh)
                self._released = False
                self._rows.append(Rows(fresh, more=len(items) >= limit))
        self._on_rows()

    def _mark_published(self, outbox_ids: list[int]) -> None:
        ok = self._call(self._store.mark_published, outbox_ids) is not None
        with self._cond:
            if ok:
                self.published += len(outbox_ids)
                self.last_success = dt.datetime.now(dt.UTC)
                self._claimed.difference_update(outbox_ids)
            elif self._stopping:  # give up: the rows stay in the outbox and go out again
                self._claimed.difference_update(outbox_ids)
            else:
                self._to_mark[:0] = outbox_ids
                self._mark_due = time.monotonic() + STORE_RETRY
            self._marking.difference_update(outbox_ids)
        if ok:
            self._log.info("documents_published", count=len(outbox_ids))

    def _mark_unroutable(self, outbox_id: int, reason: str) -> None:
        ok = self._call(self._store.mark_unroutable, outbox_id, reason) is not None
        with self._cond:
            if ok:
                self.unroutable_count += 1
                self._claimed.discard(outbox_id)
            elif self._stopping:
                self._claimed.discard(outbox_id)
            else:
                self._unroutable.insert(0, (outbox_id, reason))
                self._unroutable_due = time.monotonic() + STORE_RETRY
            self._marking.discard(outbox_id)
        if ok:
            self._log.warning("document_unroutable", outbox_id=outbox_id, reason=reason)

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the store; on failure log it and return None, else the result (or True)."""
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            self._on_error(f"store: {exc}")
            self._log.error("store_error", operation=function.__name__, error=str(exc))
            return None
        return True if result is None else result
