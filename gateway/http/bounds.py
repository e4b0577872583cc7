"""What one client may cost the HTTP server: body sizes per route, the time to send request
headers, the number of open connections, and the headers every response carries.

- ``BodyLimit`` (ASGI middleware): each route has its own limit (``limit_for(path)``). A
  declared ``Content-Length`` over it is answered 413 before a byte of the body is read; a
  chunked body is counted as it arrives and answered 413 as soon as it passes the limit (the
  application is then told the client left). The 413 closes the connection, gently: the
  answer and a FIN go out, what the client still sends is read and dropped for ``LINGER``
  seconds (``LINGER_BYTES`` at most), then the socket closes (closing at once, with unread data, resets the connection
  and can destroy the 413 before the client reads it).
- ``SecurityHeaders`` (ASGI middleware): CSP with ``frame-ancestors 'none'``,
  ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy`` on every response that
  does not set them itself. The console's pages load their script and style from
  ``/static`` and have no inline code, so the CSP allows only this origin.
- ``bounded_protocol(header_timeout, max_connections)``: uvicorn's h11 protocol with two
  guards uvicorn lacks. A connection must complete its request headers within
  ``header_timeout`` seconds of opening (or of its previous response), however slowly it
  trickles bytes; else it is closed. At ``max_connections`` open connections a new one
  closes the oldest connection still waiting for its headers (an idle or slow client), or,
  when every connection is busy with a request, is answered 503 and closed at once: idle
  sockets cannot take every file descriptor, and /healthz still gets through.
- ``raise_fd_limit()``: the soft limit of open files raised to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import Callable, Iterable
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("edigw.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


# -- body sizes ---------------------------------------------------------------------------------


class RouteLimits:
    """The body limit of a path: the first pattern (a regular expression matched against
    the whole path) that matches, else ``default``; never above ``ceiling``."""

    def __init__(self, default: int, rules: Iterable[tuple[str, int]] = (), *,
                 ceiling: int | None = None) -> None:
        self.default = default
        self.rules = [(re.compile(pattern), limit) for pattern, limit in rules]
        self.ceiling = ceiling

    def __call__(self, path: str) -> int:
        limit = next((lim for rx, lim in self.rules if rx.fullmatch(path)), self.default)
        return min(limit, self.ceiling) if self.ceiling else limit


def _too_large(limit: int) -> tuple[Message, Message]:
    body = f"request body over the {limit}-byte limit of this route\n".encode()
    return ({"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]},
            {"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse (413) a request body over its route's limit before buffering it."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            for message in _too_large(limit):
                await send(message)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        for reply in _too_large(limit):
                            await send(reply)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer; whatever the app says after is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


# -- security headers ---------------------------------------------------------------------------

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Add ``SECURITY_HEADERS`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _v in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- connections --------------------------------------------------------------------------------

_BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
               b"content-length: 22\r\nconnection: close\r\n\r\ntoo many connections\r\n")


#: Seconds a connection answered before the end of its request body (a 413) goes on being
#: read, and the rest thrown away, before it is closed: closing a socket with unread data
#: sends a reset that can destroy the answer before the client reads it.
LINGER = 2.0
#: … or until this many bytes were thrown away, whichever comes first.
LINGER_BYTES = 16 << 20


class _LingeringTransport:
    """The transport uvicorn's protocol sees: ``close()`` while the client is still sending
    its body half-closes instead (the answer and a FIN go out), reads and drops what still
    comes for ``LINGER`` seconds, then closes. Everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, conn: Callable[[], h11.Connection],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._conn = conn
        self._loop = loop
        self.lingering = False
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        real = self._transport
        if self.lingering or real.is_closing():
            return
        if self._conn().their_state is not h11.SEND_BODY or not real.can_write_eof():
            real.close()
            return
        self.lingering = True
        try:
            real.write_eof()
            real.resume_reading()
        except (OSError, RuntimeError):
            real.close()
            return
        self._loop.call_later(LINGER, real.close)


def bounded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a cap on open connections (see the
    module's docstring)."""

    class BoundedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_since: float = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            open_now = [c for c in self.connections if not c.transport.is_closing()]
            transport = _LingeringTransport(  # type: ignore[assignment]
                transport, lambda: self.conn, self.loop)
            super().connection_made(transport)
            if len(open_now) >= max_connections:
                idle = [c for c in open_now if isinstance(c, BoundedH11Protocol)
                        and c._waiting_for_headers()]
                if not idle:
                    log.warning("http_connection_refused", open=len(open_now),
                                max_connections=max_connections)
                    transport.write(_BUSY_REPLY)
                    transport.close()
                    return
                oldest = min(idle, key=lambda c: c._waiting_since)
                oldest._close()
            self._arm_header_timer()

        def _waiting_for_headers(self) -> bool:
            return (self.conn.their_state is h11.IDLE and not self.transport.is_closing()
                    and (self.cycle is None or self.cycle.response_complete))

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._waiting_since = self.loop.time()
            self._header_timer = self.loop.call_later(header_timeout, self._header_deadline)

        def _header_deadline(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers():
                self._close()

        def _close(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if not self.transport.is_closing():
                if self.conn.our_state is not h11.ERROR:
                    try:
                        self.conn.send(h11.ConnectionClosed())
                    except h11.LocalProtocolError:
                        pass
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            transport = self.transport
            if isinstance(transport, _LingeringTransport) and transport.lingering:
                transport.dropped += len(data)  # the rest of a refused body: thrown away
                if transport.dropped > LINGER_BYTES:
                    transport._transport.close()
                return
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return BoundedH11Protocol


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit (when it is lower); returns
    (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard_cap = 1 << 20
    else:
        hard_cap = hard
    if soft != resource.RLIM_INFINITY and soft < hard_cap:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_cap, hard))
            log.info("fd_limit_raised", soft=soft, now=hard_cap)
            soft = hard_cap
        except (ValueError, OSError) as exc:
            log.warning("fd_limit_not_raised", soft=soft, hard=hard, reason=str(exc))
    return soft, hard
