"""One ``edigw serve`` per SQLite store: the lock on ``<database>.lock``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.store.lock import InstanceLock, InstanceLocked, sqlite_file

HOLD = textwrap.dedent("""
    import sys, time
    from gateway.store.lock import InstanceLock
    lock = InstanceLock.for_store(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def _holder(url: str) -> subprocess.Popen:
    """Another process holding the store's lock (it says so on stdout)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_only_sqlite_stores_take_a_lock(tmp_path: Path) -> None:
    """A SQLite file gets ``<file>.lock``; PostgreSQL and in-memory SQLite take none."""
    lock = InstanceLock.for_store(f"sqlite:///{tmp_path}/var/edigw.sqlite3")
    assert lock is not None and lock.lock_file == tmp_path / "var" / "edigw.sqlite3.lock"
    assert InstanceLock.for_store("postgresql://localhost/test") is None
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None


def test_second_process_on_same_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    """While one process holds the store, another is refused with the first's PID and host."""
    url = f"sqlite:///{tmp_path}/edigw.sqlite3"
    first = _holder(url)
    try:
        with pytest.raises(InstanceLocked) as caught:
            InstanceLock.for_store(url).acquire()  # type: ignore[union-attr]
        err = caught.value
        assert err.pid == first.pid and err.host == socket.gethostname()
        assert f"PID {first.pid}" in str(err) and "already uses this SQLite store" in str(err)
    finally:
        first.kill()
        first.wait()


def test_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    """A gateway killed with SIGKILL leaves its lock file behind; the next one starts."""
    url = f"sqlite:///{tmp_path}/edigw.sqlite3"
    first = _holder(url)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    lock_file = tmp_path / "edigw.sqlite3.lock"
    assert json.loads(lock_file.read_text())["pid"] == first.pid  # stale, still there
    lock = InstanceLock.for_store(url).acquire()  # type: ignore[union-attr]
    try:
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_released_lock_lets_the_next_gateway_start(tmp_path: Path) -> None:
    """After ``release()`` (a clean stop) the store can be served again at once."""
    url = f"sqlite:///{tmp_path}/edigw.sqlite3"
    with InstanceLock.for_store(url):  # type: ignore[union-attr]
        with pytest.raises(InstanceLocked):
            InstanceLock.for_store(url).acquire()  # type: ignore[union-attr]
    second = InstanceLock.for_store(url).acquire()  # type: ignore[union-attr]
    second.release()


def test_serve_refuses_a_locked_store_with_exit_status_1(tmp_path: Path) -> None:
    """``edigw serve`` on a store another gateway holds stops at once, non-zero, naming it."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{root / "mappings"}"\npartners = "partners"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n'
        '[http]\nenabled = false\n'
        f'[[inbox]]\npath = "{tmp_path}/inbox"\n')
    first = _holder(f"sqlite:///{tmp_path}/var/edigw.sqlite3")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDIGW_")}
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config",
                            str(tmp_path / "gateway.toml"), "serve"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert f"PID {first.pid}" in r.stderr and "already uses this SQLite store" in r.stderr
        assert "Traceback" not in r.stderr
        assert time.monotonic() - started < 30
    finally:
        first.kill()
        first.wait()


def test_another_spelling_of_the_same_file_takes_the_same_lock(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A symlink, a relative path or a SQLite URI filename name the same database: the same
    lock, so a second gateway cannot slip past it."""
    (tmp_path / "real.sqlite3").touch()
    (tmp_path / "alias.sqlite3").symlink_to(tmp_path / "real.sqlite3")
    monkeypatch.chdir(tmp_path)
    first = _holder(f"sqlite:///{tmp_path}/real.sqlite3")
    try:
        for url in (f"sqlite:///{tmp_path}/alias.sqlite3", "sqlite:///real.sqlite3",
                    f"sqlite:///file:{tmp_path}/real.sqlite3?mode=rwc&uri=true"):
            with pytest.raises(InstanceLocked):
                InstanceLock.for_store(url).acquire()  # type: ignore[union-attr]
    finally:
        first.kill()
        first.wait()
