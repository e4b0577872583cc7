"""Connection parameters, pika errors in words, and a reachability check.

This is the edge where pika's exceptions become :class:`BrokerError` or a sentence for an
operator; nothing outside ``gateway.bus`` sees pika.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import pika
import pika.exceptions as px
from pika.adapters.utils.connection_workflow import AMQPConnectorStackTimeout

from gateway.bus.settings import mask_url
from gateway.core.errors import BrokerError


def parameters(url: str, *, timeout: float = 10.0,
               heartbeat: int | None = None) -> pika.URLParameters:
    """pika parameters for ``url`` that try once; edigw does its own retrying and back-off.
    ``heartbeat``: the AMQP heartbeat timeout (s) asked of the broker (its own otherwise)."""
    try:
        params = pika.URLParameters(url)
    except Exception as exc:  # pika raises ValueError, TypeError … for a malformed URL
        raise BrokerError(f"malformed broker URL {mask_url(url)}: {exc}") from exc
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 1.5
    params.blocked_connection_timeout = max(timeout, 60.0)
    if heartbeat is not None:
        params.heartbeat = heartbeat
    return params


class Liveness:
    """When something (a frame, a heartbeat) last came in on a connection.

    The thread that owns the connection calls :meth:`sample` with the connection's byte
    count while it services it; anyone may ask :meth:`silent_for`. The broker sends a
    heartbeat every half timeout on an idle connection, so silence for two timeouts means a
    partition or a hung broker, long before a TCP timeout would say so."""

    def __init__(self) -> None:
        self._bytes = -1
        self._heard: float | None = None

    def sample(self, bytes_received: int) -> None:
        if bytes_received != self._bytes:
            self._bytes = bytes_received
            self._heard = time.monotonic()

    def reset(self) -> None:
        """Not connected: nothing to be silent about."""
        self._bytes = -1
        self._heard = None

    def silent_for(self) -> float | None:
        """Seconds since anything was heard; None when not connected."""
        heard = self._heard
        return None if heard is None else time.monotonic() - heard


def describe(exc: BaseException) -> str:
    """A short sentence for an operator explaining why the broker did not answer."""
    if isinstance(exc, px.ProbableAuthenticationError | px.AuthenticationError):
        return "login refused (wrong user name or password)"
    if isinstance(exc, px.ProbableAccessDeniedError):
        return f"access refused: {_broker_text(exc)}"
    if isinstance(exc, px.ConnectionClosedByBroker | px.ChannelClosedByBroker):
        return f"{exc.reply_code} {exc.reply_text}"
    if isinstance(exc, AMQPConnectorStackTimeout):
        return "no answer to the AMQP handshake in time"
    if isinstance(exc, px.StreamLostError):
        return "connection lost" + (f": {_inner(exc)}" if _inner(exc) else "")
    if isinstance(exc, px.AMQPConnectionError) or hasattr(exc, "exception") \
            or hasattr(exc, "exceptions"):
        return _inner(exc) or type(exc).__name__
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _inner(exc: BaseException) -> str:
    # AMQPConnectionError wraps the connector's error: (AMQPConnectorSocketConnectError(
    # ConnectionRefusedError(111, 'Connection refused')),)
    for arg in (exc, *exc.args):
        cause = arg
        while True:
            if getattr(cause, "exceptions", None):  # a workflow's attempts: the last counts
                cause = cause.exceptions[-1]
            elif isinstance(getattr(cause, "exception", None), BaseException):
                cause = cause.exception  # pika's connector errors keep the socket error here
            elif isinstance(cause, px.AMQPError) and cause.args:
                cause = cause.args[0]
            else:
                break
        if cause is exc:
            continue
        if isinstance(cause, BaseException):
            return describe(cause)
        if cause:
            return str(cause)
    return ""


def _broker_text(exc: BaseException) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("ConnectionClosedByBroker: ") else text


def broker_error(exc: BaseException, url: str, doing: str = "connecting to") -> BrokerError:
    """The :class:`BrokerError` to raise ``from exc``; the message never shows a password."""
    return BrokerError(f"{doing} {mask_url(url)} failed: {describe(exc)}")


class Rotation:
    """The nodes of a cluster, tried in turn: each connection attempt takes the next one
    (round-robin), so a lost node or a failed connect moves on to another node; the caller
    keeps its back-off between attempts. One URL: always that one. Thread-safe."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls: tuple[str, ...] = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self.urls:
            raise ValueError("at least one broker URL is needed")
        self._next = 0
        self._current: str | None = None
        self._lock = threading.Lock()

    def next(self) -> str:
        """The URL for the next connection attempt (the first node first)."""
        with self._lock:
            url = self.urls[self._next % len(self.urls)]
            self._next = (self._next + 1) % len(self.urls)
            self._current = url
            return url

    @property
    def current(self) -> str:
        """The URL of the latest attempt (the first node before any)."""
        return self._current if self._current is not None else self.urls[0]

    def __len__(self) -> int:
        return len(self.urls)


