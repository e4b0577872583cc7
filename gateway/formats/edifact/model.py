"""What the EDIFACT reader returns: segments, messages and interchanges, with their positions."""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from gateway.core.errors import EdifactSyntaxError, Position

_NEWLINE = re.compile("\n")


class Source:
    """The decoded text of one file, kept to turn a segment's offset into line and column.

    Lines are counted only when an error or a warning needs them, never while reading: the
    first position asked builds an index of the text's line breaks (one pass, 8 bytes a
    line), and every position after it is a binary search in that index. A file with an
    error in each of its 50,000 messages costs one pass, not one count from the start per
    error (which was quadratic: 28 s of CPU for 1.28 MB).

    A streamed file (``gateway.formats.edifact.stream``) keeps only a window of its text:
    ``base`` is the window's offset in the file, ``line_base`` the number of line breaks
    before it and ``column_base`` the characters between the last of them and the window.
    ``slide`` drops read text from the front and appends new text. An offset outside the
    window has no line or column (None): positions then give the segment index only.
    """

    __slots__ = ("text", "filename", "base", "line_base", "column_base", "_breaks",
                 "_indexed")

    def __init__(self, text: str, filename: str | None = None) -> None:
        self.text = text
        self.filename = filename
        self.base = 0
        self.line_base = 0
        self.column_base = 0
        #: Offsets of the line breaks of ``_indexed`` (the text they were built from: a
        #: streamed window replaces ``text``, which makes the index stale).
        self._breaks: array[int] = array("q")
        self._indexed: str | None = None

    def line_column(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset (``(None, None)`` when a streamed
        window no longer holds it)."""
        rel = offset - self.base
        text = self.text
        if rel < 0 or rel > len(text):
            return None, None  # type: ignore[return-value]
        breaks = self._line_breaks(text)
        before = bisect_left(breaks, rel)  # line breaks before ``rel``
        line = self.line_base + before + 1
        if before == 0:
            return line, self.column_base + rel + 1
        return line, rel - breaks[before - 1]

    def _line_breaks(self, text: str) -> array[int]:
        if self._indexed is not text:
            self._breaks = array("q", (m.start() for m in _NEWLINE.finditer(text)))
            self._indexed = text
        return self._breaks

    def slide(self, cut: int, more: str = "") -> None:
        """Forget the first ``cut`` characters of the window and append ``more``."""
        released = self.text[:cut]
        newline = released.rfind("\n")
        self.line_base += released.count("\n")
        self.column_base = (cut - newline - 1) if newline != -1 else self.column_base + cut
        self.base += cut
        self.text = self.text[cut:] + more

    def position(self, segment: Segment | None, *, element: str | None = None,
                 message_ref: str | None = None, element_pos: int | None = None,
                 component_pos: int | None = None) -> Position:
        """The Position of ``segment`` (and optionally one of its elements) in this file."""
        if segment is None:
            return Position(element=element, message_ref=message_ref)
        line, column = self.line_column(segment.offset)
        return Position(segment=segment.index, line=line, column=column, tag=segment.tag,
                        element=element, message_ref=message_ref, element_pos=element_pos,
                        component_pos=component_pos)


class Segment:
    """One segment: its tag, its elements (each a list of components), index and offset.

    ``index`` is 1-based in the file (UNA counts as a segment); ``offset`` is the character
    offset of the tag in the decoded text.
    """

    __slots__ = ("tag", "elements", "index", "offset")

    def __init__(self, tag: str, elements: list[list[str]], index: int, offset: int) -> None:
        self.tag = tag
        self.elements = elements
        self.index = index
        self.offset = offset

    def get(self, element: int, component: int = 0) -> str:
        """The value at 0-based (element, component), or "" when the segment does not have it."""
        elements = self.elements
        if element < len(elements):
            comps = elements[element]
            if component < len(comps):
                return comps[component]
        return ""

    def __repr__(self) -> str:
        return f"Segment({self.tag!r}, {self.elements!r}, index={self.index})"


@dataclass(slots=True)
class Message:
    """One UNH..UNT message; ``segments`` includes UNH and UNT, ``index`` is that of UNH."""

    ref: str
    type: str
    version: str
    release: str
    agency: str
    association: str | None
    segments: list[Segment]
    index: int
    source: Source = field(repr=False, compare=False)
    #: Set when the envelope check failed for this message alone (UNT count or reference,
    #: duplicate reference …): the message is kept, not mapped, and reported (CONTRL UCM).
    error: EdifactSyntaxError | None = field(default=None, compare=False)
    #: UNG 0048 of the functional group holding the message, if any.
    group_ref: str | None = None

    @property
    def directory(self) -> str:
        """The directory version as one word, e.g. ``D96A``."""
        return f"{self.version}{self.release}".upper()

    def describe(self) -> str:
        """``ORDERS D:96A:UN:EAN008`` — the message identifier as a person reads it."""
        ident = ":".join([self.version, self.release, self.agency, self.association or ""])
        return f"{self.type} {ident.rstrip(':')}"


@dataclass(slots=True)
class Interchange:
    """One UNB..UNZ interchange (or the messages of a file without envelope: sender None)."""

    syntax_id: str | None
    syntax_version: str | None
    sender_id: str | None
    sender_qualifier: str | None
    recipient_id: str | None
    recipient_qualifier: str | None
    prepared_date: str | None
    prepared_time: str | None
    control_ref: str | None
    test_indicator: str | None
    decimal_mark: str
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Set when the interchange as a whole is rejected (UNZ count, a group's UNE …): none of
    #: its messages is mapped, and a CONTRL reports it at UCI level.
    error: EdifactSyntaxError | None = field(default=None, compare=False)
    #: UNB 0031: "1" when the sender asks for an acknowledgement (a CONTRL).
    ack_request: str | None = None
    #: The repetition separator in force (UNA5 under syntax 4, ``*`` by default there);
    #: "" under syntax 1 to 3, which have none; None when not known (bare messages).
    repetition: str | None = None

    @property
    def ack_requested(self) -> bool:
        return self.ack_request == "1"

    #: Syntax version number (UNB S001 0002) as an int, when it is a number.
    @property
    def syntax_level(self) -> int | None:
        v = self.syntax_version
        return int(v) if v and len(v) < 5 and v.isascii() and v.isdigit() else None
