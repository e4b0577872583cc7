"""The publisher's store thread (claims, coalesced marks, stop), with a fake store, no broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import pytest
import structlog

from gateway.bus.store_thread import OutboxStoreThread
from gateway.store.db import OutboxItem


def _item(outbox_id: int) -> OutboxItem:
    return OutboxItem(outbox_id=outbox_id, document_id=f"doc-{outbox_id}", transmission_id="t",
                      partner_id="ACME", doc_type="order", schema_version="edigw.order/1",
                      message_id=f"m-{outbox_id}", routing_key="order.x", body=b"{}", attempts=0)


class FakeStore:
    """An outbox of ids 1..n; records every call and the thread it ran on."""

    def __init__(self, n: int) -> None:
        self.outbox = set(range(1, n + 1))
        self.calls: list[tuple[str, object]] = []
        self.threads: set[str] = set()
        self.fail_marks = 0  # the next N mark_published calls raise
        self.lock = threading.Lock()

    def _record(self, name: str, arg: object) -> None:
        with self.lock:
            self.calls.append((name, arg))
            self.threads.add(threading.current_thread().name)

    def pending_outbox(self, limit: int, *, exclude: Iterable[int] = ()) -> list[OutboxItem]:
        excluded = set(exclude)
        self._record("pending_outbox", sorted(excluded))
        return [_item(i) for i in sorted(self.outbox - excluded)[:limit]]

    def mark_published(self, outbox_ids: Sequence[int]) -> None:
        self._record("mark_published", list(outbox_ids))
        if self.fail_marks:
            self.fail_marks -= 1
            raise RuntimeError("database is locked")
        self.outbox.difference_update(outbox_ids)

    def mark_unroutable(self, outbox_id: int, reason: str) -> None:
        self._record("mark_unroutable", (outbox_id, reason))
        self.outbox.discard(outbox_id)

    def record_publish_failure(self, outbox_ids: Sequence[int], error: str) -> None:
        self._record("record_publish_failure", (list(outbox_ids), error))

    def named(self, name: str) -> list[object]:
        with self.lock:
            return [arg for call, arg in self.calls if call == name]


class Harness:
    def __init__(self, store: FakeStore, **kwargs: object) -> None:
        self.answered = threading.Semaphore(0)
        self.errors: list[str] = []
        log = structlog.wrap_logger(structlog.testing.CapturingLogger())
        self.thread = OutboxStoreThread(store, log=log, on_rows=self.answered.release,
                                        on_error=self.errors.append, **kwargs)

    def read(self, limit: int) -> list[int]:
        self.thread.request_rows(limit)
        assert self.answered.acquire(timeout=5)
        (rows,) = self.thread.take_rows()
        return [item.outbox_id for item in rows.items]


def _until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(10)


@pytest.fixture
def harness(store) -> Iterator[Harness]:
    harness = Harness(store, flush_interval=0.05)
    harness.thread.start()
    yield harness
    harness.thread.stop(5)


def test_reads_skip_claimed_rows_and_run_on_the_store_thread(store, harness):
    """A row handed out is not handed out again while it is claimed."""
    assert harness.read(4) == [1, 2, 3, 4]
    assert harness.read(4) == [5, 6, 7, 8]
    assert store.named("pending_outbox")[-1] == [1, 2, 3, 4]
    assert store.threads == {"edigw-publisher-store"}


def test_acks_are_marked_in_one_coalesced_batch(store, harness):
    """Acks that arrive within the flush interval become one mark_published call."""
    harness.read(6)
    for outbox_id in (1, 2, 3):
        harness.thread.settle([outbox_id])
    assert harness.thread.pending == 3
    assert _until(lambda: harness.thread.pending == 0)
    assert store.named("mark_published") == [[1, 2, 3]]
    assert harness.thread.published == 3 and harness.thread.last_success is not None
    assert harness.read(10) == [7, 8, 9, 10], "marked rows are gone, the others still claimed"


def test_flush_max_marks_without_waiting_for_the_interval(store):
    harness = Harness(store, flush_interval=60.0, flush_max=3)
    harness.thread.start()
    try:
        harness.read(5)
        harness.thread.settle([1, 2])
        time.sleep(0.1)
        assert store.named("mark_published") == []
        harness.thread.settle([3])
        assert _until(lambda: store.named("mark_published") == [[1, 2, 3]])
    finally:
        harness.thread.stop(5)


def test_stop_marks_what_was_settled_before_returning(store):
    """stop() flushes pending marks even when their interval has not run out."""
    harness = Harness(store, flush_interval=60.0)
    harness.thread.start()
    harness.read(5)
    harness.thread.settle([1, 2])
    harness.thread.unroutable(3, "NO_ROUTE")
    harness.thread.stop(5)
    assert store.named("mark_published") == [[1, 2]]
    assert store.named("mark_unroutable") == [(3, "NO_ROUTE")]
    assert harness.thread.pending == 0
    assert harness.thread.published == 2 and harness.thread.unroutable_count == 1


def test_failed_mark_is_retried_and_rows_stay_claimed(store, harness, monkeypatch):
    """A store error keeps the acked rows claimed (not republished) and marks them later."""
    monkeypatch.setattr("gateway.bus.store_thread.STORE_RETRY", 0.05)
    harness.read(3)
    store.fail_marks = 1
    harness.thread.settle([1, 2])
    assert _until(lambda: len(store.named("mark_published")) == 1)
    assert harness.errors and "database is locked" in harness.errors[0]
    assert harness.thread.pending == 2
    assert harness.read(10) == [4, 5, 6, 7, 8, 9, 10]
    assert _until(lambda: harness.thread.pending == 0)
    assert store.named("mark_published") == [[1, 2], [1, 2]]
    assert harness.thread.published == 2


def test_connection_lost_releases_unconfirmed_rows_but_not_acked_ones(store):
    """After a lost connection unconfirmed rows are read again; acked ones are only marked."""
    harness = Harness(store, flush_interval=60.0)
    harness.thread.start()
    try:
        assert harness.read(5) == [1, 2, 3, 4, 5]
        harness.thread.settle([1, 2])  # acked, not yet marked
        harness.thread.connection_lost([3, 4], "connection reset")
        # The first read after the loss marks what was acked first.
        assert harness.read(10) == [3, 4, 5, 6, 7, 8, 9, 10]
        assert store.named("mark_published") == [[1, 2]]
        assert store.named("record_publish_failure") == [([3, 4], "connection reset")]
    finally:
        harness.thread.stop(5)


def test_answer_for_an_ended_connection_is_dropped(store):
    """A read still running when its connection ends claims nothing and is never taken."""
    entered, gate = threading.Event(), threading.Event()
    original = store.pending_outbox

    def slow(limit: int, *, exclude: Iterable[int] = ()) -> list[OutboxItem]:
        entered.set()
        gate.wait(5)
        return original(limit, exclude=exclude)

    store.pending_outbox = slow  # type: ignore[method-assign]
    harness = Harness(store)
    harness.thread.start()
    try:
        harness.thread.request_rows(5)
        assert entered.wait(5)
        harness.thread.connection_lost([], "gone")
        gate.set()
        assert not harness.answered.acquire(timeout=0.3)
        assert harness.thread.take_rows() == []
        store.pending_outbox = original  # type: ignore[method-assign]
        assert harness.read(3) == [1, 2, 3]
    finally:
        harness.thread.stop(5)


def test_nacked_rows_stay_claimed_while_their_attempt_is_recorded(store, harness):
    harness.read(3)
    harness.thread.failed([2], "refused by the broker (basic.nack)")
    assert _until(lambda: store.named("record_publish_failure") != [])
    assert harness.read(10) == [4, 5, 6, 7, 8, 9, 10]


def test_a_read_is_answered_while_a_mark_waits_for_the_store(store):
    """The next rows do not wait behind a slow mark transaction (SQLite's write lock held by
    the pipeline): reads have a thread of their own; the mark completes afterwards."""
    entered, gate = threading.Event(), threading.Event()
    original = store.mark_published

    def slow(outbox_ids: Sequence[int]) -> None:
        entered.set()
        gate.wait(5)
        original(outbox_ids)

    store.mark_published = slow  # type: ignore[method-assign]
    harness = Harness(store, flush_interval=0.0)
    harness.thread.start()
    try:
        assert harness.read(3) == [1, 2, 3]
        harness.thread.settle([1, 2, 3])
        assert entered.wait(5)
        assert harness.read(3) == [4, 5, 6]  # while the mark is still blocked
        gate.set()
        assert _until(lambda: harness.thread.pending == 0)
        assert store.named("mark_published") == [[1, 2, 3]] and store.outbox.isdisjoint({1, 2, 3})
        assert store.threads == {"edigw-publisher-store"}
    finally:
        gate.set()
        harness.thread.stop(5)
