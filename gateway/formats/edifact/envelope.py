"""Read interchanges: decode, tokenize, then check the UNB/UNG/UNH/UNT/UNE/UNZ envelope.

An error is kept at the level it concerns, so that one bad message of forty fails alone:

- **the file** (``read_interchanges`` raises ``EdifactSyntaxError``): nothing can be trusted
  or framed. An empty file; not EDIFACT (anything but UNA, UNB or UNH first, such as junk
  lines or a proprietary preamble); a UNA whose service characters cannot delimit; a
  segment tag that is not a tag outside any message (wrong separators: framing is lost);
  a segment outside every interchange (after UNZ); a truncated file (a message without
  UNT or an interchange without UNZ at the end of the file, a package without UNP); a UNB
  while an interchange is still open.
- **an interchange** (``Interchange.error``, its messages still listed, none mapped): UNB
  lacking a mandatory element or declaring a syntax version other than 1 to 4; UNZ count;
  a functional group's UNG without reference, UNE count or reference, a group without
  UNE; messages beside groups; a stray segment between messages (UCD, DTM …); a package
  whose UNP does not match its UNO. The first such error is ``error``; later ones are
  added to the interchange's warnings with their code.
- **a message** (``Message.error``, reading goes on): UNH without reference or message
  identifier, a message reference repeated in the interchange (the repeat gets it), UNT
  count or reference, a segment tag that is not a tag inside the message, a message cut
  short by the next UNH, UNG, UNE, UNO or UNZ (its UNT is missing). The first error
  found in the message, in segment order, is kept.

Policies: a UNZ reference that does not repeat UNB 0020 is a warning (see
``close_interchange``). A message cut short by the next UNH is listed and counted, so the
UNZ count (which counts messages received) agrees when the sender counted it. Syntax 4
packages (UNO object UNP) are framed by their octet length and skipped, with a warning:
edigw maps no object. UNZ 0036 and UNE 0060 are accepted counting messages only or
messages and packages, since syntax 4 counts both but the EN 16931 examples count
messages only. UNB date and time of preparation (S004) are required under the UN/ECE
syntax identifiers (UNOA …) only: other agencies' syntaxes (ANSI, IATB) set their own UNB.

Codes (UN/EDIFACT 0085, as a CONTRL reports them):

- 2: syntax version or level not supported (UNB S001 0002 not 1 to 4).
- 12: invalid value (a count that is not a number; a segment tag that is not a tag).
- 13: missing (empty file; a mandatory UNB, UNG or UNH element; a UNT, UNE, UNZ or UNP).
- 20: character invalid as service character (UNA).
- 21: invalid character(s): named in a warning only (see ``charset``: characters outside
  the declared repertoire are read, not rejected).
- 26: duplicate detected (a message reference repeated within an interchange).
- 28: references do not match (UNT/UNH 0062, UNE/UNG 0048, UNP/UNO 0800; UNZ/UNB 0020 as
  a warning only).
- 29: control count does not match number of instances received (UNT 0074, UNE 0060,
  UNZ 0036, UNO/UNP 0810).
- 30: functional groups and messages mixed (ISO 9735: an interchange holds either
  functional groups or messages, never both; this is the exact code for messages beside
  groups, where 33 would only say "outside a group").
- 33: invalid occurrence outside message, package or group (a stray segment between
  messages, UNE without UNG, UNT without UNH, a segment after the UNZ).

Element positions are those of a CONTRL UCD (S011 0098, 0104): the data element's
1-based position in its segment (the tag is 0) and the component's in its composite, so
UNT 0074 is element 1, UNT 0062 element 2, UNZ 0036 element 1, UNB 0020 element 5.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from gateway.core.deadline import check
from gateway.core.errors import EdifactSyntaxError, PayloadError, Position
from gateway.core.gcpause import gc_paused
from gateway.core.ports import Sender
from gateway.formats.edifact.charset import decode
from gateway.formats.edifact.model import Interchange, Message, Segment, Source
from gateway.formats.edifact.tokenizer import Chunk, Separators, tokenize

_TAG = re.compile(r"[A-Z][A-Z0-9]{2}")
_STARTS = ("UNA", "UNB", "UNH")
#: Tags that open or close a message, group, package or interchange: never appended
#: to a message without a look.
_ENVELOPE = frozenset({"UNA", "UNB", "UNG", "UNH", "UNT", "UNE", "UNO", "UNZ"})
#: Tags a message cannot hold: met inside one, they mean its UNT is missing.
_BREAKS = frozenset({"UNB", "UNG", "UNH", "UNE", "UNO", "UNZ"})
#: What a DOS tool or a padded transfer may leave after the last segment.
_PADDING = "\x1a\x00"
#: The mandatory components of UNH S009: (0-based position, data element, name).
_MESSAGE_IDENTIFIER = ((0, "0065", "message type"), (1, "0052", "message version number"),
                       (2, "0054", "message release number"), (3, "0051", "controlling agency"))
#: Most digits of each count or length the envelope reads (ISO 9735 syntax 4 lengths; UNT
#: 0074 is n..10 there, n..6 before): a longer number is refused before ``int()``.
_COUNT_DIGITS = {"UNZ/0036": 6, "UNE/0060": 6, "UNT/0074": 10, "UNO/S022/0810": 18,
                 "UNO/S022/0814": 3}
#: Segments read between two looks at the per-transmission time limit (``deadline``).
_CHECK_EVERY = 4096
#: Syntax versions ISO 9735 defines (S001 0002).
_VERSIONS = frozenset({"1", "2", "3", "4"})


def read_interchanges(data: bytes, *, filename: str | None = None) -> list[Interchange]:
    """Every interchange in ``data``; a file of bare UNH..UNT messages gives one, sender None.

    Raises EdifactSyntaxError (reason, Position, 0085 code) only when the file as a whole
    cannot be read (see the module docstring); errors of one interchange or one message
    are returned on ``Interchange.error`` and ``Message.error``.
    """
    if not data.strip():
        raise EdifactSyntaxError("empty file, no EDIFACT data", code="13")
    text, _syntax, warnings = decode(data)
    source = Source(text, filename)
    head = text.lstrip()
    if head[:3] not in _STARTS:
        shown = head[:40].splitlines()[0] if head else ""
        raise EdifactSyntaxError(
            f"not EDIFACT: the file starts with {shown!r} where UNA, UNB or UNH was expected",
            code="13", position=_start_position(source))
    reader = _Reader(source, warnings)
    try:
        with gc_paused():
            return reader.read()
    except PayloadError as exc:
        exc.senders = reader.senders()
        raise


def _start_position(source: Source) -> Position:
    offset = len(source.text) - len(source.text.lstrip())
    line, column = source.line_column(offset)
    return Position(segment=1, line=line, column=column)


class _Reader:
    """Walks the segments once, keeping the open interchange, group and message."""

    def __init__(self, source: Source, warnings: list[str]) -> None:
        self.source = source
        self.warnings = warnings
        self.interchanges: list[Interchange] = []
        self.interchange: Interchange | None = None
        self.unb: Segment | None = None
        self.message: list[Segment] | None = None
        #: The first error found in the open message (UNH or a bad tag), if any.
        self.message_error: EdifactSyntaxError | None = None
        self.last: Segment | None = None
        self.tags: set[str] = set()
        self.plain: set[str] = set()
        self.chunk: Chunk | None = None
        self.separators = Separators()
        #: Offset up to which the segments are a package's object, not segments.
        self.skip_until = -1
        #: Segments of the open message already handed over in slices (streamed files): the
        #: UNT count counts them too.
        self.released = 0
        #: True when ``source`` is a window of a streamed file, not the whole text.
        self.windowed = False
        #: Streaming hooks: a completed message goes to ``on_message`` instead of its
        #: interchange's list; a closed interchange to ``on_interchange``.
        self.on_message: Callable[[Interchange, Message], None] | None = None
        self.on_interchange: Callable[[Interchange], None] | None = None
        self.reset_interchange()

    def reset_interchange(self) -> None:
        #: UNH 0062 -> segment index of its first UNH, in the open interchange.
        self.refs: dict[str, int] = {}
        #: Messages of the open interchange: counted, since a streamed file hands them over
        #: (``on_message``) instead of keeping them on the interchange.
        self.message_count = 0
        self.group: Segment | None = None
        self.group_messages = 0
        self.group_packages = 0
        self.groups = 0
        self.packages = 0
        self.ungrouped = 0
        #: UNB 0026 of the open interchange (see close_interchange).
        self.application_ref: str | None = None

    def senders(self) -> tuple[Sender, ...]:
        """The UNB senders read so far (the open interchange's last), for a failed file."""
        seen: list[Sender] = []
        for interchange in [*self.interchanges, self.interchange]:
            if interchange is not None and interchange.sender_id:
                sender = Sender(interchange.sender_id, interchange.sender_qualifier)
                if sender not in seen:
                    seen.append(sender)
        return tuple(seen)

    def fail(self, reason: str, segment: Segment | None, code: str, *,
             element: str | None = None, message_ref: str | None = None,
             element_pos: int | None = None,
             component_pos: int | None = None) -> EdifactSyntaxError:
        position = self.source.position(segment, element=element, message_ref=message_ref,
                                        element_pos=element_pos, component_pos=component_pos)
        return EdifactSyntaxError(reason, position=position, code=code)

    def fault(self, reason: str, segment: Segment | None, code: str, *,
              element: str | None = None, element_pos: int | None = None,
              component_pos: int | None = None) -> None:
        """Record an error of the open interchange; the first one rejects it."""
        interchange = self.interchange
        assert interchange is not None
        error = self.fail(reason, segment, code, element=element, element_pos=element_pos,
                          component_pos=component_pos)
        if interchange.error is None:
            interchange.error = error
        else:
            interchange.warnings.append(f"also (0085 code {code}): {error}")

    def read(self) -> list[Interchange]:
        for chunk in tokenize(self.source.text):
            self.feed(chunk)
        self.finish()
        return self.interchanges

    def feed(self, chunk: Chunk) -> None:
        """Read the segments of one chunk (all of a file, or one window of a streamed one)."""
        # Checked tags that need nothing but appending inside a message (not UNH/UNT/UNB/UNZ).
        plain = self.plain
        step = self.step
        self.start_chunk(chunk)
        decimal = chunk.separators.decimal
        segments = chunk.segments
        for begin in range(0, len(segments), _CHECK_EVERY):
            check()  # the per-transmission time limit, once per block: nothing per segment
            for segment in segments[begin:begin + _CHECK_EVERY]:
                message = self.message
                if message is not None and segment.tag in plain:
                    message.append(segment)  # the common case, what step() would do
                else:
                    self.last = segment
                    step(segment, decimal)
        if chunk.segments:
            self.last = chunk.segments[-1]
        if chunk.unterminated is not None:
            self.note_unterminated(chunk.unterminated)

    def start_chunk(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.separators = chunk.separators
        if chunk.una is not None:
            problem = chunk.separators.problem()
            if problem:
                raise self.fail(f"UNA service string advice {chunk.una.get(0)!r}: {problem}",
                                chunk.una, "20", element="UNA")
        if chunk.note:
            self.warnings.append(chunk.note)
            if self.interchange is not None:
                self.interchange.warnings.append(chunk.note)

    def note_unterminated(self, segment: Segment) -> None:
        if segment.tag in ("UNZ", "UNT") and self.message is None:
            self.warnings.append(f"the last segment ({segment.tag}, segment {segment.index}) "
                                 "has no segment terminator")
            if self.interchange is not None:
                self.interchange.warnings.append(self.warnings[-1])

    def valid_tag(self, tag: str) -> bool:
        if tag in self.tags:
            return True
        if not _TAG.fullmatch(tag):
            return False
        self.tags.add(tag)
        if tag not in _ENVELOPE:
            self.plain.add(tag)
        return True

    def bad_tag(self, segment: Segment, message_ref: str | None = None) -> EdifactSyntaxError:
        return self.fail(f"segment {segment.index} has tag {segment.tag[:20]!r}: a segment tag "
                         "is three upper-case letters or digits", segment, "12",
                         message_ref=message_ref)

    def step(self, segment: Segment, decimal: str) -> None:
        if segment.offset < self.skip_until:
            return  # a piece of a package's object, split at a byte that looks like a separator
        tag = segment.tag
        if self.message is not None:
            if tag not in _BREAKS:
                if not self.valid_tag(tag) and self.message_error is None:
                    self.message_error = self.bad_tag(segment, self.message[0].get(0))
                self.message.append(segment)
                if tag == "UNT":
                    self.close_message(segment)
                return
            self.close_truncated(segment)
        if not self.valid_tag(tag):
            if self.interchange is None and not tag.strip(_PADDING) and not segment.elements:
                self.warnings.append(f"{len(tag)} padding character(s) (Ctrl-Z or NUL) after "
                                     f"the last segment were ignored")
                return
            raise self.bad_tag(segment)
        if tag == "UNH":
            self.open_message(segment, decimal)
        elif tag == "UNB":
            if self.interchange is not None:
                what = (f"interchange {self.interchange.control_ref!r} has no UNZ"
                        if self.unb is not None else "messages without UNB precede it")
                raise self.fail(f"UNB at segment {segment.index} opens an interchange but "
                                f"{what}", segment, "13")
            self.open_interchange(segment, decimal)
        elif self.interchange is None:
            where = ("after the UNZ, outside any interchange" if self.interchanges
                     else "before any UNB or UNH")
            if tag == "UNA":
                where = "an incomplete service string advice (UNA takes six characters)"
            raise self.fail(f"segment {tag} at segment {segment.index} is {where}",
                            segment, "33")
        elif tag == "UNZ":
            if self.unb is None:
                raise self.fail(f"UNZ at segment {segment.index} closes messages that have no "
                                "UNB", segment, "33")
            self.close_interchange(segment)
        elif tag == "UNG":
            self.open_group(segment)
        elif tag == "UNE":
            self.close_group(segment)
        elif tag == "UNO":
            self.skip_package(segment)
        else:
            self.stray(segment)

    def stray(self, segment: Segment) -> None:
        tag = segment.tag
        if self.group is not None:
            where = (f"inside functional group {self.group.get(4)!r} but outside any message "
                     "(UNH..UNT)")
        elif self.groups:
            where = "between functional groups"
        elif self.interchange is not None and self.message_count:
            where = "between messages (outside UNH..UNT)"
        else:
            where = "before the first message or group (outside UNH..UNT)"
        kind = "service segment" if tag.startswith("U") else "segment"
        self.fault(f"{kind} {tag} at segment {segment.index} is {where}", segment, "33")

    # -- interchange -----------------------------------------------------------------------

    def open_interchange(self, unb: Segment, decimal: str) -> None:
        warnings = list(self.warnings)
        syntax_id = unb.get(0, 0)
        version = unb.get(0, 1)
        sender = unb.get(1, 0)
        recipient = unb.get(2, 0)
        control_ref = unb.get(4, 0)
        for label, value in (("sender", sender), ("recipient", recipient)):
            if value.strip() and value != value.strip():
                warnings.append(f"UNB {label} {value!r} has surrounding spaces; they were removed")
        self.unb = unb
        self.reset_interchange()
        self.interchange = Interchange(
            syntax_id=syntax_id or None, syntax_version=version or None,
            sender_id=sender.strip() or None, sender_qualifier=unb.get(1, 1) or None,
            recipient_id=recipient.strip() or None, recipient_qualifier=unb.get(2, 1) or None,
            prepared_date=unb.get(3, 0) or None, prepared_time=unb.get(3, 1) or None,
            control_ref=control_ref or None, test_indicator=unb.get(10, 0) or None,
            decimal_mark=decimal, warnings=warnings, ack_request=unb.get(8, 0) or None,
            repetition=(self.separators.repetition.strip() if version == "4" else ""))
        self.application_ref = unb.get(6, 0) or None
        missing = [(syntax_id, "syntax identifier (S001 0001)", "UNB/S001/0001", 1, 1),
                   (version, "syntax version number (S001 0002)", "UNB/S001/0002", 1, 2),
                   (sender.strip(), "interchange sender (S002 0004)", "UNB/S002/0004", 2, 1),
                   (recipient.strip(), "interchange recipient (S003 0010)", "UNB/S003/0010",
                    3, 1),
                   (unb.get(3, 0), "date of preparation (S004 0017)", "UNB/S004/0017", 4, 1),
                   (unb.get(3, 1), "time of preparation (S004 0019)", "UNB/S004/0019", 4, 2),
                   (control_ref, "interchange control reference (0020)", "UNB/0020", 5, None)]
        if not syntax_id.startswith("UNO"):
            # Another agency's syntax (ANSI, IATB …) sets its own UNB rules: the Austrian
            # medical UNB writes date and time as two elements. Only what edigw needs is
            # required there: sender, recipient and control reference.
            missing = [m for m in missing if m[2] not in ("UNB/S004/0017", "UNB/S004/0019")]
        for value, what, element, pos, comp in missing:
            if not value:
                self.fault(f"UNB at segment {unb.index} has no {what}", unb, "13",
                           element=element, element_pos=pos, component_pos=comp)
        if version and version not in _VERSIONS:
            self.fault(f"UNB syntax version number (S001 0002) is {version!r}; edigw reads "
                       "syntax versions 1 to 4", unb, "2", element="UNB/S001/0002",
                       element_pos=1, component_pos=2)

    def close_interchange(self, unz: Segment) -> None:
        interchange = self.interchange
        assert interchange is not None
        if self.group is not None:
            self.fault(f"functional group {self.group.get(4)!r} (UNG at segment "
                       f"{self.group.index}) has no UNE before the UNZ at segment {unz.index}",
                       self.group, "13", element="UNE")
        declared = unz.get(0)
        messages = self.message_count
        counted = [self.groups] if self.groups else [messages, messages + self.packages]
        what = "functional groups" if self.groups else "messages"
        count, problem, code = _count(declared, _COUNT_DIGITS["UNZ/0036"])
        if count is None:
            self.fault(f"UNZ control count {_shown(declared)} {problem}", unz,
                       code, element="UNZ/0036", element_pos=1)
        elif count not in counted:
            packages = f" (and {self.packages} packages)" if self.packages and not self.groups \
                else ""
            self.fault(f"UNZ control count is {count} but the interchange has "
                       f"{counted[0]} {what}{packages}", unz, "29", element="UNZ/0036",
                       element_pos=1)
        if interchange.control_ref is not None and unz.get(1) != interchange.control_ref:
            # Policy: accepted with a warning. ISO 9735 wants UNZ 0020 to repeat UNB 0020,
            # but real senders miss it: all nine CEN/TC 434 EN 16931 INVOIC examples carry
            # another number there, and the German Wikipedia sample the application
            # reference (0026). Every message was checked against its own UNT count and
            # reference and the UNZ count against the messages, so nothing is missing.
            # A CONTRL would report it as code 28.
            where = self.source.position(unz, element="UNZ/0020", element_pos=2)
            slip = (" (it repeats the UNB application reference 0026)"
                    if unz.get(1) and unz.get(1) == self.application_ref else "")
            interchange.warnings.append(
                f"UNZ control reference {unz.get(1)!r} does not match the UNB reference "
                f"{interchange.control_ref!r}{slip} (0085 code 28) at {where}; accepted")
        self.interchanges.append(interchange)
        self.interchange = None
        self.unb = None
        if self.on_interchange is not None:
            self.on_interchange(interchange)

    # -- functional groups -----------------------------------------------------------------

    def open_group(self, ung: Segment) -> None:
        if self.group is not None:
            self.fault(f"functional group {self.group.get(4)!r} (UNG at segment "
                       f"{self.group.index}) has no UNE before the UNG at segment {ung.index}",
                       self.group, "13", element="UNE")
        if self.ungrouped:
            self.fault(f"UNG at segment {ung.index} opens a functional group in an interchange "
                       f"that already holds {self.ungrouped} message(s) outside any group",
                       ung, "30")
        if not ung.get(4):
            self.fault(f"UNG at segment {ung.index} has no functional group reference (0048)",
                       ung, "13", element="UNG/0048", element_pos=5)
        self.group = ung
        self.groups += 1
        self.group_messages = 0
        self.group_packages = 0

    def close_group(self, une: Segment) -> None:
        ung = self.group
        if ung is None:
            self.fault(f"UNE at segment {une.index} closes no functional group (no UNG is open)",
                       une, "33")
            return
        ref = ung.get(4)
        declared = une.get(0)
        counted = [self.group_messages, self.group_messages + self.group_packages]
        count, problem, code = _count(declared, _COUNT_DIGITS["UNE/0060"])
        if count is None:
            self.fault(f"UNE number of messages {_shown(declared)} {problem}", une,
                       code, element="UNE/0060", element_pos=1)
        elif count not in counted:
            self.fault(f"UNE number of messages is {count} but functional group "
                       f"{ref!r} has {self.group_messages}", une, "29", element="UNE/0060",
                       element_pos=1)
        if une.get(1) != ref:
            self.fault(f"UNE functional group reference {une.get(1)!r} does not match the UNG "
                       f"reference {ref!r} (UNG at segment {ung.index})", une, "28",
                       element="UNE/0048", element_pos=2)
        self.group = None

    # -- packages (syntax 4) ---------------------------------------------------------------

    def skip_package(self, uno: Segment) -> None:
        """Frame a UNO object UNP package by its octet count and skip the object.

        The object follows the UNO's terminator (after S022 0814 more segments, if given)
        and holds UNO S022 0810 octets of anything, separators included; UNP follows at
        once (ISO 9735-8). The tokenizer split the object like text, so the segments it
        made there are skipped, and UNP is re-read from the text.

        In a streamed file the text is a window (offsets are the file's, less the window's
        ``base``): a package is read when its UNP is in the same window as its UNO, and
        refused otherwise (code 13), the window being far larger than any real package.
        """
        text, seps, base = self.source.text, self.separators, self.source.base
        ref, length, before = uno.get(0), uno.get(3, 0), uno.get(3, 1)
        start = _segment_end(text, uno.offset - base, seps)
        skipped, problem, code = (_count(before, _COUNT_DIGITS["UNO/S022/0814"]) if before
                                  else (0, "", ""))
        if skipped is None:
            self.fault(f"UNO number of segments before object (S022 0814) {_shown(before)} "
                       f"{problem}", uno, code,
                       element="UNO/S022/0814", element_pos=4, component_pos=2)
            skipped = 0
        # Bounded by the text: past its end there is no segment to skip.
        while skipped and start < len(text):
            start = _segment_end(text, start, seps)
            skipped -= 1
        opener = "UNP" + seps.element
        octets, problem, code = _count(length, _COUNT_DIGITS["UNO/S022/0810"])
        end = start + octets if octets is not None else -1
        if octets is None:
            self.fault(f"UNO length of object (S022 0810) {_shown(length)} {problem}", uno,
                       code,
                       element="UNO/S022/0810", element_pos=4, component_pos=1)
        if end < 0 or end > len(text) or not text.startswith(opener, end):
            found = text.find(opener, start)
            if found == -1:
                if self.windowed:
                    raise self.fail(f"package {ref!r} (UNO at segment {uno.index}) has no UNP "
                                    "within the streaming window: a syntax 4 package is read "
                                    "only when it fits in one window", uno, "13", element="UNP")
                raise self.fail(f"package {ref!r} (UNO at segment {uno.index}) has no UNP: the "
                                "file ends inside its object", uno, "13", element="UNP")
            if octets is not None and _octets(text[start:found]) != octets:
                self.fault(f"UNO says the object of package {ref!r} has {octets} octets "
                           f"but its UNP follows after {_octets(text[start:found])}", uno, "29",
                           element="UNO/S022/0810", element_pos=4, component_pos=1)
            end = found
        stop = _segment_end(text, end, seps)
        body = text[end:stop].rstrip(seps.terminator)
        unp = Segment("UNP", [e.split(seps.component) for e in body.split(seps.element)[1:]],
                      self.index_at(base + end, uno), base + end)
        if unp.get(0) != length:
            self.fault(f"UNP length of object {_shown(unp.get(0))} does not match the UNO's "
                       f"{_shown(length)}", unp, "29", element="UNP/0810", element_pos=1)
        if unp.get(1) != ref:
            self.fault(f"UNP package reference {unp.get(1)!r} does not match the UNO reference "
                       f"{ref!r}", unp, "28", element="UNP/0800", element_pos=2)
        self.skip_until = base + stop
        self.packages += 1
        self.group_packages += self.group is not None
        interchange = self.interchange
        assert interchange is not None
        interchange.warnings.append(
            f"package {_shown(ref)} (UNO at segment {uno.index}, object of {_shown(length)} "
            "octets) was not "
            "read: edigw maps messages only")

    def index_at(self, offset: int, fallback: Segment) -> int:
        """Index of the tokenized segment holding text ``offset`` (for a re-read UNP)."""
        segments = self.chunk.segments if self.chunk is not None else []
        found = bisect.bisect_right(segments, offset, key=lambda s: s.offset) - 1
        return segments[found].index if found >= 0 else fallback.index + 1

    # -- messages --------------------------------------------------------------------------

    def open_message(self, unh: Segment, decimal: str) -> None:
        if self.interchange is None:
            if self.interchanges or self.unb is not None:
                raise self.fail(f"UNH at segment {unh.index} is outside an interchange (after "
                                "UNZ, before any UNB)", unh, "33")
            # A bare message file: the channel identifies the partner (sender None).
            self.interchange = _bare_interchange(decimal, self.warnings)
            self.reset_interchange()
        if self.group is not None:
            self.group_messages += 1
        else:
            if self.groups and not self.ungrouped:
                self.fault(f"UNH at segment {unh.index} is outside any functional group in an "
                           "interchange that uses groups", unh, "30")
            self.ungrouped += 1
        self.message = [unh]
        self.message_error = self.check_unh(unh)

    def check_unh(self, unh: Segment) -> EdifactSyntaxError | None:
        """The first error of the UNH itself: a mandatory element missing, a repeated ref."""
        ref = unh.get(0)
        if not ref:
            return self.fail(f"UNH at segment {unh.index} has no message reference (0062)", unh,
                             "13", element="UNH/0062", element_pos=1)
        first = self.refs.setdefault(ref, unh.index)
        for comp, number, name in _MESSAGE_IDENTIFIER:
            if not unh.get(1, comp):
                return self.fail(f"UNH at segment {unh.index} has no {name} (S009 {number})",
                                 unh, "13", element=f"UNH/S009/{number}", message_ref=ref,
                                 element_pos=2, component_pos=comp + 1)
        if first != unh.index:
            return self.fail(f"message reference {ref!r} is used twice in the interchange: "
                             f"the UNH at segment {first} has it already", unh, "26",
                             element="UNH/0062", message_ref=ref, element_pos=1)
        return None

    def close_message(self, unt: Segment) -> None:
        segments = self.message
        assert segments is not None
        unh = segments[0]
        ref = unh.get(0)
        error = self.message_error
        if error is None:
            declared = unt.get(0)
            count, problem, code = _count(declared, _COUNT_DIGITS["UNT/0074"])
            if count is None:
                error = self.fail(f"UNT segment count {_shown(declared)} {problem}", unt,
                                  code,
                                  element="UNT/0074", message_ref=ref, element_pos=1)
            elif count != len(segments) + self.released:
                error = self.fail(f"UNT segment count is {count} but the message has "
                                  f"{len(segments) + self.released} segments (UNH to UNT)",
                                  unt, "29",
                                  element="UNT/0074", message_ref=ref, element_pos=1)
            elif not unt.get(1):
                error = self.fail("UNT has no message reference (0062)", unt, "13",
                                  element="UNT/0062", message_ref=ref, element_pos=2)
            elif unt.get(1) != ref:
                error = self.fail(f"UNT message reference {unt.get(1)!r} does not match the UNH "
                                  f"reference {ref!r}", unt, "28", element="UNT/0062",
                                  message_ref=ref, element_pos=2)
        self.add_message(segments, error)

    def close_truncated(self, follower: Segment) -> None:
        """The open message met a segment it cannot hold: its UNT is missing."""
        segments = self.message
        assert segments is not None
        unh = segments[0]
        error = self.fail(f"message {unh.get(0)!r} (UNH at segment {unh.index}) has no UNT: "
                          f"the {follower.tag} at segment {follower.index} follows its last "
                          f"segment ({segments[-1].tag}, segment {segments[-1].index})", unh,
                          "13", element="UNT", message_ref=unh.get(0) or None)
        self.add_message(segments, error)

    def add_message(self, segments: list[Segment], error: EdifactSyntaxError | None) -> None:
        interchange = self.interchange
        assert interchange is not None
        unh = segments[0]
        message = Message(
            ref=unh.get(0), type=unh.get(1, 0), version=unh.get(1, 1), release=unh.get(1, 2),
            agency=unh.get(1, 3), association=unh.get(1, 4) or None, segments=segments,
            index=unh.index, source=self.source, error=error,
            group_ref=(self.group.get(4) or None) if self.group is not None else None)
        self.message_count += 1
        self.message = None
        self.message_error = None
        if self.on_message is not None:
            self.on_message(interchange, message)
        else:
            interchange.messages.append(message)
        self.released = 0

    def finish(self) -> None:
        last = self.last
        after = f"the file ends after segment {last.index} ({last.tag})" if last else "it is empty"
        if self.message is not None:
            unh = self.message[0]
            raise self.fail(f"message {unh.get(0)!r} (UNH at segment {unh.index}) has no UNT: "
                            f"{after}; the message is truncated", unh, "13",
                            message_ref=unh.get(0))
        if self.interchange is not None:
            if self.unb is not None:
                raise self.fail(f"interchange {self.interchange.control_ref!r} (UNB at segment "
                                f"{self.unb.index}) has no UNZ: {after}; the interchange is "
                                "truncated", self.unb, "13")
            if self.group is not None:
                self.fault(f"functional group {self.group.get(4)!r} (UNG at segment "
                           f"{self.group.index}) has no UNE: {after}", self.group, "13",
                           element="UNE")
            interchange = self.interchange
            self.interchanges.append(interchange)
            self.interchange = None
            if self.on_interchange is not None:
                self.on_interchange(interchange)
        if not self.interchanges:
            raise EdifactSyntaxError("no EDIFACT interchange or message in the file (only a UNA)",
                                     code="13")


def _count(value: str, digits: int) -> tuple[int | None, str, str]:
    """A count or length read from the payload, or None with why and the 0085 code.

    Checked before ``int()``: only ASCII digits, and at most ``digits`` significant ones
    (the data element's length in ISO 9735), so that a count of 5,000 digits is a syntax
    error of its segment, not a ValueError of Python's integer-string limit, and no loop or
    allocation is ever sized by a number the file made up.
    """
    if not (value.isascii() and value.isdigit()):
        return None, "is not a number", "12"
    if len(value) > digits and len(value.lstrip("0")) > digits:
        return None, f"has more than {digits} digits ({len(value)})", "39"
    return int(value), "", ""


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut when it is long (a count of 5,000 digits)."""
    return repr(value) if len(value) <= 24 else f"{value[:20]!r}… ({len(value)} characters)"


def _segment_end(text: str, pos: int, seps: Separators) -> int:
    """Offset just after the terminator of the segment starting at ``pos`` (released ones skipped)."""
    term, release = seps.terminator, seps.release
    at = pos
    while True:
        found = text.find(term, at)
        if found == -1:
            return len(text)
        run = found
        while release and run > pos and text[run - 1] == release:
            run -= 1
        if (found - run) % 2 == 0:
            return found + 1
        at = found + 1


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _bare_interchange(decimal: str, warnings: list[str]) -> Interchange:
    return Interchange(
        syntax_id=None, syntax_version=None, sender_id=None, sender_qualifier=None,
        recipient_id=None, recipient_qualifier=None, prepared_date=None, prepared_time=None,
        control_ref=None, test_indicator=None, decimal_mark=decimal,
        warnings=[*warnings, "no UNB interchange header: the partner is identified by channel"])
