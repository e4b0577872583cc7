"""The folder channel takes complete files only and moves them only after receive."""

import os
import time

from gateway.channels.folder.watcher import FolderChannel, FolderSpec
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt


class FakeReceiver:
    def __init__(self, fail=False):
        self.items: list[Incoming] = []
        self.acked: list[str] = []
        self.fail = fail

    def receive_many(self, items):
        if self.fail:
            raise StoreError("store down")
        self.items += items
        return [Receipt(f"t{len(self.items) - len(items) + i}") for i in range(len(items))]

    def acknowledged(self, receipts, detail):
        self.acked += [r.transmission_id for r in receipts]


def make(tmp_path, receiver, **kw):
    spec = FolderSpec(path=tmp_path / "in", processed=tmp_path / "done", failed=tmp_path / "bad", **kw)
    spec.path.mkdir()
    got = []
    return spec, FolderChannel(spec, receiver=receiver, on_received=got.extend), got


def test_file_is_taken_on_the_second_look_and_moved_after_receive(tmp_path):
    """A file is taken only once its size and mtime were seen unchanged, then moved."""
    r = FakeReceiver()
    spec, ch, got = make(tmp_path, r)
    (spec.path / "order.edi").write_bytes(b"UNB'")
    assert ch.scan_once() == 0  # first look: only noted
    assert ch.scan_once() == 1
    assert r.items[0].filename == "order.edi" and r.items[0].data == b"UNB'"
    assert (spec.processed / "order.edi").exists()
    assert not (spec.path / "order.edi").exists()
    assert r.acked == ["t0"] and [x.transmission_id for x in got] == ["t0"]


def test_growing_file_is_not_taken(tmp_path):
    """A file whose size changes between two looks waits."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r)
    f = spec.path / "big.edi"
    f.write_bytes(b"UNB")
    ch.scan_once()
    with f.open("ab") as fh:
        fh.write(b"+more")
    assert ch.scan_once() == 0
    assert ch.scan_once() == 1
    assert r.items[0].data == b"UNB+more"


def test_temporary_names_are_ignored(tmp_path):
    """Hidden, .tmp and .part files are never taken."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r)
    for name in (".hidden", "x.tmp", "y.part", "~lock", "z.filepart"):
        (spec.path / name).write_bytes(b"data")
    ch.scan_once()
    assert ch.scan_once() == 0
    assert r.items == []


def test_FolderDoNotMoveFileIfReceiveFails(tmp_path):
    """When the store cannot record the payload, the file stays in the inbox."""
    r = FakeReceiver(fail=True)
    spec, ch, got = make(tmp_path, r)
    (spec.path / "order.edi").write_bytes(b"UNB'")
    ch.scan_once()
    assert ch.scan_once() == 0
    assert (spec.path / "order.edi").exists()
    assert ch.last_error and "store down" in ch.last_error
    assert got == []
    r.fail = False
    ch.scan_once()
    assert ch.scan_once() == 1


def test_oversize_file_goes_to_failed_with_its_reason(tmp_path):
    """A file over the size limit is moved to the failed folder with a reason file."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r, max_size=10)
    (spec.path / "huge.edi").write_bytes(b"x" * 11)
    ch.scan_once()
    ch.scan_once()
    assert (spec.failed / "huge.edi").exists()
    assert "over the 10-byte limit" in (spec.failed / "huge.edi.reason.txt").read_text()
    assert r.items == []


def test_name_clash_in_processed_folder_keeps_both(tmp_path):
    """A second file of the same name does not overwrite the first in processed/."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r)
    for content in (b"one", b"two"):
        (spec.path / "a.edi").write_bytes(content)
        old = time.time() - 10
        os.utime(spec.path / "a.edi", (old, old))
        ch.scan_once()
        ch.scan_once()
    assert sorted(p.name for p in spec.processed.iterdir()) == ["a.1.edi", "a.edi"]