def connect_any(urls: str | Sequence[str], *, timeout: float = 10.0
                ) -> tuple[pika.BlockingConnection, str]:
    """A blocking connection to the first node of ``urls`` that accepts one, and its URL;
    :class:`BrokerError` naming every node (passwords masked) when none does."""
    rotation = Rotation(urls)
    failures: list[tuple[str, BaseException]] = []
    for _ in range(len(rotation)):
        url = rotation.next()
        try:
            return pika.BlockingConnection(parameters(url, timeout=timeout)), url
        except Exception as exc:  # pika's connector errors (a handshake timeout) too
            failures.append((url, exc))
    if len(failures) == 1:
        raise broker_error(failures[0][1], failures[0][0]) from failures[0][1]
    raise BrokerError("no broker node reachable: " + "; ".join(
        f"{mask_url(url)} ({describe(exc)})" for url, exc in failures)) from failures[-1][1]


def check_node(url: str, timeout: float = 5.0) -> str | None:
    """None when the broker node at ``url`` accepts a login, else the reason in words."""
    problem = _node_problem(url, timeout)
    if problem is None or problem.startswith("malformed"):
        return problem
    return f"broker not reachable at {mask_url(url)} ({problem})"


def _node_problem(url: str, timeout: float) -> str | None:
    try:
        params = parameters(url, timeout=timeout)
    except BrokerError as exc:
        return str(exc)
    try:
        connection = pika.BlockingConnection(params)
    except Exception as exc:  # pika's connector errors (a handshake timeout) are no AMQPError
        return describe(exc)
    try:
        connection.close()
    except px.AMQPError:
        pass
    return None


def check_nodes(urls: str | Sequence[str], timeout: float = 5.0
                ) -> list[tuple[str, str | None]]:
    """Each node's masked URL and None (it accepts a login) or why not, in words; checked in
    parallel, so this takes one ``timeout`` at most whatever the number of nodes."""
    nodes = (urls,) if isinstance(urls, str) else tuple(urls)
    results: list[str | None] = [None] * len(nodes)

    def one(i: int) -> None:
        results[i] = _node_problem(nodes[i], timeout)

    threads = [threading.Thread(target=one, args=(i,), name="edigw-broker-check", daemon=True)
               for i in range(1, len(nodes))]
    for thread in threads:
        thread.start()
    if nodes:
        one(0)
    for thread in threads:
        thread.join()
    return [(mask_url(url), problem) for url, problem in zip(nodes, results, strict=True)]


def check_broker(urls: str | Sequence[str], timeout: float = 5.0) -> str | None:
    """None when the broker accepts a login (a cluster: at least one of its nodes), else the
    reason in words (each node's, passwords masked)."""
    nodes = (urls,) if isinstance(urls, str) else tuple(urls)
    if len(nodes) == 1:
        return check_node(nodes[0], timeout)
    checked = check_nodes(nodes, timeout)
    if any(problem is None for _, problem in checked):
        return None
    return "no broker node reachable: " + "; ".join(
        f"{url} ({problem})" for url, problem in checked)


def describe_nodes(urls: str | Sequence[str], timeout: float = 5.0) -> list[str]:
    """One line per node (``edigw status``): its masked URL and ``reachable`` or why not."""
    return [f"{url} " + ("reachable" if problem is None else f"NOT reachable ({problem})")
            for url, problem in check_nodes(urls, timeout)]


def host_port(url: str) -> tuple[str, int]:
    """The broker host and port named by ``url`` (5672, or 5671 for amqps)."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    return parts.hostname or "localhost", parts.port or default
