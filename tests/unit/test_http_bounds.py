"""Bounded HTTP (issue 13, "trust"): what one anonymous or slow client may cost the server.

- a body over its route's own limit is refused with 413 before it is buffered, declared
  (Content-Length) or streamed (chunked);
- a client that does not finish its request headers in time is closed, and idle connections
  beyond the cap make room for new ones: /healthz still answers;
- every response carries the security headers (no framing);
- an out-of-range number in a URL is a 422, not a 500 from the store;
- a short or common password is refused wherever a password is set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.app import Gateway
from gateway.channels.as2.endpoint import As2Endpoint
from gateway.channels.sms.webhook import TwilioWebhook
from gateway.cli import main
from gateway.config import As2Settings, GatewaySettings, SmsSettings, load_partners
from gateway.core.ports import WebReply, WebRequest
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
