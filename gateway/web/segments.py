"""A payload as a person reads it, a window at a time: EDIFACT one segment per line, other
text line by line, for the API's ``/segments`` and the transmission page.

``edifact_segments(data)`` cuts a whole (small) payload with the gateway's own tokenizer.
A big one is never read whole: ``raw_window(blocks, …)`` walks the archive's blocks and
keeps only the lines of the window asked for, stopping right after it; lines are numbered
as the readers number them (EDIFACT: the segment index of ``core.errors.Position``, UNA
counted; text: 1-based lines), so a reason's "segment 21" or "line 7" is the line marked.
``failing_position(reason)`` reads where a reason points (segment, line, column, byte).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: A line longer than this is shown cut (a minified XML file is one line).
MAX_LINE = 4000
#: A segment or line longer than this is not kept whole in memory while walking.
_MAX_PIECE = 64 * 1024


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


# -- where a reason points --------------------------------------------------------------------

_NUMBER = {name: re.compile(rf"\b{name} (\d+)\b") for name in ("segment", "line", "column")}
_BYTE = re.compile(r"\bbyte (?:offset )?(\d+)\b")


@dataclass(frozen=True, slots=True)
class Failing:
    """Where a failure reason points in the payload (each part when it names it; the last
    one named, as ``Position`` is appended to the reason)."""

    segment: int | None = None
    line: int | None = None
    column: int | None = None
    byte: int | None = None

    def line_in(self, *, edifact: bool) -> int | None:
        """The line of the window to mark: the segment in a view by segments, else the
        line (None when only a byte offset is known: ``locate`` finds its line)."""
        if edifact and self.segment is not None:
            return self.segment
        return self.line if not edifact or self.segment is None else None


def failing_position(reason: str | None) -> Failing | None:
    """The position ``reason`` names (``… at line 21, column 1, segment 21 (QTY)``), or None
    when it names none."""
    if not reason:
        return None
    found: dict[str, int] = {}
    for name, pattern in _NUMBER.items():
        hits = pattern.findall(reason)
        if hits:
            found[name] = int(hits[-1])
    byte = _BYTE.findall(reason)
    if not found and not byte:
        return None
    return Failing(segment=found.get("segment"), line=found.get("line"),
                   column=found.get("column"), byte=int(byte[-1]) if byte else None)


# -- walking a payload ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line of the window: its number, its text (cut at ``MAX_LINE`` characters, then
    ``cut`` is set), and whether the failure points at it."""

    number: int
    text: str
    failing: bool = False
    cut: bool = False


@dataclass(frozen=True, slots=True)
class RawWindow:
    """Lines ``first`` … of a payload (``segments`` for EDIFACT, else ``lines``); ``more``
    when the payload goes on after them."""

    kind: str
    first: int
    lines: list[RawLine]
    more: bool

    @property
    def last(self) -> int:
        return self.lines[-1].number if self.lines else self.first - 1


def is_edifact(head: bytes) -> bool:
    """Whether a payload starting with ``head`` is EDIFACT (UNA, UNB or UNH first)."""
    return head.lstrip(b"\xef\xbb\xbf \r\n\t")[:3] in (b"UNA", b"UNB", b"UNH")


def _separators(head: bytes) -> tuple[bytes, bytes | None, int]:
    """(terminator, release, length of the UNA to emit as segment 1 or 0) of an EDIFACT
    payload starting with ``head`` (ISO 9735: UNA, else the level A defaults, else level
    B's IS4 when the UNB is written with IS3)."""
    body = head.lstrip(b"\xef\xbb\xbf \r\n\t")
    if body.startswith(b"UNA") and len(body) >= 9:
        release = body[6:7]
        return body[8:9], None if release == b" " else release, 9
    if body[3:4] == b"\x1d":
        return b"\x1c", None, 0
    return b"'", b"?", 0


def _released(piece: bytes, release: bytes) -> bool:
    """Whether ``piece`` ends in an odd run of release characters (so the terminator after
    it is data, ISO 9735-1 clause 8)."""
    n = len(piece) - len(piece.rstrip(release))
    return n % 2 == 1


