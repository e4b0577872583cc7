"""The mail channel's settings: IMAP mailboxes (``[[mailboxes]]``) and the SMTP server
replies and alerts go out through (``[smtp]``); and what a partner wants back by mail
(``PartnerEmail``, composed into ``gateway.config.Partner``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from gateway.channels.sections import EMAIL_PATTERN, ID_PATTERN, StrictModel, secret_from


class MailboxSettings(StrictModel):
    """An IMAP mailbox partners mail documents to (aioimaplib)."""

    name: Annotated[str, Field(pattern=ID_PATTERN)] = "mail"
    host: Annotated[str, Field(min_length=1)]
    port: int = Field(default=993, ge=1, le=65535)
    tls: Literal["ssl", "starttls", "none"] = "ssl"
    user: Annotated[str, Field(min_length=1)]
    password: SecretStr | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str = "edigw/processed"
    poll_interval: float = Field(default=60.0, gt=0, le=86400)
    #: Use IMAP IDLE when the server offers it (new mail is taken at once).
    idle: bool = True
    timeout: float = Field(default=30.0, gt=0, le=3600)
    max_message_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_attachment_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    #: Zip archives: total uncompressed size, compression ratio, entries.
    max_zip_total: int = Field(default=200 * 1024 * 1024, gt=0)
    max_zip_ratio: float = Field(default=100.0, gt=1)
    max_zip_entries: int = Field(default=1000, ge=1)

    def password_value(self) -> str | None:
        return secret_from(self.password, self.password_file)


class SmtpSettings(StrictModel):
    """The SMTP server replies and alerts go out through (aiosmtplib)."""

    host: Annotated[str, Field(min_length=1)] = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    tls: Literal["ssl", "starttls", "none"] = "none"
    user: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    sender: Annotated[str, Field(pattern=EMAIL_PATTERN)] = "edigw@localhost"
    operators: list[Annotated[str, Field(pattern=EMAIL_PATTERN)]] = Field(
        default_factory=list)
    timeout: float = Field(default=30.0, gt=0, le=3600)

    def password_value(self) -> str | None:
        return secret_from(self.password, self.password_file)


class EmailSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    mailboxes: list[MailboxSettings] = Field(default_factory=list)
    smtp: SmtpSettings | None = None


# -- partner profiles ----------------------------------------------------------------

class PartnerEmail(StrictModel):
    """What a partner wants back by mail (its addresses are ``identifiers.email``)."""

    #: After a mail was received: what was received and the documents found.
    acknowledgements: bool = False
    #: When something in it failed: what was wrong.
    failure_notices: bool = True
    #: Where replies go; defaults to the mail's sender.
    reply_to: list[Annotated[str, Field(pattern=EMAIL_PATTERN)]] = Field(
        default_factory=list)
    #: Where the documents we send go (``outbound.channel = "email"``); defaults to the
    #: partner's ``identifiers.email``.
    documents_to: list[Annotated[str, Field(pattern=EMAIL_PATTERN)]] = Field(
        default_factory=list)
