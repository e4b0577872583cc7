"""Bounded HTTP (issue 13, "trust"): what one anonymous or slow client may cost the server.

- a body over its route's own limit is refused with 413 before it is buffered, declared
  (Content-Length) or streamed (chunked);
- a client that does not finish its request headers in time is closed, and idle connections
  beyond the cap make room for new ones: /healthz still answers;
- a client sending its request body too slowly (or not at all) is answered 408 and closed,
  and slow bodies filling the connection cap make room for /healthz; a big upload the
  route reads slowly (flow control) is not cut;
- every response carries the security headers (no framing), a 500 and a 503 included;
- ``edigw tokens create --days`` refuses a number of days that would overflow;
- an out-of-range number in a URL is a 422, not a 500 from the store;
- a short or common password is refused wherever a password is set.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.app import Gateway
from gateway.channels.as2.endpoint import As2Endpoint
from gateway.channels.as2.settings import As2Settings
from gateway.channels.sms.settings import SmsSettings
from gateway.channels.sms.webhook import TwilioWebhook
from gateway.cli import main
from gateway.config import GatewaySettings, load_partners
from gateway.core.ports import WebReply, WebRequest
from gateway.http.bounds import BodyPace
from gateway.http.server import HttpServer, build_app
from gateway.web.auth import UserError, Users

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-enough-password"
HUGE = "99999999999999999999"  # > 2**64


@pytest.fixture
def console(tmp_path):
    partners = tmp_path / "partners"
    partners.mkdir()
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=partners,
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=load_partners(partners))
    for name, role in (("olga", "operator"), ("ada", "admin")):
        Users(gw.store).create(name, PASSWORD, role)
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    yield gw, server
    server.stop()
    gw.close()


def _login(server: HttpServer, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url)
    r = client.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def _connect(server: HttpServer, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    return sock


def _status_of(sock: socket.socket) -> int:
    """The status code of the response read from ``sock`` (0 when it closed first)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def _send_chunked(sock: socket.socket, path: str, total: int, chunk: int = 64 * 1024) -> int:
    """POST a chunked body of ``total`` bytes, stopping early when the server answers (or
    closes); returns the status it answered with."""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    block = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # an answer before the end of the body
            except BlockingIOError:
                pass
            try:
                sock.sendall(block)
            except (BrokenPipeError, ConnectionResetError):
                break
            except BlockingIOError:
                time.sleep(0.01)
                continue
            sent += chunk
        else:
            sock.setblocking(True)
            sock.sendall(b"0\r\n\r\n")
    finally:
        sock.setblocking(True)
    sock.settimeout(10)
    return _status_of(sock)


# -- bodies ---------------------------------------------------------------------------------


def test_login_with_a_declared_huge_body_is_refused_before_reading_it(console):
    _gw, server = console
    with _connect(server) as sock:
        sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n")
        assert _status_of(sock) == 413  # without a byte of the body sent


def test_login_with_a_chunked_body_over_max_json_is_refused_while_streaming(console):
    _gw, server = console
    with _connect(server) as sock:
        assert _send_chunked(sock, "/api/login", 8 << 20) == 413


