"""Content-addressed archive of raw payloads: ``<root>/ab/<sha256>``.

One level of 256 folders (as git does): a second level would cost a directory creation, a
journalled metadata write, for most new payloads until tens of thousands exist.

A payload is written to a temporary file and renamed into place, then the file system is
synced, so once ``put``/``put_many`` returns the bytes survive a crash. The same bytes are
stored once; a file whose bytes no longer match its name is rewritten.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path

from gateway.core.errors import ArchivedPayloadUnreadable, StoreError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Archive:
    """Raw payload bytes by sha256."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._folders: set[str] = set()  # folders known to exist: no mkdir per payload

    def path_of(self, sha256: str) -> Path:
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its sha256 hex digest."""
        return self.put_many([data])[0]

    def put_many(self, payloads: list[bytes]) -> list[str]:
        """Store every payload, then make all of them durable with one file-system sync.

        Each file is written under a temporary name and renamed into place; the sync at the
        end (``syncfs`` on Linux, else one fsync per file and folder) covers data, renames
        and folders at once, which is what makes a batch of small files cheap to receive.
        """
        digests: list[str] = []
        written: list[Path] = []
        for data in payloads:
            digest = hashlib.sha256(data).hexdigest()
            digests.append(digest)
            target = self.path_of(digest)
            if self._intact(target, digest):
                continue
            folder = str(target.parent)
            tmp = f"{folder}/.tmp-{digest}-{os.getpid()}-{threading.get_ident()}"
            try:
                if folder not in self._folders:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._folders.add(folder)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise StoreError(f"cannot archive payload {digest[:12]} under {self.root}: {exc}") from exc
            written.append(target)
        if written and self.fsync:
            try:
                self._sync(written)
            except OSError as exc:
                raise StoreError(f"cannot sync the archive under {self.root}: {exc}") from exc
        return digests

    def _intact(self, target: Path, digest: str) -> bool:
        # An existing file is trusted only when its bytes still hash to its name: a crash
        # before the sync of an earlier batch may have left it torn.
        try:
            return hashlib.sha256(target.read_bytes()).hexdigest() == digest
        except OSError:
            return False

    def _sync(self, written: list[Path]) -> None:
        if _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        for path in written:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in {p.parent for p in written} | {self.root}:
            _fsync_dir(folder)

    #: Bytes read or copied at a time when a payload is streamed.
    block = 1 << 20

    def put_file(self, source: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a file's bytes without holding them in memory; returns (sha256, size).

        The file is copied under a temporary name while it is hashed, renamed to its digest
        and synced: memory stays at one block whatever the file's size.
        """
        tmp = self.root / f".in-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
        digest = hashlib.sha256()
        size = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(self.block):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                if self.fsync:
                    dst.flush()
                    os.fsync(dst.fileno())
            hexdigest = digest.hexdigest()
            target = self.path_of(hexdigest)
            if self._intact_file(target, hexdigest):
                tmp.unlink()
                return hexdigest, size
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            if self.fsync:
                _fsync_dir(target.parent)
                _fsync_dir(self.root)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot archive {source} under {self.root}: {exc}") from exc
        return hexdigest, size

    def blocks(self, sha256: str) -> Generator[bytes, None, None]:
        """The payload block by block, for streaming; StoreError when it is missing, and at
        the end when its bytes do not hash to its name (a torn or altered file)."""
        digest = hashlib.sha256()
        try:
            handle = open(self.path_of(sha256), "rb")
        except OSError as exc:
            raise StoreError(f"archived payload {sha256} is missing: {exc}") from exc
        with handle:
            while chunk := handle.read(self.block):
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha256:
            raise StoreError(f"archived payload {sha256} is corrupted (digest differs)")

    def _intact_file(self, target: Path, digest: str) -> bool:
        """Like ``_intact`` without reading the whole file into memory."""
        try:
            h = hashlib.sha256()
            with open(target, "rb") as handle:
                while chunk := handle.read(self.block):
                    h.update(chunk)
            return h.hexdigest() == digest
        except OSError:
            return False

    def get(self, sha256: str) -> bytes:
        """The archived bytes; raises StoreError when missing or corrupted."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArchivedPayloadUnreadable(f"archived payload {sha256} is missing") from exc
        except OSError as exc:  # the archive's disk or mount is away: wait for it
            raise StoreError(f"archive unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ArchivedPayloadUnreadable(
                f"archived payload {sha256} is corrupted (digest differs)")
        return data

    def __contains__(self, sha256: str) -> bool:
        return self.path_of(sha256).exists()


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2) through ctypes, or None where it is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_syncfs = _load_syncfs() if sys.platform.startswith("linux") else None


def make_durable(paths: list[Path]) -> None:
    """Sync files just written (and renamed) outside the archive, and their folders, with
    one ``syncfs`` where Linux has it, else one fsync per file and folder."""
    if not paths:
        return
    if _syncfs is not None:
        fd = os.open(paths[0].parent, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in {p.parent for p in paths}:
        _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
