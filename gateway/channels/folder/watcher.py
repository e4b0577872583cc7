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

Several gateways may watch one shared inbox (instances on one PostgreSQL store): each file is
claimed by exactly one, by renaming it into the instance's own claim folder
(``<inbox>/.claimed/<instance id>/``) before reading it; a rename is atomic, so the others
find it gone. The files an instance claimed and did not move on (it died, or its store was
away) go back to the inbox once it is found dead; they are then recognised as received
(or received anew) like any file left in the inbox by a crash.

Each look is a round of the channel's health (``edigw channels``, the tracker's alert on a
channel failing repeatedly): a look that cannot list the inbox or cannot receive into the
store is a failure, any other an OK (after a failure, only once the files waiting were received
or none wait: a look that only notes files proves nothing). Looks come every fraction of a second, so the store is
written only when the state changes (OK to failing, failing to OK) or ``health_every``
seconds passed; ``consecutive_failures`` therefore counts the failures recorded, at most one
per ``health_every`` seconds.
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
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.core import clock
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


class HealthRecords(Protocol):
    """The part of ``gateway.store.channels.ChannelRecords`` the channel reports to."""

    def ok(self, channel: str, kind: str, *, partner_id: str | None = None,
           detail: str | None = None) -> None: ...

    def failed(self, channel: str, kind: str, error: str, *,
               partner_id: str | None = None) -> int: ...