def test_a_console_form_over_max_json_is_refused(console):
    _gw, server = console
    r = httpx.post(server.url + "/login", content=b"username=" + b"a" * (200 << 10),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_small_bodies_still_pass(console):
    _gw, server = console
    assert httpx.post(server.url + "/api/login",
                      json={"username": "ada", "password": PASSWORD}).status_code == 200


def test_certificate_uploads_take_more_than_max_json_but_not_max_body(console):
    _gw, server = console
    admin = _login(server, "ada")
    r = admin.post("/api/partners/nobody/as2/certificates", content=b"x" * (100 << 10))
    assert r.status_code != 413  # refused further on (no such partner), not for its size
    r = admin.post("/api/partners/nobody/as2/certificates", content=b"x" * (2 << 20))
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"  # an API error, RFC 9457
    assert r.json()["instance"] == "/api/partners/nobody/as2/certificates"
    assert "limit of this route" in r.json()["detail"]


class _Echo:
    """An endpoint that declares its own body limit."""

    max_body = 1000

    def handle(self, request: WebRequest) -> WebReply:
        return WebReply(200, b"%d" % len(request.body))


def test_an_endpoint_is_held_to_its_own_limit_not_max_body():
    server = HttpServer(build_app(endpoints={"/sms/echo": _Echo()}, max_body=200 << 20),
                        port=0).start_in_thread()
    try:
        assert httpx.post(server.url + "/sms/echo", content=b"x" * 900).text == "900"
        assert httpx.post(server.url + "/sms/echo", content=b"x" * 1001).status_code == 413
        with _connect(server) as sock:
            assert _send_chunked(sock, "/sms/echo", 4 << 20, chunk=512) == 413
    finally:
        server.stop()


def test_sms_and_as2_endpoints_declare_their_own_limits():
    sms = TwilioWebhook.__new__(TwilioWebhook)
    sms.settings = SmsSettings()
    assert 12 * sms.settings.max_length < sms.max_body <= 64 * 1024
    as2 = As2Endpoint.__new__(As2Endpoint)
    as2.settings = As2Settings(max_size=5 << 20)
    assert as2.max_body == 5 << 20


# -- slow and idle clients ----------------------------------------------------------------------


def test_a_client_trickling_its_headers_is_closed_at_the_header_deadline():
    server = HttpServer(build_app(), port=0, header_timeout=0.5).start_in_thread()
    try:
        with _connect(server) as sock:
            start = time.monotonic()
            closed = False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sock.settimeout(0.1)
                try:
                    if sock.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
                    break
            assert closed, "the server waited for the headers past its deadline"
            assert time.monotonic() - start < 3
    finally:
        server.stop()


def test_idle_connections_beyond_the_cap_make_room_for_healthz():
    server = HttpServer(build_app(), port=0, header_timeout=60,
                        max_connections=20).start_in_thread()
    idle = []
    try:
        for _ in range(60):
            idle.append(_connect(server))
        start = time.monotonic()
        r = httpx.get(server.url + "/healthz", timeout=5)
        assert r.status_code == 200 and time.monotonic() - start < 2
        time.sleep(0.3)
        closed = 0
        for sock in idle:
            sock.settimeout(0.05)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 40, f"only {closed} of 60 idle connections closed with a cap of 20"
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def _start_body(server: HttpServer, path: str = "/sms/echo", length: int = 1000,
                first: bytes = b"x") -> socket.socket:
    """A connection that sent its request headers (``Content-Length: length``) and the first
    bytes of the body."""
    sock = _connect(server)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + first)
    return sock


def _answer_of(sock: socket.socket, timeout: float) -> bytes:
    """What the server wrote before closing ``sock`` (or within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _trickle(socks: list[socket.socket], every: float, stop: threading.Event) -> None:
    """Send one byte on each socket every ``every`` seconds until ``stop``."""
    while not stop.wait(every):
        for sock in socks:
            try:
                sock.send(b"x")
            except OSError:
                pass


def test_a_body_that_stops_coming_is_answered_408_at_the_body_deadline():
    """Headers and 10 bytes of a 1,000-byte body, then nothing: 408 after body_timeout."""
    server = HttpServer(build_app(endpoints={"/sms/echo": _Echo()}), port=0,
                        body=BodyPace(timeout=1.0, min_rate=0, grace=60)).start_in_thread()
    try:
        with _start_body(server, first=b"x" * 10) as sock:
            started = time.monotonic()
            answer = _answer_of(sock, 10)
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert b"x-frame-options: DENY" in answer
        assert 0.9 < took < 4, f"answered after {took:.1f}s"
        assert httpx.post(server.url + "/sms/echo", content=b"x" * 900).text == "900"
    finally:
        server.stop()


def test_a_body_trickled_below_the_minimum_rate_is_cut_after_the_grace():
    """A byte every 0.2 s (5 B/s, never 1 s without a byte) against min_rate 100 B/s after a
    1 s grace: 408 soon after the grace, not when the body would end."""
    server = HttpServer(build_app(endpoints={"/sms/echo": _Echo()}), port=0,
                        body=BodyPace(timeout=1.0, min_rate=100, grace=1.0)).start_in_thread()
    stop = threading.Event()
    try:
        with _start_body(server) as sock:
            trickler = threading.Thread(target=_trickle, args=([sock], 0.2, stop), daemon=True)
            trickler.start()
            started = time.monotonic()
            answer = _answer_of(sock, 10)
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert took < 4, f"answered after {took:.1f}s"
    finally:
        stop.set()
        server.stop()


def test_slow_bodies_filling_the_cap_make_room_for_healthz():
    """The reported case: max_connections=10, header_timeout=1, ten POSTs declaring 1,000
    bytes and sending a byte every 3 s; a new GET /healthz is answered 200 at once, by
    closing (408) the oldest slow one, and all ten are gone at the pace's deadline."""
    server = HttpServer(build_app(endpoints={"/sms/echo": _Echo()}), port=0,
                        header_timeout=1, max_connections=10,
                        body=BodyPace(timeout=15, min_rate=1024, grace=3)).start_in_thread()
    stop = threading.Event()
    slow = [_start_body(server) for _ in range(10)]
    try:
        threading.Thread(target=_trickle, args=(slow, 3.0, stop), daemon=True).start()
        time.sleep(1.5)
        started = time.monotonic()
        r = httpx.get(server.url + "/healthz", timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 2
        assert _answer_of(slow[0], 1).startswith(b"HTTP/1.1 408 ")  # the oldest went
        answers = [_answer_of(sock, 6) for sock in slow[1:]]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), \
            [a[:20] for a in answers]
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        server.stop()


