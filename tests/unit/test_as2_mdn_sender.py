"""AsyncMdnSender: pending asynchronous MDNs POSTed to a small local HTTP server (a stand-in
for the partner), retried with back-off, given up after the configured attempts."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.channels.as2.mdn_sender import (
    AsyncMdnSender,
    UnsupportedMdnUrl,
    check_mdn_url,
    retry_delay,
)
from gateway.channels.as2.records import As2Records
from gateway.channels.as2.settings import As2Settings
from gateway.store.archive import Archive
from gateway.store.db import Store

MDN_TYPE = 'multipart/report; report-type=disposition-notification; boundary="b1"'
MDN_BODY = (b"--b1\r\nContent-Type: text/plain\r\n\r\nreceived\r\n--b1\r\n"
            b"Content-Type: message/disposition-notification\r\n\r\n"
            b"Original-Message-ID: <m1@partner>\r\n"
            b"Disposition: automatic-action/MDN-sent-automatically; processed\r\n\r\n--b1--\r\n")
ARCHIVED = (b"AS2-From: edigw\r\nAS2-To: partner\r\nMessage-ID: <mdn-1@edigw>\r\n"
            + f"Content-Type: {MDN_TYPE}\r\n\r\n".encode() + MDN_BODY)
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


class PartnerServer:
    """A plain http.server answering POSTs with the next status of ``statuses`` (then 200),
    remembering what it was sent."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((dict(self.headers.items()), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/as2/mdn"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def partner_server() -> Iterator[PartnerServer]:
    server = PartnerServer()
    yield server
    server.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield store
    store.close()


def _settings(**kw: object) -> As2Settings:
    values: dict[str, object] = dict(mdn_max_attempts=3, mdn_retry_initial=10.0,
                                     mdn_retry_max=25.0, mdn_timeout=5.0)
    values.update(kw)
    return As2Settings(**values)


def _pending(store: Store, archive: Archive, url: str | None, *, message_id: str = "m1@partner",
             archived: bytes = ARCHIVED) -> str:
    key = archive.put(archived)
    row_id = As2Records(store).add(
        message_id=message_id, partner_id="retail", as2_from="partner", as2_to="edigw",
        transmission_id="t" * 32, disposition="processed", mdn_mode="async", mdn_signed=False,
        mdn_url=url, mdn_archive_key=key, mdn_content_type=MDN_TYPE, mdn_state="pending",
        mdn_next_at=NOW)
    assert row_id is not None
    return row_id


def _sender(store: Store, archive: Archive, **kw: object) -> AsyncMdnSender:
    return AsyncMdnSender(_settings(**kw), store, archive, rand=lambda: 0.0)


def test_due_mdn_is_posted_with_its_headers_and_recorded_sent(store, tmp_path, partner_server):
    """A pending MDN goes to its URL as archived (body, content type, AS2 headers); a 200
    makes it sent after one attempt."""
    archive = Archive(tmp_path / "archive", fsync=False)
    row_id = _pending(store, archive, partner_server.url)

    assert _sender(store, archive).deliver_due(NOW) == 1

    (headers, body), = partner_server.received
    assert body == MDN_BODY
    assert headers["Content-Type"] == MDN_TYPE
    assert headers["AS2-From"] == "edigw" and headers["AS2-To"] == "partner"
    assert headers["Message-ID"] == "<mdn-1@edigw>"
    row = As2Records(store).get(row_id)
    assert (row.mdn_state, row.mdn_attempts, row.mdn_last_error) == ("sent", 1, None)
    assert row.mdn_sent_at is not None and row.mdn_next_at is None


def test_mdn_not_due_yet_is_left_alone(store, tmp_path, partner_server):
    """An MDN whose next attempt is later is not sent."""
    archive = Archive(tmp_path / "archive", fsync=False)
    _pending(store, archive, partner_server.url)

    assert _sender(store, archive).deliver_due(NOW - dt.timedelta(seconds=1)) == 0
    assert partner_server.received == []


def test_refused_mdn_is_retried_with_doubling_backoff_then_sent(store, tmp_path):
    """Two 503 answers: the MDN stays pending, next attempt after 10 s then 20 s; the third
    attempt delivers it; three attempts recorded."""
    archive = Archive(tmp_path / "archive", fsync=False)
    server = PartnerServer([503, 500])
    try:
        row_id = _pending(store, archive, server.url)
        sender = _sender(store, archive)
        records = As2Records(store)

        assert sender.deliver_due(NOW) == 0
        row = records.get(row_id)
        assert (row.mdn_state, row.mdn_attempts) == ("pending", 1)
        assert row.mdn_next_at == NOW + dt.timedelta(seconds=10)
        assert "503" in row.mdn_last_error

        assert sender.deliver_due(NOW + dt.timedelta(seconds=5)) == 0  # not due yet
        assert sender.deliver_due(row.mdn_next_at) == 0
        row = records.get(row_id)
        assert (row.mdn_state, row.mdn_attempts) == ("pending", 2)
        assert row.mdn_next_at == NOW + dt.timedelta(seconds=10 + 20)

        assert sender.deliver_due(row.mdn_next_at) == 1
        row = records.get(row_id)
        assert (row.mdn_state, row.mdn_attempts, row.mdn_last_error) == ("sent", 3, None)
        assert len(server.received) == 3
    finally:
        server.close()


