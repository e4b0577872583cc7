"""Skip, or fail in CI, when a real server a test needs is not there."""

from __future__ import annotations

import os
import socket

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
