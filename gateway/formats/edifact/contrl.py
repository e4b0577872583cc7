"""CONTRL: the syntax and service report that answers a partner's interchange (sans-IO).

Use::

    reports = [MessageReport(m, errors.get(m.ref)) for m in interchange.messages]
    data = build_contrl(interchange, reports, control_ref="C0001",
                        prepared=clock.now())
    # data: bytes of one CONTRL interchange, ready for the partner's outbound channel

What is written, and the standard behind it:

- The message identifier follows the syntax level of the answer. Syntax 3: ``CONTRL:D:3:UN``
  (UN/EDIFACT CONTRL D.3, Syntax Development Group 1997-03-17, note of UNH: "S009: 0065
  CONTRL, 0052 D, 0054 3, 0051 UN"); the older ``CONTRL:2:2:UN`` predates it. Syntax 4:
  ``CONTRL:4:1:UN`` (ISO 9735-4, syntax 4 release 1, same UNH note). EANCOM partners may
  want an association code (``EAN002``): pass ``association``.
- The structure is the same in both: UNH, UCI, then either SG1 (UCM, SG2 UCS-UCD) or, when
  the subject interchange has functional groups, SG3 (UCF, SG4 UCM, SG5 UCS-UCD), never
  both (dependency note D4(0030, 0080)); UNT.
- UCI copies the subject interchange's 0020, S002 and S003 as they were (not swapped:
  "identified by copying its Interchange sender, Interchange recipient, and Interchange
  control reference"); the CONTRL's own UNB swaps them.
- Action codes (0083): 7 "this level acknowledged and all lower levels acknowledged if not
  explicitly rejected" (syntax 3 says "next lower level"), 4 "this level and all lower
  levels rejected". 8 "interchange received" is for a receipt-only CONTRL, not written
  here. A message error rejects that message only (UCI 7, its UCM 4); an interchange error
  rejects the UCI (4), and then only messages with their own error are listed.
- An error in UNA/UNB/UNZ is named in the UCI (0085, service segment tag 0013/0135, S011),
  one in UNG/UNE in the UCF, one in UNH/UNT in the UCM; any other segment gets a UCS with
  0096, the segment's position in the message counting UNH as 1 ("the numbering starts
  with, and includes, the UNH segment as segment number 1"). When the position names an
  element, a UCD carries 0085 and S011, and the UCS carries no code (UCS 0085 "shall
  contain a value only if the error pertains to the segment").
- S011 0098 counts the segment tag as position 1 ("the segment tag has position number 1",
  S011 in the syntax 3 and 4 service directories), so it is ``Position.element_pos + 1``:
  ``Position`` counts the tag as 0. 0104 is ``Position.component_pos`` (counted from 1).
- An error without a 0085 code (a mapping error) is reported with 18 "unspecified error",
  so that a rejection always says something.

Service characters: a UNA is always written, with the standard characters (syntax 3
``UNA:+.? '``, syntax 4 ``UNA:+.?*'``, UNA5 being the repetition separator in syntax 4,
ISO 9735-1 clause 5). The UNA costs nine bytes and spares the partner's translator any
guessing; the partner's own separators are not mirrored (the reader does not keep them,
and every conformant reader honours a UNA). Values holding a service character are
released with ``?`` by pydifact's serializer (and ``*`` too in syntax 4).

Encoding: the syntax identifier (UNB 0001) of the subject interchange is kept, and the
text encoded as it declares (UNOA/UNOB ASCII, UNOC Latin-1 …). When a copied value does not
fit (a partner that declares UNOA and sends UTF-8, which the reader accepts), the CONTRL is
encoded as UTF-8, as the partner's own bytes were: never a replacement ``?``, which is the
release character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydifact.control.characters import Characters
from pydifact.segments import Segment as PydifactSegment
from pydifact.serializer import Serializer

from gateway.core.errors import PayloadError, Position
from gateway.formats.edifact.charset import SYNTAX_CODECS
from gateway.formats.edifact.model import Interchange, Message

#: 0083 action codes (UN/EDIFACT service code list 0083).
ACKNOWLEDGED = "7"
REJECTED = "4"
#: 0085 "unspecified error", for an error that carries no syntax error code.
UNSPECIFIED_ERROR = "18"

#: S009 of the CONTRL message, by syntax version of the answer.
_CONTRL_ID = {3: ["CONTRL", "D", "3", "UN"], 4: ["CONTRL", "4", "1", "UN"]}
#: Service segments each reporting level may name in its 0013/0135.
_UCI_TAGS = frozenset({"UNA", "UNB", "UNZ"})
_UCF_TAGS = frozenset({"UNG", "UNE"})
_UCM_TAGS = frozenset({"UNH", "UNT"})

Element = str | list[str] | None


@dataclass(frozen=True)
class MessageReport:
    """One message of the subject interchange and why it was rejected (None: accepted)."""

    message: Message
    error: PayloadError | None = None


@dataclass(frozen=True)
class GroupReport:
    """A functional group (UNG..UNE) of the subject interchange, for its UCF.

    The reader keeps only a message's group reference (``Message.group_ref``); pass these to
    copy the UNG's application sender and recipient (S006, S007) or to reject a group.
    Without one, syntax 3 (where S006 and S007 are mandatory) copies the interchange's
    sender and recipient, and syntax 4 (where they are conditional) leaves them out.
    """

    ref: str
    sender_id: str | None = None
    sender_qualifier: str | None = None
    recipient_id: str | None = None
    recipient_qualifier: str | None = None
    error: PayloadError | None = None


def reports_from_envelope(interchange: Interchange) -> list[MessageReport]:
    """One report per message, rejected where the envelope check set ``Message.error``."""
    return [MessageReport(m, m.error) for m in interchange.messages]


def contrl_syntax_version(interchange: Interchange, syntax_version: int | None = None) -> int:
    """The syntax version of the answer: 4 for 4 (and above), 3 for 3 and for 1, 2 or none.

    Syntax 1 and 2 have no CONTRL of their own; version 3 is what their partners read.
    """
    if syntax_version is not None:
        if syntax_version not in (3, 4):
            raise ValueError(f"a CONTRL is written in syntax 3 or 4, not {syntax_version}")
        return syntax_version
    level = interchange.syntax_level
    return 4 if level is not None and level >= 4 else 3


def build_contrl(interchange: Interchange, reports: Sequence[MessageReport], *,
                 control_ref: str, prepared: datetime, message_ref: str = "1",
                 report_accepted: bool = True, syntax_version: int | None = None,
                 groups: Sequence[GroupReport] = (), association: str | None = None) -> bytes:
    """The bytes of one CONTRL interchange answering ``interchange``.

    ``reports`` lists the messages to answer for, in order, each with its error or None
    (``reports_from_envelope`` gives them from the envelope check alone). With
    ``report_accepted`` False only rejected messages (and the groups holding them) get a
    UCM; the UCI's action 7 acknowledges the rest. ``control_ref`` is the CONTRL's own UNB
    0020, ``message_ref`` its UNH 0062, ``prepared`` its UNB date and time.

    Raises ValueError when ``interchange`` has no UNB (a file of bare messages: there is no
    sender, recipient or reference to answer) or ``syntax_version`` is not 3 or 4.
    """
    if not (interchange.control_ref and interchange.sender_id and interchange.recipient_id):
        raise ValueError("a CONTRL answers an interchange with a UNB (sender, recipient and "
                         "control reference); this one has none")
    if not control_ref or not message_ref:
        raise ValueError("a CONTRL needs its own control reference and message reference")
    version = contrl_syntax_version(interchange, syntax_version)
    body = [_uci(interchange)]
    rejected = interchange.error is not None
    wanted = [r for r in reports if r.error is not None or (report_accepted and not rejected)]
    grouped = [r for r in reports if r.message.group_ref is not None]
    if grouped or groups:
        body += _groups(interchange, reports, wanted, groups, version=version,
                        rejected=rejected, report_accepted=report_accepted)
    else:
        for report in wanted:
            body += _message(report)
    identifier = [*_CONTRL_ID[version], *([association] if association else [])]
    segments = [
        _segment("UNB", [interchange.syntax_id or "UNOC", str(version)],
                 _party(interchange.recipient_id, interchange.recipient_qualifier),
                 _party(interchange.sender_id, interchange.sender_qualifier),
                 _prepared(prepared, version), control_ref,
                 # 0035 test indicator (UNB element 11): a test interchange gets a test answer.
                 *([None] * 5 + ["1"] if interchange.test_indicator == "1" else [])),
        _segment("UNH", message_ref, identifier),
        *body,
        _segment("UNT", str(len(body) + 2), message_ref),
        _segment("UNZ", "1", control_ref),
    ]
    characters = _characters(version)
    text = Serializer(characters).serialize(segments, with_una_header=True)
    codec = SYNTAX_CODECS.get(interchange.syntax_id or "", "utf-8")
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _uci(interchange: Interchange) -> PydifactSegment:
    error = interchange.error
    # ``build_contrl`` has checked that the UNB names both parties.
    head = [interchange.control_ref,
            _party(interchange.sender_id or "", interchange.sender_qualifier),
            _party(interchange.recipient_id or "", interchange.recipient_qualifier)]
    if error is None:
        return _segment("UCI", *head, ACKNOWLEDGED)
    return _segment("UCI", *head, REJECTED, *_service_error(error, _UCI_TAGS))


def _groups(interchange: Interchange, reports: Sequence[MessageReport],
            wanted: Sequence[MessageReport], groups: Sequence[GroupReport], *, version: int,
            rejected: bool, report_accepted: bool) -> list[PydifactSegment]:
    """SG3: one UCF per group, in order of appearance, each followed by its UCMs."""
    known = {g.ref: g for g in groups}
    order = list(known)
    for report in reports:
        ref = report.message.group_ref
        if ref is not None and ref not in known:
            known[ref] = GroupReport(ref)
            order.append(ref)
    out: list[PydifactSegment] = []
    for ref in order:
        group = known[ref]
        members = [r for r in wanted if r.message.group_ref == ref]
        group_rejected = rejected or group.error is not None
        if not (members or report_accepted or group.error is not None):
            continue  # acknowledged by the UCI's action 7
        if group_rejected and not members and group.error is None:
            continue  # nothing of its own to say under a rejected interchange
        out.append(_ucf(interchange, group, version, rejected=group_rejected))
        for report in members:
            if group_rejected and report.error is None:
                continue
            out += _message(report)
    # Messages outside any group in an interchange that has groups break ISO 9735 (a UNB
    # holds either groups or messages); they are still reported, after the groups.
    for report in wanted:
        if report.message.group_ref is None and not (rejected and report.error is None):
            out += _message(report)
    return out


def _ucf(interchange: Interchange, group: GroupReport, version: int, *,
         rejected: bool) -> PydifactSegment:
    sender: Element = None
    recipient: Element = None
    if group.sender_id or group.recipient_id:
        sender = _party(group.sender_id or "", group.sender_qualifier)
        recipient = _party(group.recipient_id or "", group.recipient_qualifier)
    elif version == 3:
        # S006 and S007 are mandatory in syntax 3; the UNB's parties are the best copy known.
        sender = _party(interchange.sender_id or "", interchange.sender_qualifier)
        recipient = _party(interchange.recipient_id or "", interchange.recipient_qualifier)
    head = [group.ref, sender, recipient]
    if group.error is not None:
        return _segment("UCF", *head, REJECTED, *_service_error(group.error, _UCF_TAGS))
    return _segment("UCF", *head, REJECTED if rejected else ACKNOWLEDGED)


def _message(report: MessageReport) -> list[PydifactSegment]:
    """UCM, then a UCS (and a UCD) when the error is in a segment of the message body."""
    message, error = report.message, report.error
    head: list[Element] = [message.ref, [message.type, message.version, message.release,
                                         message.agency, message.association or ""]]
    if error is None:
        return [_segment("UCM", *head, ACKNOWLEDGED)]
    code = error.code or UNSPECIFIED_ERROR
    position = error.position
    number = segment_number(message, position)
    if number is None:
        return [_segment("UCM", *head, REJECTED, code)]
    tag = message.segments[number - 1].tag
    if tag in _UCM_TAGS:
        return [_segment("UCM", *head, REJECTED, code, tag, _s011(position))]
    ucm = _segment("UCM", *head, REJECTED)
    detail = _s011(position)
    if detail is None:
        return [ucm, _segment("UCS", str(number), code)]
    return [ucm, _segment("UCS", str(number)), _segment("UCD", code, detail)]


def segment_number(message: Message, position: Position | None) -> int | None:
    """UCS 0096: the position of the error's segment in ``message``, UNH being 1.

    None when the position names no segment of this message (no position, or a segment
    index outside UNH..UNT).
    """
    if position is None or position.segment is None:
        return None
    number = position.segment - message.index + 1
    return number if 1 <= number <= len(message.segments) else None


def _service_error(error: PayloadError, tags: frozenset[str]) -> list[Element]:
    """0085, then the service segment tag and S011 when the error is in one of ``tags``."""
    code = error.code or UNSPECIFIED_ERROR
    position = error.position
    if position is None or position.tag not in tags:
        return [code]
    return [code, position.tag, _s011(position)]


def _s011(position: Position | None) -> list[str] | None:
    """S011 0098:0104; 0098 counts the tag as 1 where ``Position.element_pos`` counts it as 0."""
    if position is None or position.element_pos is None:
        return None
    detail = [str(position.element_pos + 1)]
    if position.component_pos is not None:
        detail.append(str(position.component_pos))
    return detail


def _party(identification: str, qualifier: str | None) -> list[str]:
    return [identification, qualifier] if qualifier else [identification]


def _prepared(prepared: datetime, version: int) -> list[str]:
    """S004: YYMMDD in syntax 3, CCYYMMDD in syntax 4 (0017 is n6 / n8), and HHMM."""
    return [prepared.strftime("%Y%m%d" if version >= 4 else "%y%m%d"), prepared.strftime("%H%M")]


def _segment(tag: str, *elements: Element) -> PydifactSegment:
    """A pydifact segment without trailing empty elements (and None written as empty)."""
    values: list[str | list[str]] = [e if e is not None else "" for e in elements]
    while values and (values[-1] == "" or values[-1] == [] or
                      (isinstance(values[-1], list) and not any(values[-1]))):
        values.pop()
    return PydifactSegment(tag, *values)


class _Syntax4Characters(Characters):
    """Syntax 4 service characters: UNA5 is the repetition separator, released like the rest.

    pydifact releases the component and data element separators, the release character and
    the terminator only; in syntax 4 a ``*`` in a value must be released too.
    """

    @property
    def escaped_syntax_dic(self) -> dict[str, str]:
        released = dict(super().escaped_syntax_dic)
        released[self.reserved_character] = self.escape_character + self.reserved_character
        return released


def _characters(version: int) -> Characters:
    if version >= 4:
        return _Syntax4Characters(":", "+", ".", "?", "*", "'")  # type: ignore[no-untyped-call]
    return Characters(":", "+", ".", "?", " ", "'")  # type: ignore[no-untyped-call]