def test_mdn_failed_after_max_attempts(store, tmp_path):
    """A partner that never answers 2xx: failed after mdn_max_attempts, with the last error."""
    archive = Archive(tmp_path / "archive", fsync=False)
    server = PartnerServer([500] * 10)
    try:
        row_id = _pending(store, archive, server.url)
        sender = _sender(store, archive, mdn_max_attempts=2)
        sender.deliver_due(NOW)
        sender.deliver_due(NOW + dt.timedelta(hours=1))
        row = As2Records(store).get(row_id)
        assert (row.mdn_state, row.mdn_attempts) == ("failed", 2)
        assert row.mdn_next_at is None
        assert "gave up after 2 attempts" in row.mdn_last_error and "500" in row.mdn_last_error
        assert sender.deliver_due(NOW + dt.timedelta(days=1)) == 0
        assert len(server.received) == 2
    finally:
        server.close()


def test_connection_refused_is_an_attempt(store, tmp_path):
    """Nobody listening at the URL: the attempt is recorded and retried later."""
    archive = Archive(tmp_path / "archive", fsync=False)
    server = PartnerServer()
    url = server.url
    server.close()  # the port is now closed
    row_id = _pending(store, archive, url)
    _sender(store, archive).deliver_due(NOW)
    row = As2Records(store).get(row_id)
    assert (row.mdn_state, row.mdn_attempts) == ("pending", 1)
    assert row.mdn_last_error


@pytest.mark.parametrize(("url", "reason"), [
    ("mailto:edi@partner.example", "mailto"),
    ("ftp://partner.example/mdn", "'ftp'"),
    ("file:///etc/passwd", "'file'"),
    ("http:///no-host", "no host"),
])
def test_unsupported_url_fails_at_once_without_a_request(store, tmp_path, partner_server,
                                                        url, reason):
    """mailto: and non-HTTP URLs are refused: failed after one recorded attempt, with why."""
    archive = Archive(tmp_path / "archive", fsync=False)
    row_id = _pending(store, archive, url)
    assert _sender(store, archive).deliver_due(NOW) == 0
    row = As2Records(store).get(row_id)
    assert (row.mdn_state, row.mdn_attempts) == ("failed", 1)
    assert reason in row.mdn_last_error
    assert partner_server.received == []


def test_password_in_url_not_logged(store, tmp_path, partner_server, capsys):
    """A URL's password never reaches the log."""
    archive = Archive(tmp_path / "archive", fsync=False)
    url = partner_server.url.replace("http://", "http://edi:s3cr3t-word@")
    _pending(store, archive, url)
    assert _sender(store, archive).deliver_due(NOW) == 1
    out = capsys.readouterr()
    assert "s3cr3t-word" not in out.out + out.err
    assert "as2_mdn_delivered" in out.out + out.err


def test_retry_delay_is_capped_and_jittered() -> None:
    """10 s doubled per attempt, capped at 25 s; jitter adds at most 10 %."""
    s = _settings()
    assert [retry_delay(s, n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]
    assert retry_delay(s, 1, rand=lambda: 0.999) == pytest.approx(10.999, abs=0.01)
    assert retry_delay(s, 500, rand=lambda: 0.0) == 25


def test_check_mdn_url() -> None:
    """http and https pass as they are; mailto says it is not supported."""
    assert check_mdn_url(" https://partner.example/mdn ") == "https://partner.example/mdn"
    with pytest.raises(UnsupportedMdnUrl, match="not supported"):
        check_mdn_url("mailto:x@y")


def test_run_delivers_until_stopped(store, tmp_path, partner_server):
    """run() delivers due MDNs in the background and returns once stop is set."""
    archive = Archive(tmp_path / "archive", fsync=False)
    row_id = _pending(store, archive, partner_server.url)
    sender = _sender(store, archive)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, every=0.05))
        for _ in range(100):
            if partner_server.received:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert As2Records(store).get(row_id).mdn_state == "sent"


def test_wake_delivers_a_newly_queued_mdn_before_the_next_round(store, tmp_path, partner_server):
    """With rounds a minute apart, an MDN queued after the first round goes out at once when
    the endpoint wakes the sender (from another thread, as the endpoint runs in one)."""
    archive = Archive(tmp_path / "archive", fsync=False)
    sender = _sender(store, archive)
    sender.wake()  # before run(): nothing to wake, no error

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, every=60.0))
        await asyncio.sleep(0.2)  # the first round ran and found nothing
        assert not partner_server.received
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.to_thread(_pending, store, archive, partner_server.url)
        await asyncio.to_thread(sender.wake)
        while not partner_server.received and loop.time() - started < 10:
            await asyncio.sleep(0.02)
        took = loop.time() - started
        stop.set()
        await asyncio.wait_for(task, 5)
        return took

    assert asyncio.run(main()) < 5
    assert len(partner_server.received) == 1
