"""Receiving one upload of the client portal, receive first.

``PortalInbox.accept`` takes the bytes a client user sent for its partner, and:

1. refuses, before anything is stored, an empty file (``EmptyUpload``) or one over the
   limit (``UploadTooLarge``; the HTTP server already refused a body far over it, 413);
2. receives it durably through ``receive_then_acknowledge``: archived and recorded as a
   transmission of channel ``portal`` whose partner is the uploader's (``partner_hint``:
   a file whose content names another partner is quarantined by identification, never
   attributed to that other partner), under the file name made safe (``safe_filename``);
3. only then acknowledges: the acknowledgement of this channel is the HTTP answer itself,
   which the caller sends once ``accept`` returned. A failure of the store propagates
   (``StoreError``): nothing is acknowledged and the client is told to send again;
4. hands the receipt to processing (``hand_over``: the gateway's processing queue).

Sans-HTTP: the console's page and API route read the request and call this.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.channels.portal import NAME
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.core.errors import RequestRefused
from gateway.core.ids import new_id
from gateway.core.ports import Incoming, Receipt, Receiver

log = structlog.get_logger("edigw.portal")

#: The largest file the portal takes by default (the HTTP server's ``[http] max_body`` caps
#: it further); bigger exchanges belong on SFTP or AS2.
MAX_UPLOAD = 50 * 1024 * 1024
#: The longest file name kept (its extension kept too).
MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._()+@ -]+")


class UploadRefused(RequestRefused):
    """An upload refused before anything was stored; ``reason`` says why, for the client."""

    def __init__(self, reason: str, *, filename: str | None = None) -> None:
        self.reason = reason
        self.filename = filename
        super().__init__(reason)


class EmptyUpload(UploadRefused):
    """No file, or a file of 0 bytes."""


class UploadTooLarge(UploadRefused):
    """A file over the portal's limit."""

    def __init__(self, size: int, limit: int, *, filename: str | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"the file is {size:,} bytes; the portal takes {limit:,} at most",
                         filename=filename)


def safe_filename(name: str | None, *, fallback: str = "upload") -> str:
    """``name`` as kept on the transmission: its last path part only (no folder, ``..`` nor
    drive: a name never leads anywhere), control characters and anything unusual replaced
    with ``_``, no leading dot, at most ``MAX_NAME`` characters (the extension kept);
    ``fallback`` when nothing is left."""
    text = unicodedata.normalize("NFKC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE.sub("_", text).strip(" .")
    text = re.sub(r"_{2,}", "_", text)
    if not text.strip("_"):
        return fallback
    if len(text) > MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        text = text[: MAX_NAME - len(ext) - 1].rstrip(" .") + ("." + ext if ext else "")
    return text


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a client user sent: its partner, who, the name as sent, and the bytes."""

    partner_id: str
    uploaded_by: str
    filename: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Uploaded:
    """An upload durably received: its transmission, the name kept, and whether the same
    bytes came before (``duplicate_of``: recorded, not processed again)."""

    transmission_id: str
    upload_id: str
    filename: str
    size: int
    duplicate_of: str | None = None


class PortalInbox:
    """Receives uploads of the client portal (see the module's docstring)."""

    def __init__(self, *, receiver: Receiver,
                 hand_over: Callable[[list[Receipt]], None] | None,
                 max_size: int = MAX_UPLOAD) -> None:
        self.receiver = receiver
        self.hand_over = hand_over
        self.max_size = max_size

    def accept(self, upload: Upload) -> Uploaded:
        """Receive ``upload`` durably, then acknowledge and hand it to processing; raises
        ``UploadRefused`` (nothing stored) or the store's error (nothing acknowledged)."""
        if not upload.partner_id:
            raise ValueError("a portal upload needs its partner")
        filename = safe_filename(upload.filename)
        if not upload.data:
            raise EmptyUpload(f"{filename} is empty: there is nothing to receive",
                              filename=filename)
        if len(upload.data) > self.max_size:
            raise UploadTooLarge(len(upload.data), self.max_size, filename=filename)
        upload_id = new_id()
        item = Incoming(data=upload.data, channel=NAME, channel_ref=upload_id,
                        filename=filename, partner_hint=upload.partner_id)

        def acknowledge(receipts: list[Receipt]) -> Acknowledgement[Uploaded]:
            """The answer the caller sends is this channel's acknowledgement."""
            r = receipts[0]
            return Acknowledgement(
                acknowledged=receipts, process=receipts,
                detail=f"upload {upload_id} answered to {upload.uploaded_by} (client portal)",
                answer=Uploaded(transmission_id=r.transmission_id, upload_id=upload_id,
                                filename=filename, size=len(upload.data),
                                duplicate_of=r.duplicate_of))

        ack = receive_then_acknowledge(self.receiver, [item], acknowledge, self.hand_over)
        assert ack.answer is not None  # acknowledge always answers
        log.info("portal_upload_received", transmission_id=ack.answer.transmission_id,
                 partner=upload.partner_id, user=upload.uploaded_by, filename=filename,
                 size=len(upload.data), duplicate_of=ack.answer.duplicate_of)
        return ack.answer
