"""Folder channel: takes complete files from an inbox folder.

A file is taken only when it is complete: its name is not a temporary one (``*.tmp``,
``.*``, ``*.part`` …) and its size and modification time did not change between two looks.
Writers that follow the convention those ignored names serve (write under a temporary name,
rename when done) need no second look: on Linux, ``run`` watches the inbox with inotify, and a
file seen to arrive by a rename (``IN_MOVED_TO``), with no write, close or attribute change
after it, is complete on the first look. The events also wake the channel at once instead of
at the next poll. Without inotify (another system, a watch limit reached, an overflowed event
queue) every file waits for its second look, as before.
Only after the durable receive is the file moved to the processed folder; when receive
itself fails (the file cannot be read, or is over the size limit) it goes to the failed
folder. A crash between receive and move leaves the file in the inbox: the next look
recognises it and only finishes the move.
"""

from __future__ import annotations

import asyncio
import ctypes
import fnmatch
import os
import shutil
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt, Receiver

log = structlog.get_logger("edigw.channels.folder")


@dataclass(frozen=True, slots=True)
class FolderSpec:
    """One inbox folder and where its files go afterwards."""

    path: Path
    processed: Path
    failed: Path
    partner: str | None = None
    poll_interval: float = 0.2
    ignore: tuple[str, ...] = (".*", "~*", "*.tmp", "*.part", "*.partial", "*.filepart")
    max_size: int = 200 * 1024 * 1024
    batch: int = 256
    #: Files larger than this are archived by streaming from the inbox, never read whole.
    stream_above: int = 16 * 1024 * 1024


class FolderChannel:
    """Polls one inbox folder and hands complete files to a ``Receiver``."""

    name = "folder"

    def __init__(self, spec: FolderSpec, *, receiver: Receiver,
                 on_received: Callable[[list[Receipt]], None]) -> None:
        self.spec = spec
        self.receiver = receiver
        self.on_received = on_received
        self._seen: dict[str, tuple[int, int]] = {}
        #: Names seen (by inotify) to arrive by a rename and not touched since: complete.
        self._arrived: set[str] = set()
        self._arrived_lock = threading.Lock()
        self.last_error: str | None = None
        self.taken = 0

    def scan_once(self) -> int:
        """One look at the folder: receive and move every file found complete; returns count."""
        spec = self.spec
        spec.path.mkdir(parents=True, exist_ok=True)
        ready: list[Path] = []
        current: dict[str, tuple[int, int]] = {}
        try:
            entries = list(os.scandir(spec.path))
        except OSError as exc:
            self.last_error = f"cannot list {spec.path}: {exc.strerror}"
            log.error("inbox_unreadable", inbox=str(spec.path), error=exc.strerror)
            return 0
        with self._arrived_lock:
            arrived, self._arrived = self._arrived, set()
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False) or self._ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            current[entry.name] = sig
            if self._seen.get(entry.name) == sig or entry.name in arrived:
                ready.append(Path(entry.path))
        self._seen = current
        taken = 0
        for start in range(0, len(ready), spec.batch):
            taken += self._take(ready[start:start + spec.batch])
        return taken

    def _ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pat) for pat in self.spec.ignore)

    def _take(self, paths: list[Path]) -> int:
        items: list[Incoming] = []
        kept: list[Path] = []
        for path in paths:
            try:
                size = path.stat().st_size
                if size > self.spec.max_size:
                    self._refuse(path, f"{size} bytes, over the {self.spec.max_size}-byte limit")
                    continue
                data = path.read_bytes() if size <= self.spec.stream_above else b""
            except FileNotFoundError:
                continue  # taken away by someone else between two looks
            except OSError as exc:
                self._refuse(path, f"cannot read: {exc.strerror}")
                continue
            items.append(Incoming(data=data, channel=self.name, channel_ref=str(path),
                                  filename=path.name, partner_hint=self.spec.partner,
                                  path=path if size > self.spec.stream_above else None))
            kept.append(path)
        if not items:
            return 0
        try:
            ack = receive_then_acknowledge(
                self.receiver, items, lambda receipts: self._move_all(kept, receipts),
                self.on_received)
        except StoreError as exc:
            # Nothing is lost: the files stay in the inbox and are taken at the next look.
            self.last_error = str(exc)
            log.error("receive_failed", inbox=str(self.spec.path), error=str(exc),
                      files=len(items))
            for p in kept:
                self._seen.pop(p.name, None)
            return 0
        self.taken += len(ack.acknowledged)
        self.last_error = None
        return len(ack.acknowledged)

    def _move_all(self, paths: list[Path], receipts: list[Receipt]) -> Acknowledgement[None]:
        """The acknowledgement: each received file moved to the processed folder (a file
        that cannot be moved stays, and is recognised at the next look)."""
        moved: list[Receipt] = []
        self.spec.processed.mkdir(parents=True, exist_ok=True)
        for path, receipt in zip(paths, receipts, strict=True):
            try:
                _move(path, self.spec.processed)
                moved.append(receipt)
            except OSError as exc:
                log.error("move_failed", file=path.name, error=exc.strerror,
                          transmission_id=receipt.transmission_id)
        if moved:
            for folder in (self.spec.processed, self.spec.path):
                _fsync_dir(folder)  # the moves themselves survive a crash
        return Acknowledgement(acknowledged=moved, detail=f"moved to {self.spec.processed}",
                               process=moved)

    def _refuse(self, path: Path, reason: str) -> None:
        log.error("file_refused", file=path.name, inbox=str(self.spec.path), reason=reason)
        try:
            self.spec.failed.mkdir(parents=True, exist_ok=True)
            _move(path, self.spec.failed)
            (self.spec.failed / (path.name + ".reason.txt")).write_text(reason + "\n")
        except OSError as exc:
            log.error("move_failed", file=path.name, error=exc.strerror)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; the blocking work runs in a worker thread. Inbox
        events (inotify, where there is one) wake the channel before the poll is due."""
        log.info("folder_channel_started", inbox=str(self.spec.path), partner=self.spec.partner)
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        self.spec.path.mkdir(parents=True, exist_ok=True)
        watch = _InboxWatch.open(self.spec.path)
        if watch is not None:
            loop.add_reader(watch.fd, self._on_events, watch, woken)
        try:
            while not stop.is_set():
                woken.clear()
                try:
                    n = await asyncio.to_thread(self.scan_once)
                except Exception as exc:  # never let one bad look stop the channel
                    self.last_error = repr(exc)
                    log.exception("folder_scan_failed", inbox=str(self.spec.path))
                    n = 0
                if n:
                    continue  # more may be waiting; look again at once
                if woken.is_set():
                    continue  # something arrived during the look
                waiters = [asyncio.ensure_future(stop.wait()),
                           asyncio.ensure_future(woken.wait())]
                try:
                    await asyncio.wait(waiters, timeout=self.spec.poll_interval,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            if watch is not None:
                loop.remove_reader(watch.fd)
                watch.close()

    def _on_events(self, watch: _InboxWatch, woken: asyncio.Event) -> None:
        """Event loop: read the inbox's events, note the files that arrived whole, wake."""
        events = watch.read()
        if events is None:  # the queue overflowed: what arrived whole is not known
            with self._arrived_lock:
                self._arrived.clear()
            woken.set()
            return
        wake = False
        with self._arrived_lock:
            arrived = self._arrived
            for mask, name in events:
                if mask & _IN_MOVED_TO:
                    arrived.add(name)
                else:
                    arrived.discard(name)  # written, closed, changed or gone since
                # Only an arrival or a writer closing can make a file ready: a file being
                # written in place does not set off a look per write.
                wake = wake or bool(mask & (_IN_MOVED_TO | _IN_CLOSE_WRITE))
        if wake:
            woken.set()


