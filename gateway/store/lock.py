"""One ``edigw serve`` per SQLite store.

Two gateways on one SQLite file (and so one inbox) would both process every file. ``serve``
therefore takes an exclusive ``flock`` on ``<database>.lock`` before it opens the store, and
writes who holds it (PID, host, start time) into the file. A second ``serve`` finds the lock
taken and refuses to start, naming the first.

The kernel releases a ``flock`` when its process ends, however it ends: a lock file left by
a killed gateway is only text and blocks nobody. The file itself is never removed (removing
it would let two processes lock two different files of the same name).

PostgreSQL stores take no lock here: several instances there are later work.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from gateway.core.errors import EdigwError


class InstanceLocked(EdigwError):
    """Another gateway already serves this SQLite store."""

    def __init__(self, *, lock_file: Path, pid: int | None, host: str | None,
                 started: str | None) -> None:
        self.lock_file = lock_file
        self.pid = pid
        self.host = host
        self.started = started
        holder = f"PID {pid if pid is not None else '?'} on {host or '?'}"
        if started:
            holder += f", started {started}"
        super().__init__(
            f"another edigw serve already uses this SQLite store ({holder}; lock "
            f"{lock_file}). Stop it first: two gateways on one store process every file twice.")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite store URL; None for any other store (or in memory)."""
    if not url.startswith("sqlite"):
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    if database.startswith("file:"):  # a SQLite URI filename: file:/path?mode=…
        database = database[len("file:"):].split("?", 1)[0]
        if database.startswith("//"):
            database = database[2:]
    # The real file, so that a symlink or another spelling of the path takes the same lock.
    return Path(database).resolve()


class InstanceLock:
    """An exclusive lock on ``<database>.lock``; ``acquire()`` or raise :class:`InstanceLocked`."""

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self._file: IO[str] | None = None

    @classmethod
    def for_store(cls, url: str) -> InstanceLock | None:
        """The lock for a SQLite store URL; None for stores that take none (PostgreSQL)."""
        database = sqlite_file(url)
        return None if database is None else cls(database.with_name(database.name + ".lock"))

    def acquire(self) -> InstanceLock:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_file, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = _holder(f.read())
            f.close()
            raise InstanceLocked(lock_file=self.lock_file, pid=holder.get("pid"),
                                 host=holder.get("host"), started=holder.get("started")) from None
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        f.write("\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Give the lock up (the process's end does the same)."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _holder(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