def test_large_file_is_handed_over_as_a_path_not_read(tmp_path):
    """Above ``stream_above`` the channel passes the file's path so it is archived by
    streaming; the move still happens only after the receipt."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r, stream_above=10)
    (spec.path / "small.edi").write_bytes(b"UNB'")
    (spec.path / "big.edi").write_bytes(b"UNB+" + b"x" * 100)
    ch.scan_once()
    assert ch.scan_once() == 2
    big, small = r.items
    assert (big.filename, big.data, big.path) == ("big.edi", b"", spec.path / "big.edi")
    assert (small.data, small.path) == (b"UNB'", None)
    assert (spec.processed / "big.edi").exists()


def _run_until(ch, condition, timeout=5.0):
    """Run the channel's loop until ``condition()`` holds; returns the seconds it took."""
    import asyncio

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(ch.run(stop))
        start = time.monotonic()
        while not condition() and time.monotonic() - start < timeout:
            await asyncio.sleep(0.005)
        took = time.monotonic() - start
        stop.set()
        await task
        return took

    return asyncio.run(main())


def _linux_inotify():
    import sys

    return sys.platform.startswith("linux")


def test_a_file_renamed_into_the_inbox_is_taken_without_waiting_for_the_poll(tmp_path):
    """A file that arrives whole by a rename (inotify IN_MOVED_TO) is taken on the first look,
    woken by the event, long before a 2-second poll would have looked twice."""
    import threading

    import pytest

    if not _linux_inotify():
        pytest.skip("inotify is Linux only; elsewhere the two looks apply")
    r = FakeReceiver()
    spec, ch, got = make(tmp_path, r, poll_interval=2.0)
    staged = tmp_path / "order.edi"
    staged.write_bytes(b"UNB'")
    threading.Timer(0.3, os.rename, (staged, spec.path / "order.edi")).start()
    took = _run_until(ch, lambda: bool(got))
    assert [i.data for i in r.items] == [b"UNB'"] and (spec.processed / "order.edi").exists()
    assert took < 1.5


def test_a_file_written_in_place_still_waits_for_two_looks_under_inotify(tmp_path):
    """A file created and written in the inbox itself (no rename) is not complete on its
    first look: with a 1-second poll it is taken a poll after the writer closes it."""
    import threading

    import pytest

    if not _linux_inotify():
        pytest.skip("inotify is Linux only")
    r = FakeReceiver()
    spec, ch, got = make(tmp_path, r, poll_interval=1.0)
    looks = []
    scan = ch.scan_once

    def counted():
        looks.append(time.monotonic())
        return scan()

    ch.scan_once = counted

    def write():
        with (spec.path / "order.edi").open("wb") as fh:
            fh.write(b"UNB'")

    threading.Timer(0.2, write).start()
    _run_until(ch, lambda: bool(got))
    assert [i.data for i in r.items] == [b"UNB'"]
    assert len(looks) >= 3  # the start, the look woken by the close, the second look


def test_a_file_changed_after_its_rename_waits_for_two_looks(tmp_path):
    """IN_MOVED_TO then IN_MODIFY for the same name: no longer taken as complete; an
    overflowed event queue forgets every arrival."""
    import asyncio

    from gateway.channels.folder import watcher

    class Events:
        def __init__(self, events):
            self.events = events

        def read(self):
            return self.events

    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r)
    (spec.path / "a.edi").write_bytes(b"UNB")
    (spec.path / "b.edi").write_bytes(b"UNB")
    woken = asyncio.Event()
    ch._on_events(Events([(watcher._IN_MOVED_TO, "a.edi"), (watcher._IN_MOVED_TO, "b.edi"),
                          (watcher._IN_MODIFY, "a.edi")]), woken)
    assert woken.is_set() and ch._arrived == {"b.edi"}
    ch._on_events(Events(None), woken)
    assert ch._arrived == set()
    assert ch.scan_once() == 0
    assert ch.scan_once() == 2


def test_an_arrival_noted_by_inotify_is_complete_on_the_first_look(tmp_path):
    """scan_once takes a file noted as arrived by rename at once, and only once."""
    r = FakeReceiver()
    spec, ch, _ = make(tmp_path, r)
    (spec.path / "order.edi").write_bytes(b"UNB'")
    (spec.path / "other.edi").write_bytes(b"UNB'")
    ch._arrived = {"order.edi"}
    assert ch.scan_once() == 1
    assert [i.filename for i in r.items] == ["order.edi"]
    assert ch.scan_once() == 1  # the other one, on its second look


