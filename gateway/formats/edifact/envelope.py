"""Read interchanges: decode, tokenize, then check the UNB/UNH/UNT/UNZ envelope.

Errors carry the UN/EDIFACT syntax error code (0085) a CONTRL would report: 12 invalid value,
13 missing, 28 references do not match, 29 control count does not match, 33 invalid
occurrence outside message, package or group.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.core.errors import EdifactSyntaxError, Position
from gateway.formats.edifact.charset import decode
from gateway.formats.edifact.model import Interchange, Message, Segment, Source
from gateway.formats.edifact.tokenizer import tokenize

_TAG = re.compile(r"[A-Z][A-Z0-9]{2}")
_STARTS = ("UNA", "UNB", "UNH")
#: Tags that open or close a message or an interchange: never appended without a check.
_ENVELOPE = frozenset({"UNH", "UNT", "UNB", "UNZ"})


def read_interchanges(data: bytes, *, filename: str | None = None) -> list[Interchange]:
    """Every interchange in ``data``; a file of bare UNH..UNT messages gives one, sender None.

    Raises EdifactSyntaxError with a reason, a Position and a 0085 code when the envelope is
    wrong: no data, not EDIFACT, truncated, control counts or references that do not match.
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
    with _gc_paused():
        return _Reader(source, warnings).read()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file is read, then restore its state.

    Reading allocates a few container objects per segment (the segment, its element lists:
    some 400,000 for 2,000 orders) and no reference cycles. Left running, the collector
    fires every 700 allocations and traverses the young ones, and promotes them to older
    generations that it traverses again: about half the time of reading. Memory is not
    affected: reference counting still frees everything.

    When the pause ends, the objects made meanwhile would all be young, and the next
    allocation would traverse them all once more (a third of the reading time). So they
    are moved straight to the oldest generation instead, with ``gc.freeze()`` followed at
    once by ``gc.unfreeze()`` (which puts the frozen objects "back into the oldest
    generation"): nothing is left frozen, and a full collection still sees everything.
    This is skipped when something else keeps objects frozen (a pre-fork ``gc.freeze()``),
    so as not to undo it.

    The pause is counted so that concurrent readers in several threads restore the
    collector only when the last one is done, and only if it was enabled before.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


def _start_position(source: Source) -> Position:
    offset = len(source.text) - len(source.text.lstrip())
    line, column = source.line_column(offset)
    return Position(segment=1, line=line, column=column)


class _Reader:
    """Walks the segments once, keeping the open interchange and message."""

    def __init__(self, source: Source, warnings: list[str]) -> None:
        self.source = source
        self.warnings = warnings
        self.interchanges: list[Interchange] = []
        self.interchange: Interchange | None = None
        self.unb: Segment | None = None
        self.groups = 0
        self.message: list[Segment] | None = None
        self.last: Segment | None = None
        self.tags: set[str] = set()
        self.plain: set[str] = set()

    def fail(self, reason: str, segment: Segment | None, code: str, *,
             element: str | None = None, message_ref: str | None = None) -> EdifactSyntaxError:
        position = self.source.position(segment, element=element, message_ref=message_ref)
        return EdifactSyntaxError(reason, position=position, code=code)

    def read(self) -> list[Interchange]:
        # Checked tags that need nothing but appending inside a message (not UNH/UNT/UNB/UNZ).
        plain = self.plain
        step = self.step
        for chunk in tokenize(self.source.text):
            decimal = chunk.separators.decimal
            for segment in chunk.segments:
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
        self.finish()
        return self.interchanges

    def note_unterminated(self, segment: Segment) -> None:
        if segment.tag in ("UNZ", "UNT") and self.message is None:
            self.warnings.append(f"the last segment ({segment.tag}, segment {segment.index}) "
                                 "has no segment terminator")
            if self.interchange is not None:
                self.interchange.warnings.append(self.warnings[-1])

    def check_tag(self, segment: Segment) -> None:
        tag = segment.tag
        if tag in self.tags:
            return
        if not _TAG.fullmatch(tag):
            raise self.fail(f"segment {segment.index} has tag {tag[:20]!r}: a segment tag is "
                            "three upper-case letters or digits", segment, "12")
        self.tags.add(tag)
        if tag not in _ENVELOPE:
            self.plain.add(tag)

    def step(self, segment: Segment, decimal: str) -> None:
        self.check_tag(segment)
        tag = segment.tag
        if self.message is not None:
            if tag in ("UNH", "UNB", "UNZ"):
                unh = self.message[0]
                raise self.fail(
                    f"message {unh.get(0)!r} (UNH at segment {unh.index}) has no UNT before "
                    f"the {tag} at segment {segment.index}; the message is truncated",
                    unh, "13", message_ref=unh.get(0))
            self.message.append(segment)
            if tag == "UNT":
                self.close_message(segment)
            return
        if tag == "UNH":
            if self.interchange is None:
                if self.interchanges or self.unb is not None:
                    raise self.fail(f"UNH at segment {segment.index} is outside an "
                                    "interchange (after UNZ, before any UNB)", segment, "33")
                # A bare message file: the channel identifies the partner (sender None).
                self.interchange = _bare_interchange(decimal, self.warnings)
            self.message = [segment]
        elif tag == "UNB":
            if self.interchange is not None:
                what = (f"interchange {self.interchange.control_ref!r} has no UNZ"
                        if self.unb is not None else "messages without UNB precede it")
                raise self.fail(f"UNB at segment {segment.index} opens an interchange but "
                                f"{what}", segment, "13")
            self.open_interchange(segment, decimal)
        elif tag == "UNZ":
            if self.unb is None:
                raise self.fail(f"UNZ at segment {segment.index} without a UNB", segment, "33")
            self.close_interchange(segment)
        elif tag in ("UNG", "UNE") and self.unb is not None:
            self.groups += tag == "UNG"
        else:
            where = ("after the UNZ, outside any interchange" if self.interchange is None
                     else "between messages (outside UNH..UNT)")
            raise self.fail(f"segment {tag} at segment {segment.index} is {where}",
                            segment, "33")

    def open_interchange(self, unb: Segment, decimal: str) -> None:
        warnings = list(self.warnings)
        syntax_id = unb.get(0, 0)
        if not syntax_id:
            raise self.fail("UNB has no syntax identifier (S001 0001)", unb, "13",
                            element="UNB/S001/0001")
        sender = unb.get(1, 0)
        if not sender.strip():
            raise self.fail("UNB has no interchange sender (S002 0004)", unb, "13",
                            element="UNB/S002/0004")
        recipient = unb.get(2, 0)
        if not recipient.strip():
            raise self.fail("UNB has no interchange recipient (S003 0010)", unb, "13",
                            element="UNB/S003/0010")
        control_ref = unb.get(4, 0)
        if not control_ref:
            raise self.fail("UNB has no interchange control reference (0020)", unb, "13",
                            element="UNB/0020")
        for label, value in (("sender", sender), ("recipient", recipient)):
            if value != value.strip():
                warnings.append(f"UNB {label} {value!r} has surrounding spaces; they were removed")
        self.unb = unb
        self.groups = 0
        self.interchange = Interchange(
            syntax_id=syntax_id, syntax_version=unb.get(0, 1) or None,
            sender_id=sender.strip(), sender_qualifier=unb.get(1, 1) or None,
            recipient_id=recipient.strip(), recipient_qualifier=unb.get(2, 1) or None,
            prepared_date=unb.get(3, 0) or None, prepared_time=unb.get(3, 1) or None,
            control_ref=control_ref, test_indicator=unb.get(10, 0) or None,
            decimal_mark=decimal, warnings=warnings)

    def close_message(self, unt: Segment) -> None:
        segments = self.message
        assert segments is not None and self.interchange is not None
        unh = segments[0]
        ref = unh.get(0)
        if not ref:
            raise self.fail("UNH has no message reference (0062)", unh, "13", element="UNH/0062")
        if not unh.get(1, 0):
            raise self.fail("UNH has no message type (S009 0065)", unh, "13",
                            element="UNH/S009/0065", message_ref=ref)
        declared = unt.get(0)
        if not declared.isdigit():
            raise self.fail(f"UNT segment count {declared!r} is not a number", unt, "12",
                            element="UNT/0074", message_ref=ref)
        if int(declared) != len(segments):
            raise self.fail(f"UNT segment count is {int(declared)} but the message has "
                            f"{len(segments)} segments (UNH to UNT)", unt, "29",
                            element="UNT/0074", message_ref=ref)
        if unt.get(1) != ref:
            raise self.fail(f"UNT message reference {unt.get(1)!r} does not match the UNH "
                            f"reference {ref!r}", unt, "28", element="UNT/0062",
                            message_ref=ref)
        self.interchange.messages.append(Message(
            ref=ref, type=unh.get(1, 0), version=unh.get(1, 1), release=unh.get(1, 2),
            agency=unh.get(1, 3), association=unh.get(1, 4) or None, segments=segments,
            index=unh.index, source=self.source))
        self.message = None

    def close_interchange(self, unz: Segment) -> None:
        interchange = self.interchange
        assert interchange is not None
        declared = unz.get(0)
        counted = self.groups or len(interchange.messages)
        what = "functional groups" if self.groups else "messages"
        if not declared.isdigit():
            raise self.fail(f"UNZ control count {declared!r} is not a number", unz, "12",
                            element="UNZ/0036")
        if int(declared) != counted:
            raise self.fail(f"UNZ control count is {int(declared)} but the interchange has "
                            f"{counted} {what}", unz, "29", element="UNZ/0036")
        if unz.get(1) != interchange.control_ref:
            # Policy: accepted with a warning. Every message was checked against its own
            # UNT count and reference, so nothing is missing; a trailer reference that does
            # not echo UNB 0020 is a sender's slip (the German Wikipedia sample puts the
            # application reference 0026 there). A CONTRL would report it as code 28.
            where = self.source.position(unz, element="UNZ/0020")
            interchange.warnings.append(
                f"UNZ control reference {unz.get(1)!r} does not match the UNB reference "
                f"{interchange.control_ref!r} (0085 code 28) at {where}; accepted")
        self.interchanges.append(interchange)
        self.interchange = None
        self.unb = None

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
            self.interchanges.append(self.interchange)
            self.interchange = None
        if not self.interchanges:
            raise EdifactSyntaxError("no EDIFACT interchange or message in the file (only a UNA)",
                                     code="13")


def _bare_interchange(decimal: str, warnings: list[str]) -> Interchange:
    return Interchange(
        syntax_id=None, syntax_version=None, sender_id=None, sender_qualifier=None,
        recipient_id=None, recipient_qualifier=None, prepared_date=None, prepared_time=None,
        control_ref=None, test_indicator=None, decimal_mark=decimal,
        warnings=[*warnings, "no UNB interchange header: the partner is identified by channel"])
