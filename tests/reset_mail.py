"""Reading password-reset links from a real mailbox, for the integration and browser tests.

``reset_mail_server()`` starts a real Dovecot (IMAP) and a private Postfix (SMTP) delivering
into it (``tests/integration/dovecot.py``, ``postfix.py``; both need their packages, and
Postfix root): mail sent through ``server.smtp`` to ``server.address`` lands in the INBOX.
Give a console user ``server.address`` as e-mail address and the gateway ``[smtp]`` =
``server.smtp``, ask for a reset, then ``server.wait_for_link()`` returns the link of the
newest mail that came after ``server.mark()``::

    with reset_mail_server() as mail:
        settings = GatewaySettings(..., smtp=mail.smtp)
        Users(store).create("shop", ..., email=mail.address)
        seen = mail.mark()
        ...ask for a reset (page, API or browser)...
        link = mail.wait_for_link(after=seen)   # http://host:port/password-reset/<token>
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from gateway.channels.email.settings import SmtpSettings
from tests.integration.dovecot import USER, Dovecot, start_dovecot
from tests.integration.postfix import Postfix

#: A reset or set-your-password link in a mail's text.
LINK = re.compile(r"https?://\S+?/password-reset/[A-Za-z0-9_-]{20,}")


@dataclass
class ResetMailServer:
    """A running Dovecot and Postfix: where to send, and how to read what arrived."""

    dovecot: Dovecot
    postfix: Postfix
    #: The mailbox's address: give it to the user whose link is to be read.
    address: str = USER

    @property
    def smtp(self) -> SmtpSettings:
        """The gateway's ``[smtp]`` for this server."""
        return SmtpSettings(host="127.0.0.1", port=self.postfix.port,
                            sender="edigw@wholesaler.test", timeout=10)

    def mark(self) -> int:
        """The highest UID in the INBOX now (0 when empty): pass it as ``after``."""
        return max(self.dovecot.uids(), default=0)

    def messages(self, *, after: int = 0) -> list[EmailMessage]:
        """The INBOX's mails with a UID above ``after``, oldest first (read, not flagged)."""
        found = []
        with self.dovecot.client() as imap:
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("SEARCH", f"UID {after + 1}:*")
            for uid in (data[0].split() if typ == "OK" and data and data[0] else []):
                if int(uid) <= after:  # "n:*" always matches the last one
                    continue
                typ, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next(part[1] for part in fetched if isinstance(part, tuple))
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(msg, EmailMessage)
                found.append(msg)
        return found

    def wait_for_mail(self, *, after: int = 0, timeout: float = 30.0) -> EmailMessage:
        """The newest mail with a reset link that arrived after the UID ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            with_link = [m for m in self.messages(after=after) if LINK.search(_text(m))]
            if with_link:
                return with_link[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no reset link mailed to {self.address} in {timeout} s")
            time.sleep(0.2)

    def wait_for_link(self, *, after: int = 0, timeout: float = 30.0) -> str:
        """The link (``…/password-reset/<token>``) of ``wait_for_mail``."""
        found = LINK.search(_text(self.wait_for_mail(after=after, timeout=timeout)))
        assert found is not None
        return found.group(0)


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return body.get_content() if body is not None else ""


@contextmanager
def reset_mail_server() -> Iterator[ResetMailServer]:
    """Dovecot and Postfix for the test's duration (skipped, or failed under CI=true, when
    they are not installed or not root)."""
    dovecot = start_dovecot()
    try:
        with Postfix.start(dovecot) as mta:
            yield ResetMailServer(dovecot=dovecot, postfix=mta)
    finally:
        dovecot.stop()
        dovecot.cleanup()
