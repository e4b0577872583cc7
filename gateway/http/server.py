"""The gateway's HTTP server (Starlette, served by uvicorn inside ``edigw serve``).

Routes:

- ``GET /healthz``: the process answers (liveness); never touches the store or broker.
- ``GET /readyz``: the store answers a query and the broker is connected (readiness); 503
  with the reasons otherwise.
- ``POST`` routes the channels contribute (``ChannelRun.endpoints``): partners' messages and
  providers' webhooks.

Channel endpoints know nothing of Starlette: each takes a ``WebRequest`` and returns a
``WebReply`` (``gateway.core.ports``), and runs in a worker thread because it writes to the
store and the archive.

What one client may cost is bounded (``gateway.http.bounds``): every route has its own body
limit (a channel endpoint's ``max_body`` attribute, ``body_limits`` patterns
such as certificate uploads, else ``max_json`` for the login, the API and the console's
forms), never above ``max_body``; a body over it is refused with 413 before it is buffered.
Request headers must arrive within ``header_timeout`` seconds, a request body at the pace of
``BodyPace`` (else 408), an idle keep-alive connection is closed after ``keep_alive``
seconds, and at most ``max_connections`` are open at once. Every response carries the
security headers (CSP, X-Frame-Options …), a 500 from Starlette's error handler included.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.core.errors import RequestRefused
from gateway.core.ports import WebReply, WebRequest
from gateway.http.bounds import (
    BodyLimit,
    BodyPace,
    RouteLimits,
    SecurityHeaders,
    bounded_protocol,
    raise_fd_limit,
)

log = structlog.get_logger("edigw.http")


class Endpoint(Protocol):
    """A channel endpoint: one request in, one reply out (called in a worker thread)."""

    def handle(self, request: WebRequest) -> WebReply:
        ...


#: Readiness: a name and a check returning None when fine, else the reason.
ReadyCheck = tuple[str, Callable[[], str | None]]


class BodyTooLarge(RequestRefused):
    """A request body over its route's limit (answered 413)."""


class _GatewayApp(Starlette):
    """Starlette with ``SecurityHeaders`` outside its error handler: the 500 it answers for
    an exception carries the headers too (user middleware runs inside that handler)."""

    def build_middleware_stack(self) -> Any:
        return SecurityHeaders(super().build_middleware_stack())


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _public_url(request: Request, public_url: str | None) -> str:
    """The URL the client called: behind a proxy, ``public_url`` replaces scheme and host
    (webhook signatures cover the URL exactly as the provider called it)."""
    if not public_url:
        return str(request.url)
    path = request.url.path
    query = ("?" + request.url.query) if request.url.query else ""
    return public_url.rstrip("/") + path + query


def build_app(*, endpoints: dict[str, Endpoint] | None = None,
              ready: list[ReadyCheck] | None = None, max_body: int = 200 << 20,
              max_json: int = 64 << 10, body_limits: list[tuple[str, int]] | None = None,
              public_url: str | None = None, routes: list[BaseRoute] | None = None,
              state: dict[str, Any] | None = None,
              about: Callable[[], dict[str, Any]] | None = None) -> Starlette:
    """The ASGI app. ``endpoints`` maps a path (as channels contribute them) to the endpoint
    that answers POSTs there (its body limit is its ``max_body`` attribute, else
    ``max_body``); ``ready`` are the readiness checks; ``routes`` are more routes (the
    operator console: its API, pages and /metrics) and ``state`` what they find on
    ``app.state``. ``body_limits`` (else ``state["body_limits"]``) are (path pattern, limit)
    pairs for other routes that take more than ``max_json`` (uploads); every limit is capped
    at ``max_body``. ``about`` adds what it returns to /readyz's answer (this instance, its
    heartbeat and leases)."""
    endpoints = dict(endpoints or {})
    checks = list(ready or [])
    if body_limits is None:  # the console says which of its routes take more
        body_limits = (state or {}).get("body_limits")
    own = {path: int(getattr(ep, "max_body", max_body)) for path, ep in endpoints.items()}
    limits = RouteLimits(max_json, [*((re.escape(p), n) for p, n in own.items()),
                                    *(body_limits or [])], ceiling=max_body)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        results = {}
        for name, check in checks:
            try:
                problem = await asyncio.to_thread(check)
            except Exception as exc:  # a check that breaks is a check that fails
                problem = f"{type(exc).__name__}: {exc}"
            results[name] = problem or "ok"
        ok = all(v == "ok" for v in results.values())
        answer: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": results}
        if about is not None:
            try:
                answer.update(await asyncio.to_thread(about))
            except Exception as exc:  # the store is away: the checks say so already
                answer["instances"] = f"unknown: {type(exc).__name__}"
        return JSONResponse(answer, status_code=200 if ok else 503)

    def post_route(path: str, endpoint: Endpoint) -> Route:
        limit = limits(path)

        async def handle(request: Request) -> Response:
            try:
                body = await _read_body(request, limit)
            except ClientDisconnect:  # gone, or cut off by BodyLimit (which answered 413)
                return Response(status_code=400)
            except BodyTooLarge:
                return PlainTextResponse(f"request body over the {limit}-byte limit\n",
                                         status_code=413)
            client = request.client
            req = WebRequest(method=request.method, url=_public_url(request, public_url),
                             headers={k.lower(): v for k, v in request.headers.items()},
                             body=body, remote=client.host if client else None)
            try:
                reply = await asyncio.to_thread(endpoint.handle, req)
            except Exception:
                log.exception("endpoint_failed", path=path, remote=req.remote)
                return PlainTextResponse("internal error; nothing was acknowledged\n",
                                         status_code=500)
            return Response(reply.body, status_code=reply.status,
                            media_type=reply.content_type, headers=reply.headers)

        return Route(path, handle, methods=["POST"], name=path.strip("/").replace("/", "-"))

    extra = routes
    routes = [Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"])]
    routes += [post_route(path, ep) for path, ep in endpoints.items()]
    app = _GatewayApp(routes=[*routes, *(extra or [])],
                      middleware=[Middleware(BodyLimit, limits)])
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app


class HttpServer:
    """uvicorn serving an app, in the gateway's event loop (``serve``) or in a thread of its
    own (``start_in_thread``, for tests and tools). ``port`` 0 takes a free port; ``port``
    tells which once started. ``header_timeout``, ``body`` (the pace of a request body),
    ``keep_alive`` (seconds) and ``max_connections`` bound what idle or slow clients hold
    (``gateway.http.bounds``); the process's soft limit of open files is raised to its hard
    limit."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8080, *,
                 header_timeout: float = 10.0, keep_alive: int = 5,
                 max_connections: int = 500, body: BodyPace | None = None) -> None:
        raise_fd_limit()
        self.app = app
        self.host = host
        # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on accepted sockets
        # whose protocol says TCP, and without it every answer on a kept-alive connection
        # waited for the client's delayed ACK (~40 ms).
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                   socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5,
                                http=bounded_protocol(header_timeout, max_connections, body),
                                timeout_keep_alive=keep_alive,
                                backlog=max(128, min(4096, max_connections)))
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        task = asyncio.create_task(self.server.serve(sockets=[self._sock]))
        log.info("http_listening", url=self.url)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        stopping.cancel()

    async def started(self, timeout: float = 10.0) -> bool:
        """Wait until uvicorn accepts connections (``serve`` runs as a task)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if loop.time() > deadline:
                log.warning("http_start_slow", url=self.url, waited=timeout)
                return False
            await asyncio.sleep(0.01)
        return True

    def start_in_thread(self) -> HttpServer:
        self._thread = threading.Thread(target=self.server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="http")
        self._thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
