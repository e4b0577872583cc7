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
- ``SecurityHeaders`` wraps the whole app, Starlette's error handler included: a 500 carries
  them too; the answers the protocol writes itself (400, 408, 503) carry them as well.
- ``bounded_protocol(header_timeout, max_connections, body=BodyPace(...))``: uvicorn's h11
  protocol with the guards uvicorn lacks. A connection must complete its request headers
  within ``header_timeout`` seconds of opening (or of its previous response), however slowly
  it trickles bytes; else it is closed. Its request body must then keep coming
  (``BodyPace``): no ``timeout`` seconds without a byte, and on average at least
  ``min_rate`` bytes a second once ``grace`` seconds have passed; else it is answered 408
  and closed. Only the time the server waits for the client counts: while uvicorn has
  paused reading (the application has not taken what came, flow control) or the client
  waits for ``100 Continue``, the clocks stop, so a big upload read slowly by its route is
  never cut. At ``max_connections`` open connections a new one closes the oldest
  connection still waiting for its headers (an idle or slow client), else the oldest whose
  body comes slower than ``min_rate`` (answered 408), or, when every connection is busy
  with a request, is answered 503 and closed at once: idle or trickling sockets cannot take
  every file descriptor, and /healthz still gets through.
- ``raise_fd_limit()``: the soft limit of open files raised to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import h11
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("edigw.http")



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


