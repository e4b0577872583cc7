"""``StoreEngine.reading``: the reads of one answer share one connection."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from gateway.store.db import Store
from gateway.store.engine import one_connection


def _counted(store: Store) -> list[int]:
    checkouts: list[int] = []
    sa.event.listen(store.engine, "checkout", lambda *_: checkouts.append(1))
    return checkouts


def test_reads_inside_reading_share_one_checkout_and_nested_blocks_the_outer_one(
        tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 's.sqlite3'}")
    checkouts = _counted(store)
    with store.reading() as outer:
        for _ in range(3):
            with store.connect() as conn:
                assert conn is outer
                conn.execute(sa.text("SELECT 1"))
        with store.reading() as inner:
            assert inner is outer
        assert not outer.closed  # a nested block leaves the outer connection open
        assert store.get_transmission("nothing") is None
    assert outer.closed and len(checkouts) == 1
    with store.connect() as a, store.connect() as b:  # outside: one each
        assert a is not b
    assert len(checkouts) == 3
    store.close()


def test_another_thread_and_another_store_get_their_own_connection(tmp_path: Path) -> None:
    one = Store.from_url(f"sqlite:///{tmp_path / 'one.sqlite3'}")
    two = Store.from_url(f"sqlite:///{tmp_path / 'two.sqlite3'}")
    seen: list[sa.Connection] = []
    with one.reading() as pinned:
        with two.connect() as other:
            assert other is not pinned
        worker = threading.Thread(target=lambda: seen.append(one.connect().__enter__()))
        worker.start()
        worker.join()
        assert seen and seen[0] is not pinned
        seen[0].close()
    one.close()
    two.close()


def test_one_connection_wraps_a_read_and_keeps_its_name(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 's.sqlite3'}")
    checkouts = _counted(store)

    @one_connection
    def twice(s: Store, n: int) -> int:
        """Reads n twice."""
        for _ in range(2):
            with s.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        return n

    assert twice(store, 7) == 7 and len(checkouts) == 1
    assert twice.__name__ == "twice" and twice.__doc__ == "Reads n twice."
    store.close()
