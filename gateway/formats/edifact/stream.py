"""Read a large EDIFACT file block by block, handing over messages as they complete.

``read_interchanges`` decodes, tokenizes and keeps a whole file: a 100 MB price list would
take a gigabyte. A streamed read keeps a window of text instead (issue 3, item 6):

- **Decoding** is incremental (``StreamDecoder``): the syntax identifier is peeked from the
  first 64 KiB, and the policy of ``charset.decode`` is applied as far as a stream allows
  (see ``StreamDecoder``).
- **Windows**: decoded text gathers until it passes ``window`` characters; the window is
  tokenized up to its last segment terminator that is not released (and never inside a
  UNA), the rest is carried over to the next one. The envelope state machine is the same
  ``_Reader`` as in memory, fed window by window, with the separators and the segment
  index carried from one window to the next.
- **Messages** are handed over as they complete and dropped from memory; the UNZ and UNE
  checks count them.
- **Huge messages are sliced**: a message of a type in ``SLICE_TRIGGERS`` that grows past
  ``slice_segments`` segments is handed over in slices, each made of its header (UNH and the
  segments before the first line trigger, LIN), a run of complete line groups and a
  stand-in UNT. The real UNT closes the last slice and is checked against every segment
  counted. A slice maps like a message to a document holding part of the items.

Positions: a segment's index is always exact (counted over the file); line and column are
given while the segment is still in the window (errors found while its window is read,
which is nearly all of them), else left out. A syntax 4 package (UNO..UNP) is read when it
fits in one window and refused (code 13) otherwise.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.core.deadline import check
from gateway.core.errors import EdifactSyntaxError, PayloadError
from gateway.core.gcpause import gc_paused
from gateway.core.ports import (
    Done,
    FailedMessage,
    InterchangeEnd,
    InterchangeSeen,
    MappedDocument,
    Reply,
    Sender,
    Slice,
    SlicedEnd,
    StreamEvent,
)
from gateway.formats.edifact.charset import SYNTAX_CODECS, peek_syntax_id
from gateway.formats.edifact.envelope import _STARTS, _Reader, _start_position
from gateway.formats.edifact.model import Interchange, Message, Segment, Source
from gateway.formats.edifact.tokenizer import (
    Chunk,
    Density,
    Separators,
    _implicit,
    _next_una,
    _skip_blank,
    tokenize,
)

if TYPE_CHECKING:
    from gateway.config import Partner
    from gateway.formats.mapping import MappingSet

#: Message type -> the segment that starts a line group, for the types whose canonical
#: document can be published in parts (``PriceList.part_number``). ORDERS and INVOIC have
#: LIN lines too, but half an order is not an order: they are read whole.
SLICE_TRIGGERS = {"PRICAT": "LIN"}

#: Decoded characters read at a time (about 8,000 segments of a price list).
WINDOW = 256 * 1024
#: A message longer than this (in segments) is handed over in slices.
SLICE_SEGMENTS = 10_000
#: Bytes looked at before the codec is chosen.
_PEEK = 64 * 1024
#: A window that grows this many times past ``window`` without a terminator is not EDIFACT.
_RUNAWAY = 64
#: ``surrogateescape`` turns each byte the codec cannot read into U+DC80..U+DCFF.
_ESCAPED = re.compile("[\udc80-\udcff]")


class StreamDecoder:
    """Bytes to text block by block, as ``charset.decode`` would do for the whole file.

    - A UTF-8 byte order mark is dropped, a UTF-16 one decodes the stream as UTF-16.
    - Up to the first non-ASCII byte the text is ASCII and, under UNOA or UNOB, checked
      against the repertoire (one warning, as in memory).
    - At the first non-ASCII bytes the codec is chosen: UTF-8 when the syntax identifier
      says UNOW/UNOY or is unknown, or when it names a single-byte codec but the bytes seen
      (the rest of the first 64 KiB at least) are valid UTF-8; else the declared codec.
    - Where the whole-file decoder would fall back to Latin-1 for the whole file, the stream
      cannot go back: only the bytes the chosen codec cannot read are taken as Latin-1,
      with one warning naming the first. Both agree on every file that is ASCII, valid
      UTF-8 or valid in its declared codec.
    """

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.syntax_id: str | None = None
        self._peek = b""
        self._started = False
        self._decoder: codecs.IncrementalDecoder | None = None  # None while ASCII
        self._codec = "ascii"
        self._bytes = 0  # bytes decoded so far (for the offset in a warning)
        self._bad_warned = False
        self._repertoire: re.Pattern[str] | None = None
        self._lines = 0  # line breaks before the text not yet checked (repertoire warning)
        self._column = 0

    def feed(self, block: bytes, final: bool = False) -> str:
        """The text of ``block`` (bytes of an incomplete character are kept for the next)."""
        if not self._started:
            self._peek += block
            if len(self._peek) < _PEEK and not final:
                return ""
            block, self._peek = self._peek, b""
            block = self._start(block)
        if self._decoder is None:
            if block.isascii():
                text = block.decode("ascii")
                self._bytes += len(block)
                self._check_repertoire(text)
                return text
            first = next(i for i, byte in enumerate(block) if byte > 0x7F)
            head = block[:first].decode("ascii")
            self._bytes += first
            self._check_repertoire(head)
            self._choose(block[first:], final)
            return head + self._decode(block[first:], final)
        return self._decode(block, final)

    def _start(self, data: bytes) -> bytes:
        self._started = True
        if data.startswith(codecs.BOM_UTF8):
            self.warnings.append("the file starts with a UTF-8 byte order mark; it was ignored")
            data = data[len(codecs.BOM_UTF8):]
            self._bytes = len(codecs.BOM_UTF8)
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self.warnings.append("the file is UTF-16 (it starts with a UTF-16 byte order "
                                 "mark); read as UTF-16")
            self._codec = "utf-16"
            self._decoder = codecs.getincrementaldecoder("utf-16")("replace")
            return data
        self.syntax_id = peek_syntax_id(data)
        allowed = {"UNOA": "A-Z0-9 .,\\-()/='+:?!\"%&*;<>",
                   "UNOB": "A-Z0-9 .,\\-()/='+:?!\"%&*;<>a-z\x1c\x1d\x1f"}.get(
                       self.syntax_id or "")
        if allowed is not None:
            start = len(data) - len(data.lstrip())
            if data.startswith(b"UNA", start):
                allowed += re.escape(data[start + 3:start + 9].decode("latin-1"))
            self._repertoire = re.compile(f"[^{allowed}\r\n\t]")
        return data

    def _choose(self, rest: bytes, final: bool) -> None:
        """Pick the codec at the first non-ASCII byte (see the class docstring)."""
        syntax_id = self.syntax_id
        declared = SYNTAX_CODECS.get(syntax_id or "")
        self._repertoire = None  # the whole-file decoder checks ASCII files only
        codec = "utf-8"
        if syntax_id and declared is None:
            self.warnings.append(f"syntax identifier {syntax_id} is not one edigw knows; "
                                 "read as UTF-8 (Latin-1 if not valid UTF-8)")
        if declared and declared != "utf-8":
            try:
                codecs.getincrementaldecoder("utf-8")("strict").decode(rest, final)
            except UnicodeDecodeError:
                codec = declared
            else:
                self.warnings.append(f"declared {syntax_id} ({declared}) but the bytes are "
                                     "UTF-8; read as UTF-8")
        self._codec = codec
        self._decoder = codecs.getincrementaldecoder(codec)("surrogateescape")

    def _decode(self, block: bytes, final: bool) -> str:
        assert self._decoder is not None
        text = self._decoder.decode(block, final)
        if self._codec != "utf-16" and "\udc80" <= max(text, default="\x00"):
            found = _ESCAPED.search(text)
            if found is not None:
                if not self._bad_warned:
                    self._bad_warned = True
                    offset = self._bytes + len(text[:found.start()].encode(
                        self._codec, "surrogateescape"))
                    declared = f"declared {self.syntax_id}" if self.syntax_id else \
                        "no syntax identifier"
                    self.warnings.append(
                        f"{declared} but byte {offset} is 0x{ord(found.group()) - 0xDC00:02x}, "
                        f"not {self._codec}; such bytes were read as Latin-1")
                text = _ESCAPED.sub(lambda m: chr(ord(m.group()) - 0xDC00), text)
        self._bytes += len(block)
        return text

    def _check_repertoire(self, text: str) -> None:
        pattern = self._repertoire
        if pattern is None:
            return
        found = pattern.search(text)
        if found is None:
            newline = text.rfind("\n")
            self._lines += text.count("\n")
            self._column = len(text) - newline - 1 if newline != -1 else self._column + len(text)
            return
        offset = found.start()
        line = self._lines + text.count("\n", 0, offset) + 1
        newline = text.rfind("\n", 0, offset)
        column = offset - newline if newline != -1 else self._column + offset + 1
        syntax_id = self.syntax_id or "?"
        self.warnings.append(
            f"declared {syntax_id} but {found.group()!r} at line {line}, column {column} is "
            f"not in the level {syntax_id[-1]} character repertoire (0085 code 21); accepted "
            "as ASCII")
        self._repertoire = None


# -- syntax level: messages and interchanges as they complete ----------------------------------


@dataclass(slots=True)
class MessageRead:
    """A message read whole, or one slice of a sliced message.

    ``part`` is None for a whole message, else the slice's number (1-based); ``final`` is
    True for a whole message and for the last slice, whose ``message.error`` holds the
    result of the UNT check over the whole message.
    """

    interchange: Interchange
    message: Message
    part: int | None = None
    final: bool = True


@dataclass(slots=True)
class InterchangeRead:
    """An interchange closed by its UNZ (or the end of a file of bare messages)."""

    interchange: Interchange
    messages: int


class _WindowReader(_Reader):
    """The envelope reader over windows, handing over messages and slices."""

    def __init__(self, source: Source, warnings: list[str], *, slice_segments: int) -> None:
        super().__init__(source, warnings)
        self.windowed = True
        self.slice_segments = slice_segments
        self.events: list[MessageRead | InterchangeRead] = []
        self.header_end: int | None = None  # index of the first line trigger in the message
        self.slices = 0
        self.on_message = self._message_done
        self.on_interchange = self._interchange_done

    def _message_done(self, interchange: Interchange, message: Message) -> None:
        part = self.slices + 1 if self.slices else None
        self.events.append(MessageRead(interchange, message, part, True))
        self.header_end = None
        self.slices = 0

    def _interchange_done(self, interchange: Interchange) -> None:
        self.events.append(InterchangeRead(interchange, self.message_count))

    def slice_open_message(self) -> None:
        """Hand over the complete line groups of a message grown past ``slice_segments``."""
        segments = self.message
        if segments is None or len(segments) < self.slice_segments:
            return
        unh = segments[0]
        trigger = SLICE_TRIGGERS.get(unh.get(1, 0))
        if trigger is None or self.interchange is None:
            return
        if self.header_end is None:
            first = next((i for i, s in enumerate(segments) if s.tag == trigger), None)
            if first is None:
                return
            self.header_end = first
        head = self.header_end
        last = next((i for i in range(len(segments) - 1, head, -1)
                     if segments[i].tag == trigger), head)
        if last <= head:
            return  # one line group so far: nothing complete to hand over
        body = segments[head:last]
        header = segments[:head]
        self.message = header + segments[last:]
        self.released += len(body)
        self.slices += 1
        stand_in = Segment("UNT", [[str(len(header) + len(body) + 1)], [unh.get(0)]],
                           body[-1].index, body[-1].offset)
        self.events.append(MessageRead(
            self.interchange,
            Message(ref=unh.get(0), type=unh.get(1, 0), version=unh.get(1, 1),
                    release=unh.get(1, 2), agency=unh.get(1, 3),
                    association=unh.get(1, 4) or None, segments=[*header, *body, stand_in],
                    index=unh.index, source=self.source, error=self.message_error,
                    group_ref=(self.group.get(4) or None) if self.group is not None else None),
            self.slices, False))


def read_stream(blocks: Iterable[bytes], *, filename: str | None = None, window: int = WINDOW,
                slice_segments: int = SLICE_SEGMENTS,
                warnings: list[str] | None = None) -> Iterator[MessageRead | InterchangeRead]:
    """Messages (or slices) and interchanges of a file given as byte blocks, in file order.

    Raises EdifactSyntaxError for what fails the whole file, as ``read_interchanges`` does,
    when it is met: events before it have been handed over already. ``warnings`` receives
    the file's warnings (decoding, layout), which are also copied onto each interchange,
    each one before the event read after it is handed over.

    The reader keeps the file's warnings in a list of its own: the caller's list may take
    the interchanges' warnings too (``StreamedPayload``), which must not be copied onto
    the next interchange (``read_interchanges`` does not; and a copy of all the earlier
    interchanges' warnings per interchange is quadratic).
    """
    decoder = StreamDecoder()
    own = decoder.warnings
    source = Source("", filename)
    reader = _WindowReader(source, own, slice_segments=slice_segments)
    copied = 0
    try:
        for event in _read_windows(blocks, decoder, reader, window):
            if warnings is not None and len(own) > copied:
                warnings.extend(own[copied:])
                copied = len(own)
            yield event
    except PayloadError as exc:
        exc.senders = reader.senders()  # who the file named before it broke
        raise
    finally:
        if warnings is not None:
            warnings.extend(own[copied:])


def _read_windows(blocks: Iterable[bytes], decoder: StreamDecoder, reader: _WindowReader,
                  window: int) -> Iterator[MessageRead | InterchangeRead]:
    source = reader.source
    state = _Window(reader)
    seen_text = False
    pending: list[str] = []  # decoded text not yet in the window (joined once per window)
    size = len(source.text)
    for block in blocks:
        more = decoder.feed(block)
        if not more:
            continue
        if not seen_text:
            seen_text = bool(more.strip())
        pending.append(more)
        size += len(more)
        if size < window:
            continue
        source.text += "".join(pending)
        pending.clear()
        if not state.checked and len(source.text.lstrip()) >= 3:
            state.check_start()
        yield from state.step(final=False, window=window)
        size = len(source.text)
    pending.append(decoder.feed(b"", final=True))
    source.text += "".join(pending)
    if not (seen_text or source.text.strip()):
        raise EdifactSyntaxError("empty file, no EDIFACT data", code="13")
    if not state.checked:
        state.check_start()
    yield from state.step(final=True, window=window)
    reader.finish()
    yield from state.drain()


class _Window:
    """Cuts the window, tokenizes it and feeds the reader (one per ``read_stream``)."""

    def __init__(self, reader: _WindowReader) -> None:
        self.reader = reader
        self.source = reader.source
        self.separators: Separators | None = None
        self.index = 1
        self.checked = False
        #: Prices every window tokenized (see ``tokenizer``): memory stays bounded when a
        #: message accumulates across windows.
        self.density = Density()

    def check_start(self) -> None:
        """The file must start with UNA, UNB or UNH, as ``read_interchanges`` checks."""
        self.checked = True
        text = self.source.text
        head = text.lstrip()
        if head[:3] not in _STARTS:
            shown = head[:40].splitlines()[0] if head else ""
            raise EdifactSyntaxError(
                f"not EDIFACT: the file starts with {shown!r} where UNA, UNB or UNH was "
                "expected", code="13", position=_start_position(self.source))

    def step(self, *, final: bool, window: int) -> Iterator[MessageRead | InterchangeRead]:
        """Read the window piece by piece (each up to ``window`` characters, cut after a
        terminator) and hand over what completed after each piece. Without ``final`` the
        last ``window`` characters or fewer wait for more text; with it everything is read,
        and the last piece stays in the window (errors at the end of the file then have
        their line and column, as in memory)."""
        while True:
            text = self.source.text
            if len(text) <= window:
                if not final or not text:
                    return
                cut = len(text)
            else:
                cut = self.cut(text[:window]) or self.cut(text)
                if cut <= 0:
                    if not final:
                        if len(text) > _RUNAWAY * window:
                            raise EdifactSyntaxError(
                                f"no segment terminator in {len(text)} characters: not "
                                "EDIFACT, or the separators are wrong", code="13",
                                position=self.source.position(self.reader.last))
                        return
                    cut = len(text)
            # The collector is paused per piece, not across the consumer's work after it.
            with gc_paused():
                chunks = tokenize(text[:cut], base=self.source.base, index=self.index,
                                  separators=self.separators, density=self.density)
                for chunk in chunks:
                    self.reader.feed(chunk)
                    self.reader.slice_open_message()
            self._carry(chunks)
            yield from self.drain()
            if final and cut == len(text):
                return
            self.source.slide(cut)

    def drain(self) -> Iterator[MessageRead | InterchangeRead]:
        events = self.reader.events
        while events:
            batch = events[:]
            events.clear()
            yield from batch

    def _carry(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self.separators = chunk.separators
            last = chunk.segments[-1] if chunk.segments else chunk.una
            if last is not None:
                self.index = last.index + 1

    def cut(self, text: str) -> int:
        """Offset just after the last unreleased terminator, never inside a UNA; 0 if none."""
        seps, una = self._governing(text)
        term, release = seps.terminator, seps.release
        found = len(text)
        while True:
            found = text.rfind(term, 0, found)
            if found == -1:
                return 0
            run = found
            while release and run > 0 and text[run - 1] == release:
                run -= 1
            if (found - run) % 2 == 0:
                break
        if una is not None and una <= found < una + 9:
            return una
        return found + 1

    def _governing(self, text: str) -> tuple[Separators, int | None]:
        """Separators in force at the end of ``text`` and the offset of its last UNA."""
        pos = _skip_blank(text, 0)
        seps = self.separators
        una = None
        if text.startswith("UNA", pos) and len(text) >= pos + 9:
            seps, una = Separators.from_una(text[pos + 3:pos + 9]), pos
            pos += 9
        elif seps is None:
            seps = _implicit(text, pos)[0]
        while True:
            found = _next_una(text, pos, seps.terminator)
            if found >= len(text):
                return seps, una
            una = found
            if len(text) < found + 9:
                return seps, una
            seps = Separators.from_una(text[found + 3:found + 9])
            pos = found + 9


# -- mapping level: documents as their messages complete ---------------------------------------


# Done, Slice, SlicedEnd, InterchangeEnd (the StreamEvent union) are the core's
# (gateway.core.ports): the pipeline dispatches on their types.




class _Skeleton(Sequence[Segment]):
    """The segments of a message as a CONTRL needs them later: UNH and the segment in error
    at their place, the count exact, without keeping the message."""

    def __init__(self, count: int, kept: dict[int, Segment]) -> None:
        self.size = count
        self.kept = kept

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        return self.kept.get(i) or Segment("???", [], 0, 0)


def _skeleton(message: Message, error: PayloadError | None, count: int) -> Message:
    segments = message.segments
    kept = {0: segments[0]}
    position = getattr(error, "position", None)
    if position is not None and position.segment is not None:
        number = position.segment - message.index
        for segment in segments:
            if segment.index == position.segment:
                kept[number] = segment
                break
    return Message(ref=message.ref, type=message.type, version=message.version,
                   release=message.release, agency=message.agency,
                   association=message.association,
                   segments=_Skeleton(count, kept),  # type: ignore[arg-type]
                   index=message.index, source=message.source, error=message.error,
                   group_ref=message.group_ref)


@dataclass(slots=True)
class _Open:
    """An interchange being read: what its CONTRL and its record need at the end."""

    interchange: Interchange
    rejected: PayloadError | None
    verdicts: list[Any] = field(default_factory=list)
    first_failure: Any = None
    messages: int = 0


class StreamedPayload:
    """A large EDIFACT payload read as a stream (``ParsedPayload`` for the pipeline).

    ``open()`` reads up to the first UNB (senders known, for partner identification);
    ``events()`` then maps message after message and yields ``StreamEvent``s. After the
    last event, ``summary``, ``interchanges_seen`` and ``replies`` answer as for a payload
    read in memory. The per-message logic is ``EdifactPayload.judge``, the same code.
    """

    format = "edifact"

    def __init__(self, blocks: Iterable[bytes], *, mappings: MappingSet,
                 filename: str | None = None, window: int = WINDOW,
                 slice_segments: int = SLICE_SEGMENTS) -> None:
        from gateway.formats.edifact.reader import EdifactPayload

        self.warnings: list[str] = []
        self._events = read_stream(blocks, filename=filename, window=window,
                                   slice_segments=slice_segments, warnings=self.warnings)
        self._ahead: list[MessageRead | InterchangeRead] = []
        self._payload = EdifactPayload(interchanges=[], mappings=mappings)
        self.senders: list[Sender] = []
        self.standard: str | None = None
        self._done: list[_Open] = []
        self._kinds: dict[str, int] = {}
        #: ``warnings`` as a set (its first ``_warned_upto`` entries), for ``_warn``.
        self._warned: set[str] = set()
        self._warned_upto = 0

    # -- what the pipeline asks before mapping ----------------------------------------------

    def open(self) -> None:
        """Read until the first message or interchange is known (raises EdifactSyntaxError)."""
        for event in self._events:
            self._ahead.append(event)
            interchange = event.interchange
            self.senders = [Sender(interchange.sender_id, interchange.sender_qualifier)]
            if isinstance(event, MessageRead):
                association = event.message.association or ""
                self.standard = "EANCOM" if association.startswith("EAN") else "UN/EDIFACT"
            return

    def control_refs(self) -> list[str]:
        return []  # checked interchange by interchange (``known`` of ``events``)

    def documents(self, **_: Any) -> list[MappedDocument | FailedMessage]:
        raise TypeError("a streamed payload gives its documents through events()")

    # -- mapping ------------------------------------------------------------------------------

    def events(self, *, partner: Partner, transmission_id: str | None, filename: str | None,
               known: Callable[[str], str | None]) -> Iterator[StreamEvent]:
        """Map each message as it completes; see ``StreamEvent``.

        ``known(ref)`` says where an interchange reference was received before (None when
        new). Every interchange must come from the first one's sender: one file, one
        partner (in memory a file of several partners fails whole; here the later
        interchange is rejected).
        """
        from gateway.formats.edifact.reader import validator

        policy = partner.edifact
        validate = validator()
        payload = self._payload
        payload.warnings = self.warnings
        current: _Open | None = None
        refs: dict[str, str] = {}
        failed_slices: dict[str, tuple[FailedMessage, PayloadError | None]] = {}

        def chained() -> Iterator[MessageRead | InterchangeRead]:
            yield from self._ahead
            self._ahead = []
            yield from self._events

        for event in chained():
            check()  # the per-transmission time limit, once a message
            interchange = event.interchange
            if current is None or current.interchange is not interchange:
                current = self._start(interchange, known, refs, filename, policy)
            if isinstance(event, InterchangeRead):
                self._warn(interchange.warnings)
                self._done.append(current)
                yield InterchangeEnd(interchange.control_ref, self._close(current, policy))
                current = None
                continue
            message = event.message
            if event.part in (None, 1):
                kind = message.describe()
                self._kinds[kind] = self._kinds.get(kind, 0) + 1
            if event.part is None:
                result, error = payload.judge(partner, interchange, message,
                                              rejected=current.rejected, validate=validate,
                                              transmission_id=transmission_id,
                                              filename=filename)
                self._verdict(current, message, error)
                yield Done(result)
                continue
            # A slice: mapped unless an earlier slice of its message failed; the last one
            # carries the UNT check of the whole message (``message.error``).
            key = f"{interchange.control_ref}\x1f{message.index}"
            earlier = failed_slices.get(key)
            if earlier is None:
                result, error = payload.judge(partner, interchange, message,
                                              rejected=current.rejected, validate=validate,
                                              transmission_id=transmission_id,
                                              filename=filename)
                if isinstance(result, FailedMessage):
                    earlier = failed_slices[key] = (result, error)
                else:
                    yield Slice(key, result)
            if event.final:
                failed_slices.pop(key, None)
                yield SlicedEnd(key, earlier[0] if earlier else None)
                self._verdict(current, message, earlier[1] if earlier else None)

    def _warn(self, found: list[str]) -> None:
        """Append to ``warnings`` those of ``found`` not in it yet, in order. A set makes it
        linear: an interchange can hold a warning per segment (every stray segment after
        its first error), and a list scan per warning was quadratic (12 s for 1 MB)."""
        warnings, warned = self.warnings, self._warned
        warned.update(warnings[self._warned_upto:])  # appended by the reader or the judge
        for warning in found:
            if warning not in warned:
                warned.add(warning)
                warnings.append(warning)
        self._warned_upto = len(warnings)

    def _start(self, interchange: Interchange, known: Callable[[str], str | None],
               refs: dict[str, str], filename: str | None, policy: Any) -> _Open:
        rejected: PayloadError | None = interchange.error
        first = self.senders[0] if self.senders else None
        sender = Sender(interchange.sender_id, interchange.sender_qualifier)
        if rejected is None and first is not None and sender.id != first.id:
            rejected = EdifactSyntaxError(
                f"interchange {interchange.control_ref or '-'} comes from sender "
                f"{interchange.sender_id}, the file's first interchange from {first.id}: "
                "one streamed file holds one partner's interchanges", code="13")
        ref = interchange.control_ref
        if rejected is None and ref:
            where = refs.get(ref) or known(ref)
            if where:
                rejected = self._payload._duplicate(interchange, {ref: where},
                                                    policy.duplicate_interchange)
        if ref and ref not in refs:
            refs[ref] = "earlier in this file"
        return _Open(interchange, rejected)

    def _verdict(self, current: _Open, message: Message, error: PayloadError | None) -> None:
        from gateway.formats.edifact.reader import _Verdict

        # UNH to UNT (or the last segment of a message cut short), slices included.
        count = message.segments[-1].index - message.index + 1
        verdict = _Verdict(_skeleton(message, error, count), error)
        current.verdicts.append(verdict)
        current.messages += 1
        if error is not None and current.first_failure is None:
            current.first_failure = verdict

    def _close(self, current: _Open, policy: Any) -> PayloadError | None:
        """The interchange's own error, or the partner's reject-interchange verdict."""
        from gateway.formats.edifact.reader import _Verdict

        interchange = current.interchange
        rejected = current.rejected or interchange.error
        first = current.first_failure
        if (rejected is None and first is not None and len(current.verdicts) > 1
                and policy.on_message_error == "reject-interchange"):
            cause = first.error
            rejected = EdifactSyntaxError(
                f"interchange {interchange.control_ref or '-'} rejected whole (partner "
                f"policy reject-interchange) because message {first.message.ref} "
                f"failed: {cause.reason}", position=cause.position, code=cause.code)
        if rejected is not None:
            current.verdicts = [v if v.error is not None else _Verdict(v.message, rejected)
                                for v in current.verdicts]
        current.rejected = rejected
        return rejected

    # -- after the last event -----------------------------------------------------------------

    def summary(self) -> str:
        refs = ", ".join(o.interchange.control_ref or "-" for o in self._done[:5])
        return (f"EDIFACT (streamed), {len(self._done)} interchange(s) ({refs}"
                f"{' …' if len(self._done) > 5 else ''}), "
                + ", ".join(f"{n} × {k}" for k, n in self._kinds.items()))

    def interchanges_seen(self) -> list[InterchangeSeen]:
        from gateway.formats.edifact.reader import interchange_seen

        seen = []
        for done in self._done:
            record = interchange_seen(done.interchange, done.messages, done.rejected)
            if record is not None:
                seen.append(record)
        return seen

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        payload = self._payload
        payload.interchanges = [d.interchange for d in self._done]
        payload.verdicts = [(d.rejected, d.verdicts) for d in self._done]
        return payload.replies(partner=partner, transmission_id=transmission_id)
