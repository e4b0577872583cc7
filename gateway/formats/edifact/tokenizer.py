"""Split decoded EDIFACT text into segments, elements and components.

The tokenizer is ours, not pydifact's, for speed: the gateway must parse a file of many
orders at least three times faster than pydifact's ``Interchange.from_str``, which walks the
text one character at a time in Python. pydifact stays the reference we benchmark against
(``bench/``). Here the work is done by ``str.split`` in C; when the text holds a release
character, one ``re.sub`` first masks every released character with a same-length pair of
private-use characters, so offsets stay exact and the plain splits stay correct.

Service characters (ISO 9735-1 clause 7, UNA1..UNA6) come from the UNA that precedes an
interchange, whatever they are (``*@.? #``, a backslash as release character, ``$`` as
terminator, a space as UNA4 for "no release character"). Without a UNA they are the
defaults of the syntax identifier of the UNB that follows, peeked from the raw text since
the UNB is not read yet: ``: + . ? '`` for UNOA, UNOC and the others (and ``*`` as the
repetition separator in syntax version 4), and for UNOB the information separators IS1
(0x1F) between components, IS3 (0x1D) between elements and IS4 (0x1C) as terminator, with
no release character. The separator actually written after the first tag decides when
it contradicts the declaration (UNOB sent with ``+``), with a note on the chunk.

A release character releases whatever follows it: a separator, the terminator, the
release character itself (``??`` is one ``?``, so ``O??'`` ends the segment after
``O?``), or any other character (kept as is). A release character before a line break
releases the line break, which is then dropped like any wrapped line.

Memory is bounded by a stated multiple of the text (``MEMORY_FACTOR``). Segments, data
elements and components are each a Python object of 50 to 250 bytes whatever their length,
so a file made of empty elements (``NAD++++…``) took 85 times its size (1.7 GB of RSS for
15 MB). Before a text is split, its terminators and element and component separators are
counted (``str.count``, in C) and the objects they would make are priced at their measured
upper cost (``SEGMENT_COST``, ``ELEMENT_COST``, ``COMPONENT_COST``); past ``DENSITY_FLOOR``
characters, a text priced over ``DENSITY_LIMIT`` bytes a character is refused
(EdifactSyntaxError, 0085 code 16, too many constituents). Real EDIFACT prices at 20 to 60
(every sample and every corpus file; its actual peak is about 35 times its size); what
passes keeps the reader's peak below ``MEMORY_FACTOR`` times the decoded text
(``tests/unit/test_bounded_readers.py`` measures it with tracemalloc). A streamed file is
priced over everything read so far (``Density``), so a message that accumulates across
windows is bounded the same way.

The syntax 4 repetition separator (UNA5) is kept as a data character: repeated data
elements are not split, exactly as pydifact reads them (``ATT+2++M*M*M`` gives one value
``M*M*M``). No message the gateway maps repeats an element; a mapping that needs it can
split the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import repeat

from gateway.core.deadline import check
from gateway.core.errors import EdifactSyntaxError, Position
from gateway.formats.edifact.model import Segment

#: Marks a released character; followed by the character or by one of the codes below.
_MASK = "\ue000"
_CODE = {"component": "\ue001", "element": "\ue002", "terminator": "\ue003",
         "release": "\ue004", "repetition": "\ue005"}
_WHITESPACE = " \t\r\n"

#: Upper bytes of Python objects per segment (Segment, its element list, tag, text), per
#: data element (its component list, preallocated by ``str.split``, and value) and per
#: further component (its value), measured with tracemalloc.
SEGMENT_COST = 352
ELEMENT_COST = 220
COMPONENT_COST = 64
#: Most object bytes per character a text may cost once past ``DENSITY_FLOOR`` characters.
DENSITY_LIMIT = 80
#: Characters below which a text is never refused for its density (its peak is then below
#: ``MEMORY_FACTOR * DENSITY_FLOOR``, 96 MiB).
DENSITY_FLOOR = 1 << 20
#: The reader's peak memory (tracemalloc) stays below this many times the decoded text's
#: length in characters (bytes for ASCII and Latin-1) once past ``DENSITY_FLOOR``.
MEMORY_FACTOR = 96


class Density:
    """The characters tokenized so far and what their segments and elements cost."""

    __slots__ = ("chars", "cost")

    def __init__(self) -> None:
        self.chars = 0
        self.cost = 0

    def charge(self, body: str, seps: Separators, index: int) -> None:
        """Price ``body`` before it is split; raise EdifactSyntaxError when too dense."""
        segments = body.count(seps.terminator)
        elements = body.count(seps.element)
        components = body.count(seps.component)
        self.chars += len(body)
        self.cost += (segments * SEGMENT_COST + elements * ELEMENT_COST
                      + components * COMPONENT_COST)
        if self.chars > DENSITY_FLOOR and self.cost > DENSITY_LIMIT * self.chars:
            raise EdifactSyntaxError(
                f"{segments} segments, {elements} data elements and {components} components in "
                f"{len(body)} characters (segment {index} on): far more constituents than "
                f"EDIFACT holds (it would take over {DENSITY_LIMIT} bytes of memory a "
                "character, a real file 20 to 60); refused unread", code="16",
                position=Position(segment=index))


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
        comp, elem, dec, rel, rep, term = tuple(advice)
        # A space as UNA4 means no release character is used (ISO 9735-1 clause 8).
        return cls(comp, elem, dec, None if rel == " " else rel, rep, term)

    @classmethod
    def for_syntax(cls, syntax_id: str | None, version: str | None = None) -> Separators:
        """The defaults when no UNA is given (ISO 9735-1 clause 7.1 and annex A).

        Level B (UNOB) uses the information separators; every other repertoire the level A
        characters, with ``*`` as repetition separator from syntax version 4 on.
        """
        if syntax_id == "UNOB":
            return LEVEL_B
        return cls(repetition="*") if version == "4" else cls()

    def problem(self) -> str | None:
        """Why these service characters cannot delimit anything, or None when they can.

        The component and element separators, the terminator, the release character and
        (when not a space) the repetition separator must differ from one another, and none
        may be a letter or digit, or segment tags could not be told from data (0085 code
        20, character invalid as service character).
        """
        named = [("component separator", self.component), ("element separator", self.element),
                 ("segment terminator", self.terminator)]
        if self.release:
            named.append(("release character", self.release))
        if self.repetition != " ":
            named.append(("repetition separator", self.repetition))
        seen: dict[str, str] = {}
        for name, char in named:
            if char.isalnum():
                return f"the {name} {char!r} is a letter or digit"
            if char in seen:
                return f"the {name} and the {seen[char]} are both {char!r}"
            seen[char] = name
        return None


#: ISO 9735 level B defaults without UNA: IS1 (0x1F), IS3 (0x1D), IS4 (0x1C), no release.
LEVEL_B = Separators(component="\x1f", element="\x1d", decimal=".", release=None,
                     repetition=" ", terminator="\x1c")


@dataclass(slots=True)
class Chunk:
    """The segments read under one set of separators (a file may hold several UNAs)."""

    separators: Separators
    segments: list[Segment] = field(default_factory=list)
    una: Segment | None = None
    #: Set when the text after the last terminator is not blank (truncated or unterminated).
    unterminated: Segment | None = None
    #: Set when the separators written contradict the declared syntax identifier's defaults.
    note: str | None = None


def tokenize(text: str, *, base: int = 0, index: int = 1,
             separators: Separators | None = None,
             density: Density | None = None) -> list[Chunk]:
    """Every segment of ``text``, grouped by the UNA that governs it; indexes start at 1.

    A streamed file is tokenized window by window (``gateway.formats.edifact.stream``): then
    ``base`` is the window's offset in the file, ``index`` the index of its first segment,
    and ``separators`` those in force at the end of the previous window, used up to the
    next UNA instead of being guessed again from a UNB that is not in this window.
    ``density`` prices the text before it is split (see the module docstring): the same
    one across a streamed file's windows.
    """
    if density is None:
        density = Density()
    chunks: list[Chunk] = []
    pos = _skip_blank(text, 0)
    carried = separators
    while pos < len(text):
        una = None
        note = None
        if text.startswith("UNA", pos) and len(text) >= pos + 9:
            separators = Separators.from_una(text[pos + 3:pos + 9])
            una = Segment("UNA", [[text[pos + 3:pos + 9]]], index, base + pos)
            index += 1
            pos += 9
        elif carried is not None:
            separators = carried
        else:
            separators, note = _implicit(text, pos)
        carried = None
        end = _next_una(text, pos, separators.terminator)
        if end == pos:  # a UNA too short to advise (under six characters) is not the next one
            end = _next_una(text, pos + 3, separators.terminator)
        chunk = Chunk(separators, una=una, note=note)
        body = text[pos:end]
        check()  # the per-transmission time limit (``gateway.core.deadline``)
        density.charge(body, separators, index)
        index = _split(body, base + pos, separators, index, chunk)
        chunks.append(chunk)
        pos = _skip_blank(text, end)
    return chunks


def _implicit(text: str, pos: int) -> tuple[Separators, str | None]:
    """Separators of an interchange without UNA, from its UNB's syntax identifier.

    ``UNB+UNOC:4`` is read from the raw text: the character after the tag is the element
    separator, the one after the four-letter identifier the component separator.
    """
    written = text[pos + 3:pos + 4]
    syntax_id = version = None
    if text.startswith("UNB", pos):
        syntax_id = text[pos + 4:pos + 8]
        version = text[pos + 9:pos + 10]
    declared = Separators.for_syntax(syntax_id, version)
    if written == declared.element or written not in (LEVEL_B.element, "+"):
        return declared, None
    actual = LEVEL_B if written == LEVEL_B.element else Separators.for_syntax(None, version)
    shown = "IS3 (0x1D)" if actual is LEVEL_B else repr(written)
    declared_as = f"declared {syntax_id} without UNA" if syntax_id else "no UNA and no UNB"
    return actual, (f"{declared_as}, but the element separator written is {shown}; read "
                    f"with the default separators of level {'B' if actual is LEVEL_B else 'A'}")


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
    release = seps.release
    masked = bool(release and release in body)
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
    split = str.split
    comps = repeat(comp)  # endless: ``map`` stops with the shorter
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
        del parts[0]
        elements = list(map(split, parts, comps))  # no Python frame per element
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
