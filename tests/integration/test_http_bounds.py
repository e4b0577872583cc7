"""Bounded HTTP against a real ``edigw serve`` (issue 13, "trust"):

- a 300 MB anonymous body to /api/login (declared, then chunked) and to /sms/twilio is
  refused with 413 while the process grows by less than 20 MB;
- 1,100 idle connections against a server started with a soft limit of 1,024 open files
  neither stop /healthz from answering within 2 s nor the inbox from being read;
- ten logins sending their body a byte every 3 s against ``max_connections = 10`` do not
  shut /healthz out, and are answered 408 at the body pace's deadline.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.e2e import ACME_UNB, Service, Workspace, clean_env, order_file

pytestmark = pytest.mark.integration

BODY = 300 << 20


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _open_files_limit(pid: int) -> int:
    """The soft limit of open files of ``pid``."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no Max open files")


def _blocks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = b"x" * size
    for _ in range(total // size):
        yield block


def _post(url: str, *, declared: bool) -> int:
    """POST a ``BODY``-byte body streamed from a generator (with Content-Length, else
    chunked); the status the server answered with."""
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(BODY)
    with httpx.Client(timeout=60) as client:
        r = client.post(url, content=_blocks(BODY), headers=headers)
        return r.status_code


class LowFdService(Service):
    """``edigw serve`` started with a soft limit of 1,024 open files (a common default)."""

    def start(self) -> None:
        self._log = self.log_path.open("wb")

        def low_limit() -> None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--config", str(self.ws.config), "serve"],
            cwd=self.ws.root, env=clean_env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=low_limit)


def _serve(ws: Workspace, cls: type[Service] = Service) -> Service:
    ws.store  # noqa: B018 - migrate before the service starts
    service = cls(ws)
    ws.services.append(service)
    service.start()
    service.wait_for_log("gateway_started", 30)
    return service


def test_huge_anonymous_bodies_are_refused_without_taking_memory(tmp_path, store_url,
                                                                  rabbit_url):
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.extra_config = '\n[sms]\n[sms.twilio]\nauth_token = "twilio-token-for-tests"\n'
        ws.write_config()
        service = _serve(ws)
        url = service.http_url
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.post(url + "/api/login", json={"username": "x", "password": "y"}
                          ).status_code == 401  # warm: the login path has run once
        assert service.proc is not None
        before = _rss(service.proc.pid)
        for path, declared in (("/api/login", True), ("/api/login", False),
                               ("/sms/twilio", True), ("/sms/twilio", False)):
            started = time.monotonic()
            assert _post(url + path, declared=declared) == 413, (path, declared)
            assert time.monotonic() - started < 30
        grown = _rss(service.proc.pid) - before
        print(f"RSS of edigw serve: {before >> 20} MB, grown by {grown >> 10} KiB")
        assert grown < 20 << 20, f"edigw serve grew by {grown >> 20} MB for refused bodies"
        assert httpx.get(url + "/healthz").status_code == 200


def test_a_thousand_idle_connections_do_not_stop_healthz_nor_the_inbox(tmp_path, store_url,
                                                                      rabbit_url):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2000:
        pytest.skip("this process cannot open 1,100 sockets")
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.add_partner("acme", *ACME_UNB)
        service = _serve(ws, LowFdService)
        url = service.http_url
        host, port = urlsplit(url).hostname, urlsplit(url).port
        idle: list[socket.socket] = []
        try:
            for _ in range(1100):
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.connect((host, port))
                except BlockingIOError:
                    pass
                idle.append(sock)
            time.sleep(1.0)  # the server accepts them (and closes those beyond its cap)
            started = time.monotonic()
            r = httpx.get(url + "/healthz", timeout=5)
            assert r.status_code == 200 and time.monotonic() - started < 2, \
                f"/healthz took {time.monotonic() - started:.1f}s"
            ws.drop("held.edi", order_file(1))
            service.wait_until(lambda: ws.settled("held.edi"), 30,
                               "the inbox read while 1,100 connections are open")
        finally:
            for sock in idle:
                sock.close()
        assert service.alive
        assert service.proc is not None
        assert _open_files_limit(service.proc.pid) > 1024, "the soft limit was not raised"


def test_slow_login_bodies_at_the_cap_neither_shut_out_healthz_nor_stay_open(tmp_path,
                                                                            store_url,
                                                                            rabbit_url):
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.write_config()
        text = ws.config.read_text()
        assert "[http]\nport = 0\n" in text
        ws.config.write_text(text.replace(
            "[http]\nport = 0\n", "[http]\nport = 0\nmax_connections = 10\nheader_timeout = 1\n"
            "body_timeout = 15\nmin_body_rate = 1024\n"))
        service = _serve(ws)
        url = service.http_url
        host, port = urlsplit(url).hostname, urlsplit(url).port
        slow: list[socket.socket] = []
        try:
            for _ in range(10):
                sock = socket.create_connection((host, port), timeout=5)
                sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                slow.append(sock)
            started = time.monotonic()
            answers = [b""] * len(slow)
            healthz = None
            while time.monotonic() - started < 20 and not all(answers):
                time.sleep(3 - (time.monotonic() - started) % 3)
                if healthz is None:
                    t0 = time.monotonic()
                    r = httpx.get(url + "/healthz", timeout=5)
                    healthz = (r.status_code, time.monotonic() - t0)
                for i, sock in enumerate(slow):
                    if answers[i]:
                        continue
                    sock.settimeout(0.01)
                    try:
                        answers[i] = sock.recv(4096) or b"closed"
                    except TimeoutError:
                        try:
                            sock.send(b" ")  # a byte every 3 s
                        except OSError:
                            answers[i] = b"closed"
                    except OSError:
                        answers[i] = b"closed"
            assert healthz is not None and healthz[0] == 200 and healthz[1] < 2, healthz
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), \
                [a[:20] for a in answers]
            print(f"10 slow logins answered 408 within {time.monotonic() - started:.1f}s")
            assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        finally:
            for sock in slow:
                sock.close()
        assert service.alive
        assert "http_body_too_slow" in service.log_path.read_text()