def test_each_request_of_a_keep_alive_connection_has_its_own_body_clock():
    """Fourteen requests on one connection, each body (10 bytes) sent 0.45 s after its
    headers: no single body is slow past the 4 s grace, so none is cut, though the
    connection as a whole sends far below min_rate for 6 s."""
    server = HttpServer(build_app(endpoints={"/sms/echo": _Echo()}), port=0,
                        body=BodyPace(timeout=15, min_rate=1000, grace=4)).start_in_thread()
    try:
        with _connect(server) as sock:
            for i in range(14):
                sock.sendall(b"POST /sms/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
                time.sleep(0.45)
                sock.sendall(b"x" * 10)
                sock.settimeout(5)
                answer = b""
                while not answer.endswith(b"\r\n\r\n10") and (chunk := sock.recv(4096)):
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"10"), \
                    (i, answer[:80])
    finally:
        server.stop()


def test_every_connection_busy_is_refused_503_with_the_security_headers():
    """At the cap with every connection in a request (none idle, none slow), a new one is
    answered 503, and that answer carries the headers too."""
    async def slow(request: Request) -> Response:
        await asyncio.sleep(3)
        return PlainTextResponse("done")

    server = HttpServer(build_app(routes=[Route("/slow", slow)]), port=0,
                        max_connections=10).start_in_thread()
    busy = [_connect(server) for _ in range(10)]
    try:
        for sock in busy:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)
        with _connect(server) as sock:
            answer = _answer_of(sock, 5)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"x-frame-options: DENY" in answer
    finally:
        for sock in busy:
            sock.close()
        server.stop()


def test_a_big_upload_read_slowly_by_its_route_is_not_cut():
    """1 MiB sent at once to a route that takes 0.4 s per chunk it reads: uvicorn pauses
    reading (flow control) and the body clocks stop meanwhile, so a pace far stricter than
    the route's reading (0.3 s without a byte, 1 MiB/s after 0.3 s) does not cut it."""
    async def slow_reader(request: Request) -> Response:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            await asyncio.sleep(0.4)
        return PlainTextResponse(str(size))

    app = build_app(routes=[Route("/upload", slow_reader, methods=["POST"])],
                    body_limits=[("/upload", 8 << 20)])
    server = HttpServer(app, port=0, body=BodyPace(timeout=0.3, min_rate=1 << 20, grace=0.3)
                        ).start_in_thread()
    try:
        started = time.monotonic()
        r = httpx.post(server.url + "/upload", content=b"x" * (1 << 20), timeout=60)
        assert r.status_code == 200 and r.text == str(1 << 20), r.text[:80]
        assert time.monotonic() - started > 1.0  # the route did read slowly
    finally:
        server.stop()


def test_the_fd_soft_limit_is_raised_to_the_hard_limit():
    script = ("import resource\n"
              "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
              "from gateway.http.server import HttpServer, build_app\n"
              "HttpServer(build_app(), port=0)\n"
              "now = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
              "print(now[0], hard if hard != resource.RLIM_INFINITY else 1 << 20)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    soft, hard = map(int, out.stdout.splitlines()[-1].split())  # after the log lines
    assert soft == hard > 256


# -- security headers -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/", "/api/me", "/static/console.js",
                                  "/healthz", "/transmissions"])
def test_every_response_carries_the_security_headers(console, path):
    _gw, server = console
    r = httpx.get(server.url + path)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] in ("no-referrer", "same-origin")


def test_a_500_from_a_route_that_raises_carries_the_security_headers():
    """Starlette's outer error handler answers 500 outside the app's middleware; the
    headers are added around it."""
    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    server = HttpServer(build_app(routes=[Route("/boom", boom)]), port=0).start_in_thread()
    try:
        r = httpx.get(server.url + "/boom")
        assert r.status_code == 500
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
    finally:
        server.stop()


