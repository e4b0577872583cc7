"""The mailbox channel against a real Dovecot, with aiosmtpd as the SMTP peer."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools

import pytest

from gateway.channels.email.imap import ImapSession
from gateway.core.errors import StoreError
from gateway.store import schema as s
from tests.integration.dovecot import Dovecot, _alive_in_group, start_dovecot
from tests.integration.mailtest import (
    PARTNER_ADDRESS,
    SmtpPeer,
    channel,
    core,
    mail,
    mailbox,
    order,
    replies_for,
    wait_until,
    zipped,
)

pytestmark = pytest.mark.integration

_folders = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot():
    server = start_dovecot()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture
def folder(dovecot: Dovecot) -> str:
    """A fresh folder of the test mailbox for this test."""
    name = f"t{next(_folders)}"
    dovecot.create(name)
    return name


@pytest.fixture
def smtp():
    peer = SmtpPeer().start()
    yield peer
    peer.stop()


async def poll(ch) -> int:
    session = await ImapSession.open(ch.settings)
    try:
        return await ch.poll_once(session)
    finally:
        await session.close()


def test_mail_with_two_attachments_gives_two_transmissions_and_one_acknowledgement(
        dovecot, folder, smtp, tmp_path):
    """Two orders attached to one mail: two transmissions, two orders, one reply listing both."""
    dovecot.append(mail(("a.edi", order("PO-A-1")), ("b.edi", order("PO-B-2"))).as_bytes(),
                   folder)
    with core(tmp_path) as c:
        replies = replies_for(c, smtp)
        ch = channel(c, mailbox(dovecot, folder), replies=replies)

        async def main():
            assert await poll(ch) == 1
            c.process()
            stop = asyncio.Event()
            task = asyncio.create_task(replies.run(stop))
            await wait_until(lambda: smtp.messages)
            await asyncio.sleep(0.3)  # a second reply would show now
            stop.set()
            await task

        asyncio.run(main())
        rows = c.transmissions()
        assert [r.filename for r in rows] == ["a.edi", "b.edi"]
        assert all(r.status == s.PROCESSED and r.partner_id == "acme" for r in rows)
        assert rows[0].channel == "email" and rows[0].channel_ref.startswith("orders:")
        assert {d.business_number for r in rows for d in c.store.documents_of(r.id)} == {
            "PO-A-1", "PO-B-2"}
        assert len(smtp.messages) == 1
        reply = email.message_from_bytes(smtp.messages[0], policy=email.policy.default)
        assert reply["To"] == PARTNER_ADDRESS and reply["Subject"] == "Received: Orders"
        body = reply.get_content()
        assert "a.edi" in body and "b.edi" in body and "order PO-A-1" in body
        assert dovecot.uids(folder) == [] and len(dovecot.uids(f"{folder}/processed")) == 1
        assert "$EdigwProcessed" in dovecot.flags(f"{folder}/processed")[0]
        assert c.records.get("smtp").healthy


def test_unknown_sender_is_quarantined_not_dropped(dovecot, folder, smtp, tmp_path):
    """A mail from an address no profile lists: its attachment is kept QUARANTINED, no reply."""
    dovecot.append(mail(("x.edi", order("PO-X-1")), sender="stranger@else.test").as_bytes(),
                   folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder), replies=replies_for(c, smtp))
        assert asyncio.run(poll(ch)) == 1
        [row] = c.transmissions()
        assert row.status == s.QUARANTINED and row.stage == "identify"
        assert "stranger@else.test" in row.reason
        assert c.received == []  # not handed to processing
        assert ch.replies.pending == {} and smtp.messages == []
        assert dovecot.uids(folder) == []


def test_encoded_names_nested_multiparts_and_transfer_encodings(dovecot, folder, tmp_path):
    """RFC 2231 and RFC 2047 names, a nested multipart, an attached message, QP and base64."""
    raw = (
        b"From: Buyer <buyer@acme.test>\r\nTo: orders@edigw.test\r\nSubject: =?utf-8?q?Bestellungen_f=C3=BCr_M=C3=A4rz?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
        b"--ALT\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--ALT\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--ALT--\r\n"
        b"--OUT\r\nContent-Type: multipart/mixed; boundary=IN\r\n\r\n"
        b"--IN\r\nContent-Type: application/edifact\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''Bestellung%20M%C3%A4;\r\n filename*1*=rz.edi\r\n\r\n"
        + order("PO-QP-1").replace(b"=", b"=3D") + b"\r\n"
        b"--IN--\r\n"
        b"--OUT\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?B?w5xiZXJzaWNodC5lZGk=?=\"\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?w5xiZXJzaWNodC5lZGk=?=\"\r\n\r\n"
        + __import__("base64").encodebytes(order("PO-B64-2")).replace(b"\n", b"\r\n") +
        b"--OUT\r\nContent-Type: message/rfc822\r\n\r\n"
        + mail(("fwd.edi", order("PO-FWD-3")), subject="Fwd").as_bytes().replace(b"\n", b"\r\n")
        + b"\r\n--OUT--\r\n")
    dovecot.append(raw, folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch)) == 1
        c.process()
        rows = c.transmissions()
        assert sorted(r.filename for r in rows) == ["Bestellung März.edi", "fwd.edi",
                                                    "Übersicht.edi"]
        numbers = {d.business_number for r in rows for d in c.store.documents_of(r.id)}
        assert numbers == {"PO-QP-1", "PO-B64-2", "PO-FWD-3"}


def test_zip_of_two_files_gives_two_transmissions(dovecot, folder, tmp_path):
    """Each document in a zip attachment is a transmission of its own."""
    data = zipped(("one.edi", order("PO-Z-1")), ("sub/two.edi", order("PO-Z-2")),
                  ("readme.png", b"\x89PNG...."))
    dovecot.append(mail(("orders.zip", data, "application/zip")).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch)) == 1
        c.process()
        rows = c.transmissions()
        assert [r.filename for r in rows] == ["one.edi", "two.edi"]
        assert [r.channel_ref.rsplit(":", 1)[1] for r in rows] == ["2/1", "2/2"]
        assert all(r.status == s.PROCESSED for r in rows)


def test_zip_bomb_is_refused_with_its_reason(dovecot, folder, tmp_path):
    """A zip expanding past the ratio limit is refused whole; the mail's record says why."""
    bomb = zipped(("bomb.edi", b"UNA:+.? '" + b"0" * 5_000_000))
    dovecot.append(mail(("bomb.zip", bomb, "application/zip")).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch)) == 1
        [row] = c.transmissions()
        assert row.status == s.FAILED and row.stage == "receive"
        assert "zip bomb" in row.reason and "bomb.zip" in row.reason
        assert row.filename.endswith(".eml") and row.channel_ref.endswith(":mail")
        assert dovecot.uids(folder) == []  # recorded, so taken out of the inbox


