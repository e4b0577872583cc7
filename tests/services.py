"""Skip, or fail in CI, when a real server a test needs is not there."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest


def require_service(name: str, host: str, port: int, *, timeout: float = 2.0) -> None:
    """Return if ``host:port`` accepts a TCP connection; else skip (or fail when CI=true)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = f"{name} not reachable at {host}:{port} ({exc.strerror or exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; in CI a missing service is a failure, not a skip")
    pytest.skip(reason)


def require_program(name: str, package: str) -> str:
    """The path of a server program the test starts itself (``sshd``, ``dovecot``); else
    skip, or fail when CI=true (``scripts/test.sh`` installs ``package`` there)."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name)
         if p.exists()), None)
    if found:
        return found
    reason = f"{name} is not installed (Debian package {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; in CI a missing server is a failure, not a skip")
    pytest.skip(reason)
