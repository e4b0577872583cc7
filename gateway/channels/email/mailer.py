"""Sending mail through the gateway's ``[smtp]`` server (aiosmtplib).

``Mailer`` is the one way edigw sends mail: replies to partners (acknowledgements, failure
notices, see ``replies``) and operators' alerts (``alert``; the tracker uses it). All use the
same sender. Each send records the ``smtp`` channel's health; aiosmtplib errors become
``MailError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib
import structlog

from gateway.channels.email.imap import MailError
from gateway.channels.email.settings import SmtpSettings

log = structlog.get_logger("edigw.channels.email")

SMTP_CHANNEL = "smtp"


class HealthRecords(Protocol):
    """What a channel reports its health to (``gateway.store.channels.ChannelRecords``)."""

    def ok(self, channel: str, kind: str, *, partner_id: str | None = None,
           detail: str | None = None) -> None: ...

    def failed(self, channel: str, kind: str, error: str, *,
               partner_id: str | None = None) -> int: ...


class Mailer:
    """Sends mail as ``smtp.sender``."""

    def __init__(self, settings: SmtpSettings, *, records: HealthRecords | None = None) -> None:
        self.settings = settings
        self.records = records

    def message(self, to: Sequence[str], subject: str, body: str, *,
                in_reply_to: str | None = None) -> EmailMessage:
        """A plain-text mail from the gateway's sender."""
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2])
        msg["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"  # RFC 3834
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
            msg["References"] = in_reply_to
        msg.set_content(body)
        return msg

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the SMTP server; raises ``MailError`` (health recorded)."""
        s = self.settings
        try:
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, username=s.user,
                password=s.password_value() if s.user else None,
                use_tls=s.tls == "ssl", start_tls=True if s.tls == "starttls" else False,
                timeout=s.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"cannot send mail via {s.host}:{s.port}: {type(exc).__name__}: {exc}"
            if self.records is not None:
                await asyncio.to_thread(self.records.failed, SMTP_CHANNEL, "smtp", error)
            log.warning("mail_not_sent", to=message["To"], subject=message["Subject"],
                        error=error)
            raise MailError(error) from exc
        if self.records is not None:
            await asyncio.to_thread(self.records.ok, SMTP_CHANNEL, "smtp",
                                    detail=f"sent to {message['To']}")
        log.info("mail_sent", to=message["To"], subject=message["Subject"])

    async def alert(self, subject: str, body: str) -> bool:
        """Mail the operators (``smtp.operators``); False when there are none or it failed."""
        if not self.settings.operators:
            return False
        try:
            await self.send(self.message(self.settings.operators, f"[edigw] {subject}", body))
        except MailError:
            return False
        return True

    def alert_blocking(self, subject: str, body: str) -> bool:
        """``alert`` for code running in a worker thread without an event loop."""
        return asyncio.run(self.alert(subject, body))
