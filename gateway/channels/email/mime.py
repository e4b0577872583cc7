"""What a mail holds for edigw: its sender and the documents attached (sans-IO).

``read_mail`` takes the raw bytes of one message and returns a ``MailContent``: every
attachment that is EDIFACT, XML, CSV, PDF or a zip of them (one level), with a safe name and
its place in the mail (``3`` for the third leaf part, ``3/2`` for the second entry of the zip
that part is); the parts left out and why; and the refusals (an attachment over the size
limit, a zip bomb). Nested multiparts and attached messages (``message/rfc822``) are walked;
base64 and quoted-printable are decoded by the ``email`` package; names come from RFC 2231
parameters and RFC 2047 encoded words. A text body that is itself EDIFACT counts as a
document when the mail has no attachment.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses

from gateway.channels.email.names import decode_words, kind_of, safe_name
from gateway.channels.email.zips import ZipLimits, open_zip


@dataclass(frozen=True, slots=True)
class MailLimits:
    """Hostile-mail limits (``[[mailboxes]]`` max_attachment_bytes, max_zip_*)."""

    max_attachment_bytes: int = 25 * 1024 * 1024
    max_zip_total: int = 200 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_entries: int = 1000


@dataclass(frozen=True, slots=True)
class Attachment:
    """One document to receive as a transmission."""

    index: str  # "3", or "3/2" for the second entry of the zip in part 3
    filename: str  # safe base name
    data: bytes
    kind: str  # edifact, xml, pdf, csv, text
    #: Why the name as written in the mail (or zip) was not safe; recorded on the transmission.
    unsafe: str | None = None


@dataclass(slots=True)
class MailContent:
    sender: str | None
    subject: str
    message_id: str | None
    attachments: list[Attachment] = field(default_factory=list)
    #: Parts left out because they are not documents (a logo, a signature): "name: why".
    skipped: list[str] = field(default_factory=list)
    #: Hostile or broken parts refused: "name: reason". Recorded as a failed transmission.
    refused: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """Why this mail needs a record of its own (refusals, or nothing usable), else None."""
        parts: list[str] = []
        if self.refused:
            parts.append("refused: " + "; ".join(self.refused))
        if not self.attachments:
            found = "; ".join(self.skipped) if self.skipped else "no attachment"
            parts.append(f"no usable attachment ({found})")
        return "; ".join(parts) or None


def sender_address(message: Message) -> str | None:
    """The address in ``From`` (lower case), or None when there is none that parses."""
    try:
        raw = message.get_all("From") or []
        pairs = getaddresses([str(v) for v in raw])
    except (TypeError, ValueError, IndexError):
        return None
    for _, addr in pairs:
        if addr and "@" in addr:
            return addr.strip().lower()
    return None


def parse_message(raw: bytes) -> EmailMessage:
    """The message, parsed leniently (defects are noted by ``email``, never raised)."""
    return email.message_from_bytes(raw, policy=email.policy.default)


def read_mail(raw: bytes, limits: MailLimits) -> MailContent:
    """Sender, subject and documents of a raw mail; never raises for a malformed mail."""
    message = parse_message(raw)
    content = MailContent(sender=sender_address(message),
                          subject=_header(message, "Subject"),
                          message_id=_header(message, "Message-ID") or None)
    position = 0
    bodies: list[tuple[int, bytes]] = []
    for part in message.walk():
        if part.is_multipart():
            continue  # a container (nested multipart, attached message): walked into
        position += 1
        try:
            _read_part(part, position, limits, content, bodies)
        except Exception as exc:  # a broken part must not lose the others
            content.refused.append(f"part {position}: cannot be decoded ({exc})")
    if not content.attachments and not content.refused:
        # Some partners paste the interchange into the body instead of attaching it.
        for pos, body in bodies:
            if kind_of(body, "") == "edifact":
                content.attachments.append(Attachment(str(pos), f"body-{pos}.edi", body,
                                                      "edifact"))
                break
    return content


def _decoded(part: Message) -> bytes:
    """A part's content, its transfer encoding undone (empty when it has none)."""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _read_part(part: Message, position: int, limits: MailLimits, content: MailContent,
               bodies: list[tuple[int, bytes]]) -> None:
    ctype = part.get_content_type()
    raw_name = _filename(part)
    disposition = (part.get_content_disposition() or "").lower()
    if raw_name is None and disposition != "attachment":
        if part.get_content_maintype() == "text":
            data = _decoded(part)
            bodies.append((position, data))
        return  # the mail's text, not an attachment
    name = safe_name(raw_name, f"part-{position}")
    data = _decoded(part)
    if len(data) > limits.max_attachment_bytes:
        content.refused.append(f"{name.name}: {len(data)} bytes, over the "
                               f"{limits.max_attachment_bytes}-byte attachment limit")
        return
    kind = kind_of(data, name.name, ctype)
    if kind is None:
        content.skipped.append(f"{name.name} ({ctype}): not EDIFACT, XML, CSV, PDF or zip")
        return
    if kind != "zip":
        content.attachments.append(Attachment(str(position), name.name, data, kind, name.unsafe))
        return
    opened = open_zip(data, name.name, ZipLimits(
        max_total=limits.max_zip_total, max_ratio=limits.max_zip_ratio,
        max_entries=limits.max_zip_entries, max_entry=limits.max_attachment_bytes))
    if opened.refused:
        content.refused.append(opened.refused)
        return
    content.skipped += [f"{name.name} > {s}" for s in opened.skipped]
    for entry in opened.entries:
        unsafe = "; ".join(u for u in (name.unsafe, entry.unsafe) if u) or None
        content.attachments.append(Attachment(f"{position}/{entry.position}", entry.name,
                                              entry.data, kind_of(entry.data, entry.name) or "text",
                                              unsafe))


def _filename(part: Message) -> str | None:
    """The part's file name: Content-Disposition ``filename`` (RFC 2231 decoded), else the
    Content-Type ``name``; RFC 2047 encoded words inside either are decoded too."""
    try:
        name = part.get_filename()
    except (TypeError, ValueError, LookupError):
        name = None
    if name is None:
        name = part.get_param("name")  # type: ignore[assignment]
        if isinstance(name, tuple):  # RFC 2231 (charset, language, value)
            try:
                name = email.utils.collapse_rfc2231_value(name)
            except (LookupError, UnicodeError):
                name = str(name[2])
    if not name:
        return None
    return decode_words(str(name))


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (TypeError, ValueError, IndexError):
        return ""
    return decode_words(str(value)) if value is not None else ""
