"""Content-addressed archive of raw payloads: ``<root>/ab/cd/<sha256>``.

A payload is written to a temporary file, flushed to disk, renamed into place and its folder
synced, so once ``put`` returns the bytes survive a crash. The same bytes are stored once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from gateway.core.errors import StoreError


class Archive:
    """Raw payload bytes by sha256."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its sha256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_of(digest)
        if target.exists() and target.stat().st_size == len(data):
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if self.fsync:
                _fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(f"cannot archive payload {digest[:12]} under {self.root}: {exc}") from exc
        return digest

    def get(self, sha256: str) -> bytes:
        """The archived bytes; raises StoreError when missing or corrupted."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"archived payload {sha256} is missing: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"archived payload {sha256} is corrupted (digest differs)")
        return data

    def __contains__(self, sha256: str) -> bool:
        return self.path_of(sha256).exists()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