def _edifact_pieces(blocks: Iterable[bytes], skip: int = 0
                    ) -> Iterator[tuple[int, int, bytes]]:
    """(segment index, byte offset, bytes) of each segment, UNA counted, blank ones skipped
    (as ``formats.edifact.tokenizer`` numbers them). Segments before index ``skip`` may be
    counted without being yielded (a window deep in a big file)."""
    it = iter(blocks)
    carry = b""
    for block in it:  # enough of the start to read the UNA
        carry += block
        if len(carry.lstrip(b"\xef\xbb\xbf \r\n\t")) >= 9:
            break
    terminator, release, una = _separators(carry)
    index, offset = 1, 0
    if una:
        start = len(carry) - len(carry.lstrip(b"\xef\xbb\xbf \r\n\t"))
        yield index, start, carry[start:start + una]
        index, offset, carry = 2, start + una, carry[start + una:]

    # A blank piece between two terminators (the tokenizer skips it); the literal first
    # lets the regex engine jump from terminator to terminator.
    blank = re.compile(re.escape(terminator) + b"[ \t\r\n]*(?=" + re.escape(terminator)
                       + b")")
    released = (release or b"") + terminator

    def counted(buffer: bytes) -> bytes:
        """Count the whole segments at the start of ``buffer`` that lie before ``skip`` at C
        speed, as long as no terminator among them is released; the rest is returned for
        the loop below to read (the prefix tried is halved until it fits)."""
        nonlocal index, offset
        size = len(buffer)
        while size >= 4096:
            end = buffer.rfind(terminator, 0, size)
            if end < 0:
                break
            body = buffer[:end + 1]
            first = body.index(terminator)
            n = (body.count(terminator) - len(blank.findall(body))
                 - (not body[:first].strip(b" \t\r\n")))
            if (release and released in body) or index + n >= skip:
                size //= 2
                continue
            index += n
            offset += len(body)
            buffer = buffer[end + 1:]
            size = len(buffer)
        return buffer

    def cut(buffer: bytes, at: int, final: bool) -> Iterator[tuple[int, int, bytes]]:
        nonlocal index, offset, carry
        if skip > index:
            buffer = counted(buffer)
            at = offset
        parts = buffer.split(terminator)
        tail = b"" if final else parts.pop()
        pending = b""
        for part in parts:
            if release and _released(part, release):
                pending += part + terminator
                continue
            whole = pending + part
            pending = b""
            size = len(whole) + 1
            text = whole.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
            if text:
                lead = len(whole) - len(whole.lstrip(b" \t\r\n"))
                yield index, at + lead, text + terminator
                index += 1
            at += size
        carry = pending + tail
        offset = at

    yield from cut(carry, offset, False)
    for block in it:
        carry += block
        if len(carry) > _MAX_PIECE and terminator not in carry:
            carry = carry[:_MAX_PIECE]  # a runaway segment: its start is enough to show
        yield from cut(carry, offset, False)
    if carry:
        text = carry.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
        if text:  # unterminated: the tokenizer counts it as a segment too
            yield index, offset, text


def _line_pieces(blocks: Iterator[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each line, blank ones included."""
    number, offset, carry = 1, 0, b""
    for block in blocks:
        carry += block
        while True:
            lines = carry.split(b"\n")
            carry = lines.pop()
            for line in lines:
                yield number, offset, line.rstrip(b"\r")
                number += 1
                offset += len(line) + 1
            if len(carry) <= _MAX_PIECE:
                break
            # One very long line (a minified XML file): its start is kept, the rest skipped.
            yield number, offset, carry[:_MAX_PIECE]
            number += 1
            while (end := carry.find(b"\n")) < 0:
                offset += len(carry)
                carry = next(blocks, b"")
                if not carry:
                    return
            offset += end + 1
            carry = carry[end + 1:]
    if carry:
        yield number, offset, carry.rstrip(b"\r")


def _pieces(blocks: Iterable[bytes], edifact: bool, skip: int = 0
            ) -> Iterator[tuple[int, int, bytes]]:
    return _edifact_pieces(blocks, skip) if edifact else _line_pieces(iter(blocks))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def locate(blocks: Iterable[bytes], byte: int, *, edifact: bool) -> int | None:
    """The number of the line (segment) holding byte ``byte``, read up to it only."""
    found = None
    for number, offset, _data in _pieces(blocks, edifact):
        if offset > byte:
            break
        found = number
    return found


def raw_window(blocks: Iterable[bytes], *, edifact: bool, first: int, count: int,
               failing: int | None = None) -> RawWindow:
    """Lines ``first`` … ``first + count - 1`` of the payload in ``blocks`` (read up to the
    line after them, no further), line ``failing`` marked."""
    first = max(1, first)
    lines: list[RawLine] = []
    more = False
    for number, _offset, data in _pieces(blocks, edifact, skip=first):
        if number < first:
            continue
        if number >= first + count:
            more = True
            break
        text = _text(data[:MAX_LINE * 4])
        cut = len(text) > MAX_LINE or len(data) >= _MAX_PIECE
        lines.append(RawLine(number=number, text=text[:MAX_LINE], failing=number == failing,
                             cut=cut))
    return RawWindow(kind="segments" if edifact else "lines", first=first, lines=lines,
                     more=more)


__all__ = ["MAX_LINE", "Failing", "RawLine", "RawWindow", "edifact_segments",
           "failing_position", "is_edifact", "locate", "raw_window"]
