"""Folder channel: takes complete files from an inbox folder.

A file is taken only when it is complete: its name is not a temporary one (``*.tmp``,
``.*``, ``*.part`` …) and its size and modification time did not change between two looks.
Only after the durable receive is the file moved to the processed folder; when receive
itself fails (the file cannot be read, or is over the size limit) it goes to the failed
folder. A crash between receive and move leaves the file in the inbox: the next look
recognises it and only finishes the move.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

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
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False) or self._ignored(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            current[entry.name] = sig
            if self._seen.get(entry.name) == sig:
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
            receipts = self.receiver.receive_many(items)
        except StoreError as exc:
            # Nothing is lost: the files stay in the inbox and are taken at the next look.
            self.last_error = str(exc)
            log.error("receive_failed", inbox=str(self.spec.path), error=str(exc),
                      files=len(items))
            for p in kept:
                self._seen.pop(p.name, None)
            return 0
        moved: list[Receipt] = []
        self.spec.processed.mkdir(parents=True, exist_ok=True)
        for path, receipt in zip(kept, receipts, strict=True):
            try:
                _move(path, self.spec.processed)
                moved.append(receipt)
            except OSError as exc:
                log.error("move_failed", file=path.name, error=exc.strerror,
                          transmission_id=receipt.transmission_id)
        if moved:
            for folder in (self.spec.processed, self.spec.path):
                _fsync_dir(folder)  # the moves themselves survive a crash
            self.receiver.acknowledged(moved, f"moved to {self.spec.processed}")
        self.taken += len(moved)
        self.last_error = None
        self.on_received([r for r in moved if r.needs_processing])
        return len(moved)

    def _refuse(self, path: Path, reason: str) -> None:
        log.error("file_refused", file=path.name, inbox=str(self.spec.path), reason=reason)
        try:
            self.spec.failed.mkdir(parents=True, exist_ok=True)
            _move(path, self.spec.failed)
            (self.spec.failed / (path.name + ".reason.txt")).write_text(reason + "\n")
        except OSError as exc:
            log.error("move_failed", file=path.name, error=exc.strerror)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; the blocking work runs in a worker thread."""
        log.info("folder_channel_started", inbox=str(self.spec.path), partner=self.spec.partner)
        while not stop.is_set():
            try:
                n = await asyncio.to_thread(self.scan_once)
            except Exception as exc:  # never let one bad look stop the channel
                self.last_error = repr(exc)
                log.exception("folder_scan_failed", inbox=str(self.spec.path))
                n = 0
            if n:
                continue  # more may be waiting; look again at once
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.spec.poll_interval)
            except TimeoutError:
                pass


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
