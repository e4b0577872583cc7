"""Outbound documents mailed by the ``EmailSender`` through a real MTA and read back over IMAP,
through the ``OutboundDispatcher`` on a real SQLite store.

The MTA is a private Postfix instance (``tests/integration/postfix.py``) delivering into the
maildirs of a real Dovecot (``tests/integration/dovecot.py``); Dovecot's own submission
service only relays to another MTA (its LMTP does not speak SMTP), so it cannot be the one
here. Each mail is fetched over IMAP and its attachment compared byte for byte with what
was archived.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.channels.email.sender import EmailSender
from gateway.channels.email.settings import PartnerEmail, SmtpSettings
from gateway.channels.outbound import OutboundDispatcher
from gateway.config import Identifiers, Partner, PartnerDirectory, PartnerOutbound
from gateway.core.status import OutboundStatus, TransmissionStatus
from gateway.store.archive import Archive
from gateway.store.db import Store
from tests.integration.dovecot import USER, Dovecot, free_port, start_dovecot
from tests.integration.postfix import Postfix
from tests.integration.rabbit import sqlite_store
from tests.outbound_rows import pending_row

pytestmark = pytest.mark.integration

#: LF line ends and 8-bit text: the attachment must come back as these bytes.
EDIFACT = ("UNA:+.? '\nUNB+UNOC:3+5400000000003:14+5412345000013:14+261127:1200+7'\n"
           "UNH+1+ORDRSP:D:96A:UN:EAN005'\nBGM+231+4711+29'\nNAD+BY+++Müller GmbH'\n"
           "UNT+4+1'\nUNZ+1+7'\n").encode("latin-1")


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[Dovecot, Postfix]]:
    dovecot = start_dovecot()
    try:
        with Postfix.start(dovecot) as mta:
            yield dovecot, mta
    finally:
        dovecot.stop()
        dovecot.cleanup()


class Side:
    def __init__(self, tmp_path: Path, smtp: SmtpSettings, partner: Partner) -> None:
        self.store: Store = sqlite_store(tmp_path / "edigw.sqlite3")
        self.archive = Archive(tmp_path / "archive")
        self.partners = PartnerDirectory([partner])
        self.dispatcher = OutboundDispatcher(self.store, self.archive,
                                             senders={"email": EmailSender(smtp)},
                                             partner=self.partners.get, retry_initial=0.01)

    def queue(self, data: bytes, filename: str) -> str:
        return pending_row(self.store, self.archive, partner_id="retail", channel="email",
                           data=data, filename=filename).id


def retail(**email_values: object) -> Partner:
    return Partner(id="retail", name="Retail", channels=["email"],
                   identifiers=Identifiers(email=[USER]), email=PartnerEmail(**email_values),
                   outbound=PartnerOutbound(channel="email"))


def fetch_by_message_id(dovecot: Dovecot, message_id: str, timeout: float = 20.0
                        ) -> EmailMessage:
    """The mail with this Message-ID from the user's INBOX over IMAP (waits for delivery)."""
    deadline = time.monotonic() + timeout
    while True:
        with dovecot.client() as imap:
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            if uids:
                typ, fetched = imap.uid("FETCH", uids[-1], "(BODY.PEEK[])")
                assert typ == "OK"
                raw = next(part[1] for part in fetched if isinstance(part, tuple))
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(msg, EmailMessage)
                return msg
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail with Message-ID {message_id} in time")
        time.sleep(0.1)


@pytest.mark.parametrize(("filename", "data", "ctype"), [
    ("ordrsp-4711.edi", EDIFACT, "application/edifact"),
    ("invoice-88.pdf", bytes(range(256)) * 64 + b"%%EOF\r\n", "application/pdf"),
], ids=["edifact-lf-8bit", "binary-pdf"])
def test_document_mailed_and_read_back_over_imap_byte_for_byte(tmp_path, mail, filename,
                                                                 data, ctype):
    dovecot, mta = mail
    side = Side(tmp_path, SmtpSettings(host="127.0.0.1", port=mta.port,
                                       sender="edi@gateway.test"), retail())
    oid = side.queue(data, filename)

    assert side.dispatcher.deliver_pending() == 1

    row = side.store.get_outbound(oid)
    assert row is not None and row.status == OutboundStatus.SENT, row.last_error
    assert row.detail == f"order-response mailed to {USER}"
    assert side.store.get_transmission(row.transmission_id).status == TransmissionStatus.SENT
    msg = fetch_by_message_id(dovecot, f"<{row.remote_id}>")
    assert msg["From"] == "edi@gateway.test" and msg["To"] == USER
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content_type() == ctype
    assert attachment.get_filename() == filename
    assert attachment.get_payload(decode=True) == data
    body = msg.get_body(("plain",))
    assert body is not None and filename in body.get_content()


def test_documents_to_overrides_the_partner_addresses(tmp_path, mail):
    dovecot, mta = mail
    partner = Partner(id="retail", name="Retail",
                      identifiers=Identifiers(email=["nobody@elsewhere.test"]),
                      email=PartnerEmail(documents_to=[USER]),
                      outbound=PartnerOutbound(channel="email"))
    side = Side(tmp_path, SmtpSettings(host="127.0.0.1", port=mta.port,
                                       sender="edi@gateway.test"), partner)
    oid = side.queue(EDIFACT, "ordrsp-5.edi")
    assert side.dispatcher.deliver_pending() == 1
    row = side.store.get_outbound(oid)
    assert row is not None
    assert fetch_by_message_id(dovecot, f"<{row.remote_id}>")["To"] == USER


def test_mta_down_is_retried(tmp_path):
    side = Side(tmp_path, SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5,
                                       sender="edi@gateway.test"), retail())
    oid = side.queue(EDIFACT, "ordrsp-6.edi")
    assert side.dispatcher.deliver_pending() == 0
    row = side.store.get_outbound(oid)
    assert row is not None and row.status == OutboundStatus.PENDING and row.attempts == 1
    assert "MailError: cannot send mail via 127.0.0.1" in (row.last_error or "")

