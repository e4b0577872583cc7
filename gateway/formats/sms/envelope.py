"""The normalised text envelope an SMS is archived in, so that the pipeline reads and
reprocesses it like any file::

    Edigw-SMS: 1
    Provider: twilio
    Message-Id: SM0123…
    From: +33612345678
    To: +33…
    Received: 2026-11-27T16:00:00Z

    REF PO-778
    4006381333931 x 12

Header lines, a blank line, then the message text exactly as received. UTF-8; header values
are single-line (control characters become spaces) and at most 256 characters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from gateway.core.errors import FormatNotRecognised, PayloadError

MAGIC = b"Edigw-SMS: 1"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_REQUIRED = ("Provider", "Message-Id", "From")


@dataclass(frozen=True, slots=True)
class SmsEnvelope:
    """One SMS as a provider delivered it."""

    provider: str
    message_id: str
    sender: str  # E.164 when the number parses, else as the provider gave it
    recipient: str | None
    received: dt.datetime
    text: str

    @property
    def channel_ref(self) -> str:
        return f"{self.provider}:{self.message_id}"

    def to_bytes(self) -> bytes:
        headers = [("Edigw-SMS", "1"), ("Provider", self.provider),
                   ("Message-Id", self.message_id), ("From", self.sender),
                   ("To", self.recipient or ""),
                   ("Received", self.received.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))]
        head = "".join(f"{k}: {sanitise(v)}\n" for k, v in headers)
        return (head + "\n" + self.text).encode("utf-8")


def sanitise(value: str, limit: int = 256) -> str:
    """A header value on one line: control characters become one space; trimmed."""
    return _CONTROL.sub(" ", value).strip()[:limit]


def read_envelope(data: bytes) -> SmsEnvelope:
    """The envelope of ``data``; raises ``PayloadError`` when it is not one."""
    if not data.startswith(MAGIC):
        raise FormatNotRecognised("not an SMS envelope (first line is not 'Edigw-SMS: 1')")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"SMS envelope is not UTF-8 (byte {exc.start})") from exc
    head, sep, body = text.partition("\n\n")
    if not sep:
        head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        raise PayloadError("SMS envelope has no blank line between its headers and the text")
    headers: dict[str, str] = {}
    for n, line in enumerate(head.splitlines(), start=1):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise PayloadError(f"SMS envelope header line {n} is not 'Name: value': {line!r}")
        headers[name.strip().lower()] = value.strip()
    missing = [h for h in _REQUIRED if not headers.get(h.lower())]
    if missing:
        raise PayloadError(f"SMS envelope lacks {', '.join(missing)}")
    received_text = headers.get("received", "")
    try:
        received = dt.datetime.fromisoformat(received_text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PayloadError(f"SMS envelope Received is not an ISO date-time: "
                           f"{received_text!r}") from exc
    if received.tzinfo is None:
        received = received.replace(tzinfo=dt.UTC)
    return SmsEnvelope(provider=headers["provider"], message_id=headers["message-id"],
                       sender=headers["from"], recipient=headers.get("to") or None,
                       received=received, text=body)


def sms_order_number(provider: str, message_id: str) -> str:
    """The order number of an SMS order without reference: stable for one provider message."""
    digest = hashlib.sha256(f"{provider}:{message_id}".encode()).hexdigest()
    return f"SMS-{digest[:10].upper()}"