def test_zip_entry_count_and_nested_zip_are_refused(dovecot, folder, tmp_path):
    """Too many entries refuse the zip; a zip inside a zip is not opened (one level)."""
    many = zipped(*[(f"f{i}.edi", b"UNB") for i in range(20)])
    nested = zipped(("inner.zip", zipped(("deep.edi", order("PO-DEEP")))),
                    ("top.edi", order("PO-TOP")))
    dovecot.append(mail(("many.zip", many, "application/zip"),
                        ("nested.zip", nested, "application/zip")).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder, max_zip_entries=10))
        assert asyncio.run(poll(ch)) == 1
        rows = c.transmissions()
        assert [r.filename for r in rows] == ["top.edi", "mail-1.eml"]
        assert "20 entries, over the limit of 10" in rows[1].reason


def test_path_traversal_name_is_neutralised_and_recorded(dovecot, folder, tmp_path):
    """'../../etc/cron.d/order.edi' is received as 'order.edi' and the attempt is on its
    timeline."""
    msg = mail(("x.edi", order("PO-T-1")))
    for part in msg.iter_attachments():
        part.replace_header("Content-Disposition",
                            'attachment; filename="../../etc/cron.d/order.edi"')
    dovecot.append(msg.as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch)) == 1
        [row] = c.transmissions()
        assert row.filename == "order.edi"
        events = {e["event"]: e["detail"] for e in c.store.events(row.id)}
        assert "path traversal" in events["unsafe-name"]


