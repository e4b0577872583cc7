"""Connection parameters, pika errors in words, and a reachability check.

This is the edge where pika's exceptions become :class:`BrokerError` or a sentence for an
operator; nothing outside ``gateway.bus`` sees pika.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pika
import pika.exceptions as px

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


def check_broker(url: str, timeout: float = 5.0) -> str | None:
    """None when the broker at ``url`` accepts a login, else the reason in words."""
    try:
        params = parameters(url, timeout=timeout)
    except BrokerError as exc:
        return str(exc)
    try:
        connection = pika.BlockingConnection(params)
    except (px.AMQPError, OSError) as exc:
        return f"broker not reachable at {mask_url(url)} ({describe(exc)})"
    try:
        connection.close()
    except px.AMQPError:
        pass
    return None


def host_port(url: str) -> tuple[str, int]:
    """The broker host and port named by ``url`` (5672, or 5671 for amqps)."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    return parts.hostname or "localhost", parts.port or default