def test_pages_of_a_logged_in_user_carry_them_and_load_only_same_origin_code(console):
    _gw, server = console
    client = _login(server, "ada")
    for path in ("/", "/transmissions", "/alerts", "/audit", "/partners"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY"
        # The CSP allows no inline code: the pages have none.
        assert "<script>" not in r.text and " style=" not in r.text and "<style" not in r.text
        assert " onclick=" not in r.text and "javascript:" not in r.text


# -- numbers in URLs --------------------------------------------------------------------------


def test_out_of_range_numbers_are_422_not_500(console):
    _gw, server = console
    admin = _login(server, "ada")
    for method, path in (("POST", f"/api/alerts/{HUGE}/acknowledge"),
                         ("POST", f"/api/alerts/{HUGE}/resolve"),
                         ("DELETE", f"/api/tokens/{HUGE}"),
                         ("GET", f"/api/transmissions?offset={HUGE}"),
                         ("GET", f"/api/transmissions?limit={HUGE}"),
                         ("GET", f"/api/audit?offset={HUGE}"),
                         ("GET", f"/api/alerts?limit={HUGE}"),
                         ("GET", "/api/transmissions?since=0001-01-01T00:00:00%2B05:00"),
                         ("GET", "/api/stats?until=0001-01-02T00:00:00Z")):
        r = admin.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 422, (method, path, r.status_code, r.text)
    r = admin.post(f"/alerts/{HUGE}/acknowledge", data={"csrf_token": admin.headers["X-CSRF-Token"]})
    assert r.status_code == 422
    assert admin.get("/transmissions?until=9999-12-31&since=0001-01-01").status_code == 200


# -- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["x", "short-pw", "password1234", "Qwertyuiop123",
                                      "aaaaaaaaaaaaaaaa", "abababababababab"])
def test_short_or_common_passwords_are_refused(console, password):
    gw, _server = console
    with pytest.raises(UserError):
        Users(gw.store).create("newbie", password, "viewer")
    with pytest.raises(UserError):
        Users(gw.store).set_password("ada", password)


def test_the_api_refuses_a_weak_password(console):
    _gw, server = console
    admin = _login(server, "ada")
    r = admin.post("/api/users", json={"username": "marie", "password": "p", "role": "viewer"})
    assert r.status_code == 400 and "12 characters" in r.json()["detail"]
    r = admin.patch("/api/users/olga", json={"password": "iloveyou1234"})
    assert r.status_code == 400 and "common" in r.json()["detail"]
    assert admin.post("/api/users", json={"username": "marie", "password": PASSWORD,
                                          "role": "viewer"}).status_code == 201


def test_the_cli_refuses_a_weak_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{tmp_path}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite3"}"\n'
        f'[archive]\npath = "{tmp_path / "archive"}"\n')
    env = {"WEAK": "welcome", "STRONG": PASSWORD}
    r = CliRunner(env=env).invoke(main, ["--config", "gateway.toml", "users", "add", "ann",
                                         "--role", "admin", "--password-env", "WEAK"])
    assert r.exit_code != 0 and "too short" in r.output
    r = CliRunner(env=env).invoke(main, ["--config", "gateway.toml", "users", "add", "ann",
                                         "--role", "admin", "--password-env", "STRONG"])
    assert r.exit_code == 0, r.output


def test_the_common_password_list_ships_with_the_package():
    from gateway.web import auth

    assert auth.COMMON_PASSWORDS.is_file()
    assert len(auth._common_passwords()) > 1000
    assert 'common-passwords.txt' in (ROOT / "pyproject.toml").read_text()


def test_the_cli_refuses_a_token_life_that_overflows_dates(tmp_path, monkeypatch):
    """``tokens create --days`` beyond 100 years is a usage error naming the range, not an
    OverflowError; 100 years exactly still works."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{tmp_path}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite3"}"\n'
        f'[archive]\npath = "{tmp_path / "archive"}"\n')
    runner = CliRunner(env={"PW": PASSWORD})
    base = ["--config", "gateway.toml"]
    r = runner.invoke(main, [*base, "users", "add", "ann", "--role", "admin",
                             "--password-env", "PW"])
    assert r.exit_code == 0, r.output
    for days in (HUGE, "3000000", "36501"):
        r = runner.invoke(main, [*base, "tokens", "create", "--user", "ann", "--name", "erp",
                                 "--days", days])
        assert r.exit_code == 2, (days, r.output)
        assert "--days" in r.output and "36500" in r.output, r.output
    r = runner.invoke(main, [*base, "tokens", "create", "--user", "ann", "--name", "erp",
                             "--days", "36500"])
    assert r.exit_code == 0, r.output