def _too_large(limit: int, path: str) -> tuple[Message, Message]:
    detail = f"request body over the {limit}-byte limit of this route"
    body, media = (detail + "\n").encode(), b"text/plain; charset=utf-8"
    if path.startswith("/api/"):  # as every API error (gateway.web.errors): RFC 9457
        body, media = json.dumps({
            "type": "https://edigw.dev/problems/too-large", "title": "Request too large",
            "status": 413, "detail": detail, "instance": path}).encode(), \
            b"application/problem+json"
    return ({"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", media),
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
            for message in _too_large(limit, scope["path"]):
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
                        for reply in _too_large(limit, scope["path"]):
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

def _raw_reply(status: int, reason: bytes, text: bytes) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, with ``SECURITY_HEADERS``: for the
    answers the protocol writes itself, outside the application."""
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(text)).encode()), (b"connection", b"close"),
               *SECURITY_HEADERS]
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (status, reason, head, text)


_BUSY_REPLY = _raw_reply(503, b"Service Unavailable", b"too many connections\r\n")


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


@dataclass(frozen=True)
class BodyPace:
    """How fast a request body must come (see the module's docstring): ``timeout`` seconds
    at most without a byte; after ``grace`` seconds, ``min_rate`` bytes a second on average
    (0: no minimum rate). Only the seconds the server waits for the client count."""

    timeout: float = 15.0
    min_rate: int = 1024
    grace: float = 10.0

    @property
    def tick(self) -> float:
        """How often a connection sending its body is looked at."""
        return max(0.05, min(1.0, self.timeout / 4, self.grace / 4))


_TIMEOUT_REPLY = b"request body too slow\r\n"


class _WatchedFlow(FlowControl):
    """uvicorn's flow control, telling the protocol before it pauses or resumes reading (the
    body clocks stop while reading is paused)."""

    def __init__(self, transport: asyncio.Transport, before_change: Callable[[], None]) -> None:
        super().__init__(transport)
        self._before_change = before_change

    def pause_reading(self) -> None:
        self._before_change()
        super().pause_reading()

    def resume_reading(self) -> None:
        self._before_change()
        super().resume_reading()


def bounded_protocol(header_timeout: float, max_connections: int,
                     body: BodyPace | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline, a body pace and a cap on open
    connections (see the module's docstring)."""
    pace = body or BodyPace()

    class BoundedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_since: float = 0.0
        # The body clock: runs while the client owes the rest of its request body.
        _body_timer: asyncio.TimerHandle | None = None
        _body_since: float = 0.0  # when the body began (for the oldest slow one)
        _body_last: float = 0.0  # when the clocks below were last brought up to date
        _body_waited: float = 0.0  # seconds the server waited for the client, in all
        _body_quiet_since: float = 0.0  # the last byte, or the end of the last pause
        _body_received: int = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            open_now = [c for c in self.connections if not c.transport.is_closing()]
            transport = _LingeringTransport(  # type: ignore[assignment]
                transport, lambda: self.conn, self.loop)
            super().connection_made(transport)
            self.flow = _WatchedFlow(transport, self._account_body)
            if len(open_now) >= max_connections and not self._make_room(open_now):
                log.warning("http_connection_refused", open=len(open_now),
                            max_connections=max_connections)
                transport.write(_BUSY_REPLY)
                transport.close()
                return
            self._arm_header_timer()

        def _make_room(self, open_now: Iterable[object]) -> bool:
            """Close the oldest connection waiting for its headers, else the oldest whose
            body comes too slowly; False when every one is busy."""
            mine = [c for c in open_now if isinstance(c, BoundedH11Protocol)]
            idle = [c for c in mine if c._waiting_for_headers()]
            if idle:
                min(idle, key=lambda c: c._waiting_since)._close()
                return True
            slow = [c for c in mine if c._body_is_slow()]
            if slow:
                min(slow, key=lambda c: c._body_since)._body_too_slow("evicted")
                return True
            return False

        # -- headers --

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

        # -- body --

        def _watch_body(self) -> None:
            """Start the body clock when the client owes a body and it is not running; stop
            it when the body ended (each request of a connection has its own)."""
            if self.conn.their_state is not h11.SEND_BODY:
                self._stop_body_clock()
            elif self._body_timer is None and not self.transport.is_closing():
                now = self.loop.time()
                self._body_since = self._body_last = self._body_quiet_since = now
                self._body_waited = 0.0
                self._body_received = 0
                self._body_timer = self.loop.call_later(pace.tick, self._body_tick)

        def _stop_body_clock(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _waiting_for_body(self) -> bool:
            """The server waits for the client now (not paused, not owing 100 Continue)."""
            cycle = self.cycle
            return not (self.flow.read_paused
                        or (cycle is not None and cycle.waiting_for_100_continue))

        def _account_body(self) -> None:
            """Bring the clocks up to date (before the state they depend on changes)."""
            if self._body_timer is None:
                return
            now = self.loop.time()
            if self._waiting_for_body():
                self._body_waited += now - self._body_last
            else:
                self._body_quiet_since = now
            self._body_last = now

        def _body_is_slow(self) -> bool:
            """Sending its body, waited for a second at least, and slower than the
            minimum rate (or than a byte a second): the first to go at the cap."""
            if self._body_timer is None or self.transport.is_closing():
                return False
            self._account_body()
            return (self._waiting_for_body() and self._body_waited >= 1.0
                    and self._body_received < max(pace.min_rate, 1) * self._body_waited)

        def _body_tick(self) -> None:
            self._body_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
                return
            self._body_timer = self.loop.call_later(pace.tick, self._body_tick)
            self._account_body()
            quiet = self._body_last - self._body_quiet_since
            if quiet >= pace.timeout:
                self._body_too_slow("no_byte", quiet=round(quiet, 1))
            elif (pace.min_rate and self._body_waited >= pace.grace
                  and self._body_received < pace.min_rate * self._body_waited):
                self._body_too_slow("too_slow",
                                    rate=round(self._body_received / self._body_waited))

        def _body_too_slow(self, reason: str, **about: Any) -> None:
            """Answer 408 (when nothing was answered yet), tell the application the client
            left, and close."""
            self._stop_body_clock()
            log.warning("http_body_too_slow", reason=reason, client=self.client,
                        received=self._body_received, waited=round(self._body_waited, 1),
                        **about)
            cycle = self.cycle
            answered = cycle is not None and cycle.response_started
            if cycle is not None:
                cycle.disconnected = True  # the app reads a disconnect, its answer is dropped
                cycle.message_event.set()
            if not answered:
                self.transport.write(_raw_reply(408, b"Request Timeout", _TIMEOUT_REPLY))
                with contextlib.suppress(h11.LocalProtocolError):
                    self.conn.send(h11.ConnectionClosed())
            self.transport.close()

        # -- the protocol's events --

        def _close(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            self._stop_body_clock()
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
            if self.conn.their_state is not h11.SEND_BODY:
                self._stop_body_clock()  # the last body ended: the next one has its own
            if self._body_timer is not None and data:
                self._account_body()
                self._body_received += len(data)
                self._body_quiet_since = self._body_last
            super().data_received(data)
            self._watch_body()

        def send_400_response(self, msg: str) -> None:
            self._stop_body_clock()
            self.transport.write(_raw_reply(400, b"Bad Request", msg.encode("ascii", "replace")))
            self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()
                self._watch_body()  # a pipelined request may have begun

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            self._stop_body_clock()
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