# -- a shared inbox: files claimed by one instance ----------------------------------------------

def shared(tmp_path, receiver, instance_id, live):
    spec = FolderSpec(path=tmp_path / "in", processed=tmp_path / "done", failed=tmp_path / "bad")
    spec.path.mkdir(exist_ok=True)
    return spec, FolderChannel(spec, receiver=receiver, on_received=lambda _: None,
                               instance_id=instance_id, live_instances=live)


def test_two_instances_on_one_inbox_take_each_file_once(tmp_path):
    import threading

    live = {"a", "b"}
    ra, rb = FakeReceiver(), FakeReceiver()
    spec, a = shared(tmp_path, ra, "a", lambda: live)
    _, b = shared(tmp_path, rb, "b", lambda: live)
    for n in range(300):
        (spec.path / f"o{n:03d}.edi").write_bytes(b"UNB'%d" % n)
    for ch in (a, b):
        ch.scan_once()  # first look: noted

    def drain(ch):
        for _ in range(5):
            ch.scan_once()

    threads = [threading.Thread(target=drain, args=(ch,)) for ch in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [i.filename for i in ra.items] + [i.filename for i in rb.items]
    assert sorted(names) == [f"o{n:03d}.edi" for n in range(300)], "each file received once"
    assert {i.channel_ref for i in ra.items} <= {str(spec.path / n) for n in names}, \
        "named by their inbox path, wherever claimed"
    assert len(os.listdir(spec.processed)) == 300
    assert [p for p in os.listdir(spec.path) if not p.startswith(".")] == []


def test_files_claimed_by_a_dead_instance_return_to_the_inbox(tmp_path):
    live = {"a", "b"}
    spec, a = shared(tmp_path, FakeReceiver(fail=True), "a", lambda: live)
    _, b = shared(tmp_path, FakeReceiver(), "b", lambda: live)
    (spec.path / "o1.edi").write_bytes(b"UNB'1")
    claimed = a._claim(spec.path / "o1.edi")  # a claims it, then dies before receiving
    assert claimed is not None and claimed.parent.name == "a"
    assert b.return_dead_claims() == 0, "a lives: its claims are its own"
    live.discard("a")
    assert b.return_dead_claims() == 1
    assert (spec.path / "o1.edi").read_bytes() == b"UNB'1"
    assert not (spec.path / ".claimed" / "a").exists()


def test_a_failed_receive_gives_the_claimed_files_back(tmp_path):
    r = FakeReceiver(fail=True)
    spec, a = shared(tmp_path, r, "a", lambda: {"a"})
    (spec.path / "o1.edi").write_bytes(b"UNB'1")
    a.scan_once()
    assert a.scan_once() == 0
    assert (spec.path / "o1.edi").exists(), "back in the inbox for the next look"
    assert not list((spec.path / ".claimed" / "a").iterdir())


def test_a_receive_that_breaks_off_gives_the_claimed_files_back(tmp_path):
    """Not only a store outage: whatever breaks the receive, the claimed files return to the
    inbox (a later look takes them), never stranded in the claim folder."""
    import pytest

    class Broken(FakeReceiver):
        def receive_many(self, items):
            raise RuntimeError("driver error")

    spec, a = shared(tmp_path, Broken(), "a", lambda: {"a"})
    (spec.path / "o1.edi").write_bytes(b"UNB'1")
    a.scan_once()
    with pytest.raises(RuntimeError):
        a.scan_once()
    assert (spec.path / "o1.edi").exists()
    # A file left in its own claim folder (a crash of the look itself) goes back too.
    (spec.path / ".claimed" / "a" / "o2.edi").write_bytes(b"UNB'2")
    a.receiver = FakeReceiver()
    a.scan_once()
    assert (spec.path / "o2.edi").exists() or (spec.processed / "o2.edi").exists()
    assert not list((spec.path / ".claimed" / "a").iterdir())
