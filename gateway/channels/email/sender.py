"""Outbound e-mail: a document for a partner attached to a short mail, sent through the
gateway's ``[smtp]`` server to the partner's ``[email] documents_to`` (default: its
``identifiers.email``).

SMTP accepting the mail is all that is known at once: the delivery is "sent"
(``delivered=False``) with the mail's Message-ID as ``remote_id``. The Message-ID is derived
from the outbound row (``edigw-out-<row id>@<sender's domain>``), so a retry after a lost
answer carries the same Message-ID and the partner's mail system can tell the repeat.
The dispatcher calls ``send`` in its own thread: ``smtplib`` is used directly.
"""

from __future__ import annotations

import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.channels.email.imap import MailError
from gateway.channels.email.settings import SmtpSettings
from gateway.channels.outbound import Delivery
from gateway.store.records import OutboundRow

if TYPE_CHECKING:
    from gateway.config import Partner

#: Content types of the payloads edigw renders, by file extension.
CONTENT_TYPES = {
    ".edi": "application/EDIFACT", ".edifact": "application/EDIFACT",
    ".x12": "application/EDI-X12", ".xml": "application/xml", ".csv": "text/csv",
    ".txt": "text/plain", ".pdf": "application/pdf", ".json": "application/json",
}

_KIND_TEXT = {"order-response": "order response", "despatch-advice": "despatch advice",
              "invoice": "invoice", "price-list": "price list", "contrl": "CONTRL"}


def content_type_for(filename: str) -> str:
    """The MIME type of a payload named ``filename`` (application/octet-stream if unknown)."""
    ext = Path(filename).suffix.lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(filename)[0] or \
        "application/octet-stream"


def recipients_for(partner: Partner) -> list[str]:
    """Where a partner's documents are mailed: ``[email] documents_to``, else its
    ``identifiers.email``."""
    return list(partner.email.documents_to or partner.identifiers.email)


class EmailSender:
    """The dispatcher's ``Sender`` for channel ``email``."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def message(self, row: OutboundRow, data: bytes, to: list[str]) -> EmailMessage:
        """The mail: a short text, the document attached under its own name and type."""
        s = self.settings
        name = Path(row.filename.replace("\\", "/")).name or "document"
        what = _KIND_TEXT.get(row.kind, row.kind)
        ref = f" (interchange {row.control_ref})" if row.control_ref else ""
        msg = EmailMessage()
        msg["From"] = s.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = f"{what[:1].upper()}{what[1:]} {name}{ref}"
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = f"<edigw-out-{row.id}@{s.sender.rpartition('@')[2]}>"
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834
        msg.set_content(f"Please find attached the {what} {name}{ref}.\n\n"
                        "This message was sent automatically by the EDI gateway.\n")
        maintype, _, subtype = content_type_for(name).partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        return msg

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> Delivery:
        to = recipients_for(partner) if partner is not None else []
        if not to:
            raise MailError(f"partner {row.partner_id} has no e-mail address to send "
                            f"{row.filename} to ([email] documents_to or identifiers.email)")
        msg = self.message(row, data, to)
        s = self.settings
        try:
            if s.tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.user:
                    smtp.login(s.user, s.password_value() or "")
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"cannot send mail via {s.host}:{s.port}: "
                            f"{type(exc).__name__}: {exc}") from exc
        accepted = [a for a in to if a not in refused]
        detail = f"{row.kind} mailed to {', '.join(accepted)}"
        if refused:
            detail += f" (refused: {', '.join(refused)})"
        return Delivery(detail=detail, delivered=False,
                        remote_id=str(msg["Message-ID"]).strip("<>"))
