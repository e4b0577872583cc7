"""Stable message ids: the same source message always gives the same id.

Consumers drop repeats by ``message_id``, so the id must not depend on when or how often a
payload is processed, only on who sent which business message.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

_last_ms = 0
_seq = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A 24-character id that sorts by creation: milliseconds, a sequence, 32 random bits
    (transmissions, documents, outbound payloads)."""
    global _last_ms, _seq
    with _id_lock:
        ms = int(time.time() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFFF:
                ms, _seq = ms + 1, 0
        else:
            _seq = 0
        _last_ms = ms
        return f"{ms:012x}{_seq:04x}{secrets.token_hex(4)}"


def message_id(partner: str, doc_type: str, *refs: str | None) -> str:
    """A 32-hex-digit id from partner, document type and the source's own references.

    For EDIFACT the references are the UNB sender, the interchange control reference (0020),
    the message reference (0062) and the business number, which together identify a message
    for as long as the partner does not reuse control references.
    """
    key = "\x1f".join([partner, doc_type, *[r or "" for r in refs]])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def content_message_id(reference_id: str, content_sha: str) -> str:
    """The id a document is published under: its reference-based ``message_id`` combined
    with the digest of its content (``canonical.content_digest``).

    The same message sent again unchanged keeps its id (at-least-once publishing, the ERP
    drops the repeat); a corrected document sent under the same references gets another id,
    so no consumer drops it as a repeat of the first.
    """
    key = f"{reference_id}\x1f{content_sha}"
    return hashlib.sha256(key.encode("ascii", "replace")).hexdigest()[:32]
