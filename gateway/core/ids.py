"""Stable message ids: the same source message always gives the same id.

Consumers drop repeats by ``message_id``, so the id must not depend on when or how often a
payload is processed, only on who sent which business message.
"""

from __future__ import annotations

import hashlib


def message_id(partner: str, doc_type: str, *refs: str | None) -> str:
    """A 32-hex-digit id from partner, document type and the source's own references.

    For EDIFACT the references are the UNB sender, the interchange control reference (0020),
    the message reference (0062) and the business number, which together identify a message
    for as long as the partner does not reuse control references.
    """
    key = "\x1f".join([partner, doc_type, *[r or "" for r in refs]])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