def test_mail_without_usable_attachment_is_recorded(dovecot, folder, tmp_path):
    """A mail with only a picture becomes a FAILED record saying there is nothing usable."""
    dovecot.append(mail(("logo.png", b"\x89PNG\r\n", "image/png")).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch)) == 1
        [row] = c.transmissions()
        assert row.status == s.FAILED and "no usable attachment" in row.reason
        assert "logo.png" in row.reason


def test_oversized_message_is_refused_with_its_header_kept(dovecot, folder, tmp_path):
    """A message over max_message_bytes is not downloaded; its header is the record."""
    dovecot.append(mail(("big.edi", order("PO-BIG") + b"X" * 20_000)).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder, max_message_bytes=10_000))
        assert asyncio.run(poll(ch)) == 1
        [row] = c.transmissions()
        assert row.status == s.FAILED and "over the 10000-byte limit" in row.reason
        assert row.size < 10_000


class FailingOnce:
    """A receiver whose first receive fails like a store outage."""

    def __init__(self, inner):
        self.inner = inner
        self.failed = False

    def receive_many(self, items):
        if not self.failed:
            self.failed = True
            raise StoreError("store down")
        return self.inner.receive_many(items)

    def acknowledged(self, receipts, detail):
        self.inner.acknowledged(receipts, detail)


def test_MailDoNotMoveIfReceiveFails(dovecot, folder, tmp_path):
    """When the receive fails the mail stays in the folder, unflagged; the next round takes
    it."""
    dovecot.append(mail(("a.edi", order("PO-F-1"))).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder), receiver=FailingOnce(c.pipeline))
        assert asyncio.run(poll(ch)) == 0
        assert len(dovecot.uids(folder)) == 1 and "$EdigwProcessed" not in dovecot.flags(folder)[0]
        assert c.transmissions() == []
        assert asyncio.run(poll(ch)) == 1
        assert dovecot.uids(folder) == [] and len(c.transmissions()) == 1


def test_crash_before_the_move_gives_no_second_order(dovecot, folder, tmp_path):
    """Received but never moved (a crash): read again, the same transmissions are only
    acknowledged, and the same order resent in a new mail is a duplicate by content."""
    dovecot.append(mail(("a.edi", order("PO-C-1"))).as_bytes(), folder)
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder))

        async def crash(session, uid):
            raise SystemExit("crash")

        ch._move = crash  # type: ignore[method-assign]
        with pytest.raises(SystemExit):
            asyncio.run(poll(ch))
        assert len(dovecot.uids(folder)) == 1 and len(c.transmissions()) == 1
        c.received.clear()
        c.pipeline.resume()  # what a restart does first
        dovecot.append(mail(("again.edi", order("PO-C-1"))).as_bytes(), folder)
        ch2 = channel(c, mailbox(dovecot, folder))
        assert asyncio.run(poll(ch2)) == 2
        c.process()
        rows = c.transmissions()
        assert len(rows) == 2
        first = next(r for r in rows if r.filename == "a.edi")
        again = next(r for r in rows if r.filename == "again.edi")
        assert first.acknowledged_at is not None and first.status == s.PROCESSED
        assert again.status == s.DUPLICATE and again.duplicate_of == first.id
        assert len(c.store.find_documents(business_number="PO-C-1")) == 1