class FolderChannel:
    """Polls one inbox folder and hands complete files to a ``Receiver``."""

    name = "folder"
    kind = "folder"

    #: Seconds between two looks for the claim folders of dead instances.
    RECLAIM_EVERY = 5.0

    def __init__(self, spec: FolderSpec, *, receiver: Receiver,
                 on_received: Callable[[list[Receipt]], None],
                 instance_id: str | None = None,
                 live_instances: Callable[[], set[str]] | None = None,
                 records: HealthRecords | None = None, health_every: float = 30.0) -> None:
        self.spec = spec
        #: Where each look's health goes (None: not recorded), under ``folder:<inbox>``.
        self.records = records
        self.health_name = f"folder:{spec.path}"
        self.health_every = health_every
        #: (failing?, monotonic time) of the health last recorded.
        self._recorded: tuple[bool, float] | None = None
        self._taken_since = 0
        #: Files seen in the inbox at the last look (taken or not yet).
        self._waiting = 0
        #: Where this instance claims files (None: it watches the inbox alone, no claims).
        self.claims = (spec.path / CLAIMS / _safe(instance_id)) if instance_id else None
        self.live_instances = live_instances
        self._reclaimed_at = 0.0
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
        self.last_error = None
        spec.path.mkdir(parents=True, exist_ok=True)
        ready: list[Path] = []
        current: dict[str, tuple[int, int]] = {}
        try:
            entries = list(os.scandir(spec.path))
        except OSError as exc:
            self.last_error = f"cannot list {spec.path}: {exc.strerror}"
            log.error("inbox_unreadable", inbox=str(spec.path), error=exc.strerror)
            return 0
        if self.claims is not None:
            self.return_own_claims()
            if time.monotonic() - self._reclaimed_at > self.RECLAIM_EVERY:
                self._reclaimed_at = time.monotonic()
                self.return_dead_claims()
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
        self._waiting = len(current)
        if self.claims is not None and len(ready) > 1:
            # Instances sharing the inbox start at different places in it: they claim
            # different files rather than race for the same ones.
            k = zlib.crc32(self.claims.name.encode()) % len(ready)
            ready = ready[k:] + ready[:k]
        taken = 0
        for start in range(0, len(ready), spec.batch):
            taken += self._take(ready[start:start + spec.batch])
        return taken

    def look(self) -> int:
        """One look (``scan_once``) with its health recorded; returns the files taken."""
        try:
            n = self.scan_once()
        except Exception as exc:
            self.last_error = repr(exc)
            self.record_health(0)
            raise
        self.record_health(n)
        return n

    def record_health(self, taken: int) -> None:
        """Record the look just made (``last_error`` set: failed) when the state changed or
        ``health_every`` seconds passed; a store that is away is only logged."""
        self._taken_since += taken
        failing = self.last_error is not None
        if (not failing and not taken and self._waiting and self._recorded is not None
                and self._recorded[0]):
            return  # files wait since the failure, none received yet: not proven well
        now = time.monotonic()
        if (self.records is None or self._recorded is not None
                and self._recorded[0] == failing and now - self._recorded[1] < self.health_every):
            return
        try:
            if failing:
                self.records.failed(self.health_name, self.kind, str(self.last_error),
                                    partner_id=self.spec.partner)
            else:
                self.records.ok(self.health_name, self.kind, partner_id=self.spec.partner,
                                detail=f"{self._taken_since} file(s) taken since the last "
                                       "record")
                self._taken_since = 0
        except Exception as exc:  # the store is away: the next look records again
            log.warning("channel_health_not_recorded", channel=self.health_name,
                        error=str(exc))
            return
        self._recorded = (failing, now)

    def _ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pat) for pat in self.spec.ignore)

    def _claim(self, path: Path) -> Path | None:
        """The file, taken for this instance: renamed into its claim folder (None when
        another instance took it first). Without claims, the file where it is."""
        if self.claims is None:
            return path
        self.claims.mkdir(parents=True, exist_ok=True)
        target = _free_name(self.claims, path.name)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None  # another instance claimed it
        return target

    def _unclaim(self, claimed: Path, path: Path) -> None:
        """Put a claimed file back into the inbox (its receive failed): taken again later."""
        if claimed == path:
            return
        try:
            os.rename(claimed, _free_name(path.parent, path.name))
        except OSError as exc:
            log.error("unclaim_failed", file=path.name, error=exc.strerror)

    def _take(self, paths: list[Path]) -> int:
        items: list[Incoming] = []
        kept: list[Path] = []
        origins: list[Path] = []
        for path in paths:
            claimed: Path | None = path
            try:
                claimed = self._claim(path)
                if claimed is None:
                    continue
                size = claimed.stat().st_size
                if size > self.spec.max_size:
                    self._refuse(claimed, f"{size} bytes, over the {self.spec.max_size}-byte "
                                 "limit", name=path.name)
                    continue
                data = claimed.read_bytes() if size <= self.spec.stream_above else b""
            except FileNotFoundError:
                continue  # taken away by someone else between two looks
            except OSError as exc:
                self._refuse(claimed or path, f"cannot read: {exc.strerror}", name=path.name)
                continue
            # The inbox path names the file, wherever it is claimed: a file that comes back
            # to the inbox after a crash is recognised by it.
            items.append(Incoming(data=data, channel=self.name, channel_ref=str(path),
                                  filename=path.name, partner_hint=self.spec.partner,
                                  path=claimed if size > self.spec.stream_above else None))
            kept.append(claimed)
            origins.append(path)
        if not items:
            return 0
        try:
            ack = receive_then_acknowledge(
                self.receiver, items, lambda receipts: self._move_all(kept, receipts, origins),
                self.on_received)
        except BaseException as exc:
            # Nothing is lost: the files go back to the inbox and are taken at the next look.
            for claimed, path in zip(kept, origins, strict=True):
                self._unclaim(claimed, path)
                self._seen.pop(path.name, None)
            if not isinstance(exc, StoreError):
                raise
            self.last_error = str(exc)
            log.error("receive_failed", inbox=str(self.spec.path), error=str(exc),
                      files=len(items))
            return 0
        self.taken += len(ack.acknowledged)
        self.last_error = None
        return len(ack.acknowledged)

    def return_own_claims(self) -> int:
        """Between two looks nothing of this instance is being received: a file left in its
        claim folder (a receive that broke off, a move that failed) goes back to the inbox,
        where the next look recognises it or receives it."""
        if self.claims is None:
            return 0
        try:
            left = [e for e in os.scandir(self.claims) if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        for entry in left:
            self._unclaim(Path(entry.path), self.spec.path / entry.name)
        if left:
            log.warning("claims_returned", inbox=str(self.spec.path), files=len(left),
                        detail="claimed by this instance and not received; back in the inbox")
        return len(left)

    def return_dead_claims(self) -> int:
        """Move the files that dead instances claimed back into the inbox; returns how many.
        An instance is dead when the store says so (no heartbeat for a while, or stopped)."""
        root = self.spec.path / CLAIMS
        try:
            folders = [f for f in os.scandir(root) if f.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("claims_unreadable", inbox=str(self.spec.path), error=exc.strerror)
            return 0
        others = [f for f in folders if self.claims is None or f.name != self.claims.name]
        if not others or self.live_instances is None:
            return 0
        try:
            live = {_safe(i) for i in self.live_instances()}
        except Exception as exc:  # the store is away: look again later
            log.warning("claims_not_checked", inbox=str(self.spec.path), error=str(exc))
            return 0
        moved = 0
        for folder in others:
            if folder.name in live:
                continue
            for entry in list(os.scandir(folder.path)):
                try:
                    os.rename(entry.path, _free_name(self.spec.path, entry.name))
                    moved += 1
                except FileNotFoundError:
                    continue  # another instance returned it first
                except OSError as exc:
                    log.error("unclaim_failed", file=entry.name, error=exc.strerror)
            try:
                os.rmdir(folder.path)
            except OSError:
                pass  # not empty yet, or removed by another instance
        if moved:
            _fsync_dir(self.spec.path)
            log.warning("claims_returned", inbox=str(self.spec.path), files=moved,
                        detail="files claimed by instances found dead are back in the inbox")
        return moved

    def _move_all(self, paths: list[Path], receipts: list[Receipt],
                  origins: list[Path] | None = None) -> Acknowledgement[None]:
        """The acknowledgement: each received file moved to the processed folder (a file
        that cannot be moved stays, and is recognised at the next look)."""
        moved: list[Receipt] = []
        self.spec.processed.mkdir(parents=True, exist_ok=True)
        for n, (path, receipt) in enumerate(zip(paths, receipts, strict=True)):
            try:
                _move(path, self.spec.processed, name=origins[n].name if origins else None)
                moved.append(receipt)
            except OSError as exc:
                log.error("move_failed", file=path.name, error=exc.strerror,
                          transmission_id=receipt.transmission_id)
                if origins:
                    self._unclaim(path, origins[n])  # recognised at the next look
        if moved:
            claims = [self.claims] if self.claims is not None else []
            for folder in (self.spec.processed, self.spec.path, *claims):
                _fsync_dir(folder)  # the moves themselves survive a crash
        return Acknowledgement(acknowledged=moved, detail=f"moved to {self.spec.processed}",
                               process=moved)

    def _refuse(self, path: Path, reason: str, *, name: str | None = None) -> None:
        """Move a file that cannot be received to the failed folder, with the reason
        beside it (``name``: its name in the inbox, when it was claimed under another)."""
        name = name or path.name
        log.error("file_refused", file=name, inbox=str(self.spec.path), reason=reason)
        try:
            self.spec.failed.mkdir(parents=True, exist_ok=True)
            target = _move(path, self.spec.failed, name=name)
            (self.spec.failed / (target.name + ".reason.txt")).write_text(reason + "\n")
        except OSError as exc:
            log.error("move_failed", file=name, error=exc.strerror)

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
                    n = await asyncio.to_thread(self.look)
                except Exception:  # never let one bad look stop the channel
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


#: The folder of the inbox holding each instance's claimed files.
CLAIMS = ".claimed"


def _safe(name: str) -> str:
    """An instance id fit for a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "_"


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem.N.suffix`` when that name is taken."""
    target = folder / name
    n = 1
    stem, suffix = os.path.splitext(name)
    while target.exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def _move(path: Path, folder: Path, *, name: str | None = None) -> Path:
    """Move ``path`` into ``folder`` (which exists) as ``name`` (its own by default),
    without overwriting."""
    target = _free_name(folder, name or path.name)
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
    """A folder channel for each ``[[inbox]]``, on every instance (files are claimed)."""
    run = ChannelRun()

    def live() -> set[str]:
        now = clock.now()
        return {i.id for i in ctx.store.list_instances() if i.alive(now)}

    for inbox in ctx.settings.inbox:
        spec = FolderSpec(path=inbox.path, processed=inbox.processed_dir,
                          failed=inbox.failed_dir, partner=inbox.partner,
                          poll_interval=inbox.poll_interval, ignore=tuple(inbox.ignore),
                          max_size=inbox.max_size)
        channel = FolderChannel(spec, receiver=ctx.receiver, on_received=ctx.on_received,
                                instance_id=ctx.instance_id, live_instances=live,
                                records=ctx.records)
        run.loops.append((f"folder:{spec.path}", channel.run))
        run.everywhere.add(f"folder:{spec.path}")  # each file claimed by one instance
    return run
