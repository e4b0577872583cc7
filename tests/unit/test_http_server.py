"""The HTTP server's own behaviour: health, readiness, body limit, endpoint errors, public URL."""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway.core.ports import WebReply, WebRequest
from gateway.http.server import HttpServer, build_app


class Echo:
    def __init__(self) -> None:
        self.seen: list[WebRequest] = []

    def handle(self, request: WebRequest) -> WebReply:
        self.seen.append(request)
        return WebReply(201, request.body.upper(), "application/x-test", {"X-Seen": "1"})


class Broken:
    def handle(self, request: WebRequest) -> WebReply:
        raise RuntimeError("boom")


@pytest.fixture
def served():
    servers: list[HttpServer] = []

    def serve(**kwargs) -> HttpServer:
        server = HttpServer(build_app(**kwargs), port=0).start_in_thread()
        servers.append(server)
        return server

    yield serve
    for s in servers:
        s.stop()


def test_healthz_answers_without_any_check(served):
    def never() -> str | None:
        raise AssertionError("healthz must not run readiness checks")

    server = served(ready=[("store", never)])
    r = httpx.get(server.url + "/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_readyz_names_each_failing_check(served):
    def broken() -> str | None:
        raise OSError("disk gone")

    server = served(ready=[("store", lambda: None), ("broker", lambda: "not connected: refused"),
                           ("disk", broken)])
    r = httpx.get(server.url + "/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "checks": {
        "store": "ok", "broker": "not connected: refused", "disk": "OSError: disk gone"}}
    ok = served(ready=[("store", lambda: None)])
    assert httpx.get(ok.url + "/readyz").json() == {"status": "ready", "checks": {"store": "ok"}}


def test_post_reaches_the_endpoint_with_lower_case_headers_and_the_client(served):
    echo = Echo()
    server = served(endpoints={"/as2": echo})
    r = httpx.post(server.url + "/as2?a=1", content=b"payload", headers={"AS2-From": "X"})
    assert (r.status_code, r.content, r.headers["x-seen"]) == (201, b"PAYLOAD", "1")
    assert r.headers["content-type"] == "application/x-test"
    req = echo.seen[0]
    assert req.headers["as2-from"] == "X" and req.remote == "127.0.0.1"
    assert req.url == server.url + "/as2?a=1" and req.method == "POST"
    assert httpx.get(server.url + "/as2").status_code == 405


def test_public_url_replaces_scheme_and_host(served):
    echo = Echo()
    server = served(endpoints={"/sms/twilio": echo}, public_url="https://edi.example.com/")
    httpx.post(server.url + "/sms/twilio?x=y", content=b"a=b")
    assert echo.seen[0].url == "https://edi.example.com/sms/twilio?x=y"


def test_body_over_the_limit_is_refused_before_the_endpoint(served):
    echo = Echo()
    server = served(endpoints={"/as2": echo}, max_body=100)
    assert httpx.post(server.url + "/as2", content=b"x" * 101).status_code == 413

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(5):
            yield b"y" * 30

    assert httpx.post(server.url + "/as2", content=chunks()).status_code == 413
    assert httpx.post(server.url + "/as2", content=b"x" * 100).status_code == 201
    assert len(echo.seen) == 1


def test_an_endpoint_that_raises_gives_500_and_the_server_goes_on(served):
    server = served(endpoints={"/as2": Broken()})
    r = httpx.post(server.url + "/as2", content=b"x")
    assert r.status_code == 500 and b"nothing was acknowledged" in r.content
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_accepted_connections_do_not_wait_for_delayed_acks(served):
    """Each accepted socket has TCP_NODELAY (asyncio sets it only when the listening socket
    says IPPROTO_TCP): an answer on a kept-alive connection is not held back ~40 ms."""
    server = served(endpoints={})
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200  # the same kept-alive connection
        connections = list(server.server.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

