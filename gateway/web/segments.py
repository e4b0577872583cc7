"""An EDIFACT payload cut into its segments, for the API's ``/segments`` and the
transmission page."""

from __future__ import annotations

import re


def edifact_segments(data: bytes) -> list[str]:
    """The segments of an EDIFACT payload as sent, one string each (decoded with the
    gateway's charset rules and cut where its tokenizer finds each tag; wrapped lines
    joined)."""
    from gateway.formats.edifact.charset import decode
    from gateway.formats.edifact.tokenizer import tokenize

    text, _syntax, _warnings = decode(data)
    offsets = [seg.offset for chunk in tokenize(text)
               for seg in ([chunk.una] if chunk.una else []) + chunk.segments
               + ([chunk.unterminated] if chunk.unterminated else [])]
    offsets.sort()
    ends = offsets[1:] + [len(text)]
    return [re.sub(r"[\r\n]", "", text[a:b]).strip() for a, b in zip(offsets, ends, strict=True)]
