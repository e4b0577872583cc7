"""Split decoded EDIFACT text into segments, elements and components.

The tokenizer is ours, not pydifact's, for speed: the gateway must parse a file of many
orders at least three times faster than pydifact's ``Interchange.from_str``, which walks the
text one character at a time in Python. pydifact stays the reference we benchmark against
(``bench/``). Here the work is done by ``str.split`` in C; when the text holds a release
character, one ``re.sub`` first masks every released character with a same-length pair of
private-use characters, so offsets stay exact and the plain splits stay correct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.formats.edifact.model import Segment

#: Marks a released character; followed by the character or by one of the codes below.
_MASK = "\ue000"
_CODE = {"component": "\ue001", "element": "\ue002", "terminator": "\ue003",
         "release": "\ue004", "repetition": "\ue005"}
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Separators:
    """Service characters of an interchange (UNA, or the syntax 3 defaults ``:+.? '``)."""

    component: str = ":"
    element: str = "+"
    decimal: str = "."
    release: str | None = "?"
    repetition: str = " "
    terminator: str = "'"

    @classmethod
    def from_una(cls, advice: str) -> Separators:
        """Separators from the six characters following ``UNA`` (ISO 9735 UNA1..UNA6)."""
        comp, elem, dec, rel, rep, term = advice
        # A space as UNA4 means no release character is used (ISO 9735-1 clause 8).
        return cls(comp, elem, dec, None if rel == " " else rel, rep, term)


@dataclass(slots=True)
class Chunk:
    """The segments read under one set of separators (a file may hold several UNAs)."""

    separators: Separators
    segments: list[Segment] = field(default_factory=list)
    una: Segment | None = None
    #: Set when the text after the last terminator is not blank (truncated or unterminated).
    unterminated: Segment | None = None


def tokenize(text: str) -> list[Chunk]:
    """Every segment of ``text``, grouped by the UNA that governs it; indexes start at 1."""
    chunks: list[Chunk] = []
    index = 1
    pos = _skip_blank(text, 0)
    while pos < len(text):
        separators = Separators()
        una = None
        if text.startswith("UNA", pos) and len(text) >= pos + 9:
            separators = Separators.from_una(text[pos + 3:pos + 9])
            una = Segment("UNA", [[text[pos + 3:pos + 9]]], index, pos)
            index += 1
            pos += 9
        end = _next_una(text, pos, separators.terminator)
        chunk = Chunk(separators, una=una)
        index = _split(text[pos:end], pos, separators, index, chunk)
        chunks.append(chunk)
        pos = _skip_blank(text, end)
    return chunks


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _next_una(text: str, pos: int, terminator: str) -> int:
    """Offset of the next UNA that starts a segment (a concatenated interchange), or the end."""
    found = text.find("UNA", pos)
    while found != -1:
        before = found - 1
        while before >= pos and text[before] in _WHITESPACE:
            before -= 1
        if before < pos or text[before] == terminator:
            return found
        found = text.find("UNA", found + 3)
    return len(text)


def _mask_released(text: str, seps: Separators) -> str:
    codes = {seps.component: _CODE["component"], seps.element: _CODE["element"],
             seps.terminator: _CODE["terminator"], seps.release: _CODE["release"],
             seps.repetition: _CODE["repetition"]}

    def masked(match: re.Match[str]) -> str:
        char = match.group(1)
        return _MASK + codes.get(char, char)

    return re.sub(re.escape(seps.release or "") + "(.)", masked, text, flags=re.DOTALL)


def _unmask_table(seps: Separators) -> dict[int, str]:
    return {ord(_CODE["component"]): seps.component, ord(_CODE["element"]): seps.element,
            ord(_CODE["terminator"]): seps.terminator, ord(_CODE["release"]): seps.release or "",
            ord(_CODE["repetition"]): seps.repetition}


def _split(body: str, base: int, seps: Separators, index: int, chunk: Chunk) -> int:
    """Append the segments of ``body`` (starting at text offset ``base``) to ``chunk``.

    This loop runs once per segment of every file (80,000 times for 2,000 orders), so it is
    kept flat: no calls but the splits and ``Segment``, and no copy of a segment's text.
    """
    masked = bool(seps.release) and seps.release in body
    if masked:
        body = _mask_released(body, seps)
        table = _unmask_table(seps)
    term, elem, comp = seps.terminator, seps.element, seps.component
    whitespace = _WHITESPACE
    raws = body.split(term)
    if term in "\r\n":
        texts = raws
        blank = whitespace
    else:
        # A newline inside a segment is a wrapped line, not data, unless it is the terminator.
        # Removing line breaks from the whole body at once gives, piece for piece, each
        # segment's text without them; ``raws`` still gives the offsets in the file.
        if "\n" in body or "\r" in body:
            texts = body.replace("\r", "").replace("\n", "").split(term)
        else:
            texts = raws
        blank = " \t"
    append = chunk.segments.append
    offset = base
    segment = None
    for raw, text in zip(raws, texts, strict=True):
        start = offset
        offset += len(raw) + 1
        if not text:
            continue
        if text[0] in blank:
            text = text.lstrip(blank)
            if not text:
                continue
        if raw[0] in whitespace:  # usually the line break after the previous terminator
            lead = 1
            while raw[lead] in whitespace:
                lead += 1
            start += lead
        if text[-1] == "\r":  # CRLF when the terminator is LF
            text = text[:-1]
        parts = text.split(elem)
        tag = parts[0]
        if comp in tag:  # syntax 4 allows tag:nesting; the tag is the first component
            tag = tag.split(comp, 1)[0]
        elements = [p.split(comp) for p in parts[1:]]
        if masked and _MASK in text:
            tag = tag.replace(_MASK, "").translate(table)
            elements = [[c.replace(_MASK, "").translate(table) if _MASK in c else c for c in e]
                        for e in elements]
        segment = Segment(tag, elements, index, start)
        index += 1
        append(segment)
    # Text after the last terminator that is not blank made the last segment: unterminated.
    if segment is not None and raws[-1].lstrip(whitespace):
        chunk.unterminated = segment
    return index