def _move(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` (which exists) without overwriting."""
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    try:
        os.rename(path, target)
    except OSError:
        shutil.move(str(path), str(target))  # across file systems
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- inotify (Linux) ------------------------------------------------------------------------

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_Q_OVERFLOW, _IN_ONLYDIR = 0x4000, 0x01000000
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_WATCHED = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO
            | _IN_CREATE | _IN_DELETE)
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class _InboxWatch:
    """An inotify watch on one inbox folder (libc through ctypes: no dependency)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, folder: Path) -> _InboxWatch | None:
        """The watch, or None where inotify is missing or refused (the poll then does all)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(folder), _WATCHED | _IN_ONLYDIR) < 0:
                error = ctypes.get_errno()
                os.close(fd)
                raise OSError(error, "inotify_add_watch")
        except (OSError, AttributeError) as exc:
            log.info("inbox_not_watched", inbox=str(folder), error=str(exc),
                     detail="every file waits for its second look")
            return None
        return cls(fd)

    def read(self) -> list[tuple[int, str]] | None:
        """The events queued so far as (mask, name); None when the kernel's queue overflowed."""
        events: list[tuple[int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            except OSError:
                return None
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                if mask & _IN_Q_OVERFLOW:
                    return None
                name = data[start:start + length].rstrip(b"\0")
                if name:
                    events.append((mask, os.fsdecode(name)))
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)


def start(ctx: ChannelContext) -> ChannelRun:
    """A folder channel for each ``[[inbox]]``."""
    run = ChannelRun()
    for inbox in ctx.settings.inbox:
        spec = FolderSpec(path=inbox.path, processed=inbox.processed_dir,
                          failed=inbox.failed_dir, partner=inbox.partner,
                          poll_interval=inbox.poll_interval, ignore=tuple(inbox.ignore),
                          max_size=inbox.max_size)
        channel = FolderChannel(spec, receiver=ctx.receiver, on_received=ctx.on_received)
        run.loops.append((f"folder:{spec.path}", channel.run))
    return run