def test_idle_picks_up_new_mail_without_waiting_for_the_poll_interval(dovecot, folder, tmp_path):
    """With IDLE a mail is taken within seconds although the poll interval is an hour."""
    with core(tmp_path) as c:
        ch = channel(c, mailbox(dovecot, folder, poll_interval=3600, idle=True))

        async def main():
            stop = asyncio.Event()
            task = asyncio.create_task(ch.run(stop))
            await wait_until(lambda: c.records.get("imap:orders") is not None)
            await asyncio.sleep(0.5)  # now in IDLE
            await asyncio.to_thread(dovecot.append, mail(("i.edi", order("PO-I-1"))).as_bytes(),
                                    folder)
            await wait_until(lambda: ch.taken == 1, timeout=10)
            stop.set()
            await asyncio.wait_for(task, 10)

        asyncio.run(main())
        assert [r.filename for r in c.transmissions()] == ["i.edi"]


def test_stopped_dovecot_answers_no_one_not_even_a_logged_in_session():
    """``Dovecot.stop`` really takes the server away: a fresh connection is refused, a session logged in before is broken, one in IDLE reaches its end, and no process of the instance runs on (an outage test cannot pass without an outage)."""
    import imaplib
    import socket
    import time

    server = start_dovecot()
    try:
        session = imaplib.IMAP4(server.host, server.port, timeout=5)
        session.login(server.user, server.password)
        assert session.select("INBOX")[0] == "OK"
        idle = imaplib.IMAP4(server.host, server.port, timeout=5)
        idle.login(server.user, server.password)
        idle.select("INBOX")
        idle.send(b"i1 IDLE\r\n")
        assert idle.readline().startswith(b"+")
        group = server._master()
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2).close()
        with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
            session.noop()
        # What the IDLE session had sent before the stop may still be buffered; then EOF.
        deadline = time.monotonic() + 5
        while idle.readline() != b"":
            assert time.monotonic() < deadline, "the IDLE session is still being served"
        assert group is not None and not _alive_in_group(group)
    finally:
        server.stop()
        server.cleanup()


def test_server_going_away_shows_in_health_and_the_channel_recovers(tmp_path):
    """Dovecot stopped: failures are counted; started again: the channel takes the mail."""
    server = start_dovecot()
    try:
        with core(tmp_path) as c:
            ch = channel(c, mailbox(server, "INBOX", poll_interval=0.2, idle=False))

            async def main():
                stop = asyncio.Event()
                task = asyncio.create_task(ch.run(stop))
                await wait_until(lambda: (h := c.records.get("imap:orders")) and h.healthy)
                await asyncio.to_thread(server.stop)
                await wait_until(lambda: c.records.get("imap:orders").consecutive_failures >= 2,
                                 timeout=20)
                assert "connect" in c.records.get("imap:orders").last_error
                await asyncio.to_thread(server.start)
                await asyncio.to_thread(server.append,
                                        mail(("r.edi", order("PO-R-1"))).as_bytes())
                await wait_until(lambda: ch.taken == 1, timeout=20)
                # The health record of the look that took it is written just after.
                await wait_until(lambda: c.records.get("imap:orders").healthy, timeout=10)
                stop.set()
                await asyncio.wait_for(task, 10)

            asyncio.run(main())
    finally:
        server.stop()
        server.cleanup()


def test_failure_notice_names_stage_and_reason(dovecot, folder, smtp, tmp_path):
    """A partner asking only for failure notices gets one naming what was wrong."""
    from tests.integration.mailtest import make_partners

    dovecot.append(mail(("bad.edi", b"UNB+UNOC:3+X+Y+240101:1200+1'UNH+1+ORDERS'")).as_bytes(),
                   folder)
    with core(tmp_path, make_partners(acknowledgements=False)) as c:
        replies = replies_for(c, smtp)
        ch = channel(c, mailbox(dovecot, folder), replies=replies)

        async def main():
            await poll(ch)
            c.process()
            assert await replies.send_settled() == 1

        asyncio.run(main())
        reply = email.message_from_bytes(smtp.messages[0], policy=email.policy.default)
        assert reply["Subject"].startswith("Not processed: ")
        assert "bad.edi: failed at stage" in reply.get_content()
