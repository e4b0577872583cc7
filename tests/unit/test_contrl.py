"""CONTRL generation: every CONTRL is read back by pydifact and by edigw's own reader."""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import pytest
from pydifact.parser import Parser
from pydifact.segmentcollection import Interchange as PydifactInterchange

from gateway.core.errors import EdifactSyntaxError, MappingError, Position
from gateway.formats.edifact import Interchange, read_interchanges
from gateway.formats.edifact.contrl import (
    GroupReport,
    MessageReport,
    build_contrl,
    contrl_syntax_version,
    reports_from_envelope,
    segment_number,
)
from gateway.formats.mapping import MappingSet, map_message

PREPARED = datetime(2024, 3, 5, 14, 7)
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _order(ref: str, *, date: str = "20240305") -> str:
    return (f"UNH+{ref}+ORDERS:D:96A:UN:EAN008'"
            "BGM+220+PO-" + ref + "+9'"
            f"DTM+137:{date}:102'"
            "NAD+BY+5401234000012::9'"
            "NAD+SU+4001234000015::9'"
            "LIN+1++4020000012342:EN'"
            "QTY+21:10'"
            "UNS+S'"
            f"UNT+9+{ref}'")


def _interchange(*refs: str, syntax: str = "UNOC:3", sender: str = "5401234000012:14",
                 una: str = "UNA:+.? '", extra: str = "", bad: str | None = None) -> Interchange:
    """A synthetic interchange of ORDERS messages; ``bad`` gets an invalid date."""
    messages = "".join(_order(r, date="2024XX05" if r == bad else "20240305") for r in refs)
    date = "20240305" if syntax.endswith(":4") else "240305"
    text = (f"{una}UNB+{syntax}+{sender}+4001234000015:14+{date}:1012+ICR42{extra}'"
            f"{messages}UNZ+{len(refs)}+ICR42'")
    return read_interchanges(text.encode("utf-8"))[0]


def _pydifact(data: bytes, encoding: str = "latin-1") -> list[tuple[str, list]]:
    """(tag, elements) of every segment after the UNA, as pydifact reads them.

    The text goes through pydifact's Interchange too, which checks the UNB; its segment
    list leaves UNB and UNZ out, so the segments themselves come from its parser.
    """
    text = data.decode(encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydifact has no service directory for syntax 4
        parsed = PydifactInterchange.from_str(text)
        segments = [(s.tag, s.elements) for s in Parser().parse(text)]
    assert segments[0][0] == "UNA"
    assert (parsed.sender, parsed.recipient, parsed.control_reference) == (
        segments[1][1][1], segments[1][1][2], segments[1][1][4])
    return segments[1:]


def _edigw(data: bytes) -> Interchange:
    """edigw's reader on the CONTRL: its UNT and UNZ counts are checked there."""
    interchanges = read_interchanges(data)
    assert len(interchanges) == 1 and len(interchanges[0].messages) == 1
    assert interchanges[0].messages[0].type == "CONTRL"
    return interchanges[0]


def _body(data: bytes, encoding: str = "latin-1") -> list[tuple[str, list]]:
    """The CONTRL's segments between UNH and UNT."""
    segments = _pydifact(data, encoding)
    tags = [tag for tag, _ in segments]
    return segments[tags.index("UNH") + 1:tags.index("UNT")]


def test_all_accepted_in_syntax_3_swaps_parties_and_copies_the_subject_in_uci():
    """Syntax 3: CONTRL:D:3:UN, UCI 7 with the subject's own 0020/S002/S003, one UCM 7 each."""
    interchange = _interchange("1", "2")
    data = build_contrl(interchange, reports_from_envelope(interchange), control_ref="C1",
                        prepared=PREPARED)
    assert data.startswith(b"UNA:+.? 'UNB+UNOC:3+4001234000015:14+5401234000012:14+"
                           b"240305:1407+C1'UNH+1+CONTRL:D:3:UN'")
    segments = _pydifact(data)
    assert segments[1] == ("UNH", ["1", ["CONTRL", "D", "3", "UN"]])
    assert _body(data) == [
        ("UCI", ["ICR42", ["5401234000012", "14"], ["4001234000015", "14"], "7"]),
        ("UCM", ["1", ["ORDERS", "D", "96A", "UN", "EAN008"], "7"]),
        ("UCM", ["2", ["ORDERS", "D", "96A", "UN", "EAN008"], "7"]),
    ]
    assert segments[-2] == ("UNT", ["5", "1"])
    answer = _edigw(data)
    assert (answer.sender_id, answer.recipient_id, answer.control_ref) == (
        "4001234000015", "5401234000012", "C1")
    assert answer.syntax_id == "UNOC" and answer.syntax_version == "3"


def test_all_accepted_in_syntax_4_uses_contrl_4_1_and_a_four_digit_year():
    """Syntax 4: UNA with the repetition separator, CONTRL:4:1:UN, CCYYMMDD in UNB."""
    interchange = _interchange("A1", syntax="UNOC:4", una="UNA:+.?*'")
    data = build_contrl(interchange, reports_from_envelope(interchange), control_ref="C2",
                        prepared=PREPARED, message_ref="M7")
    assert data.startswith(b"UNA:+.?*'UNB+UNOC:4+")
    segments = _pydifact(data)
    assert segments[0][1][3] == ["20240305", "1407"]
    assert segments[1] == ("UNH", ["M7", ["CONTRL", "4", "1", "UN"]])
    assert [tag for tag, _ in segments] == ["UNB", "UNH", "UCI", "UCM", "UNT", "UNZ"]
    assert segments[-2:] == [("UNT", ["4", "M7"]), ("UNZ", ["1", "C2"])]
    assert _edigw(data).syntax_version == "4"


@pytest.mark.parametrize(("received", "given", "answer"), [
    ("1", None, 3), ("2", None, 3), ("3", None, 3), ("4", None, 4), ("4", 3, 3), ("3", 4, 4),
])
def test_syntax_version_follows_the_subject_unless_given(received, given, answer):
    """Syntax 1 and 2 are answered in 3, 3 and 4 in kind, unless the caller says otherwise."""
    interchange = _interchange("1", syntax=f"UNOA:{received}")
    assert contrl_syntax_version(interchange, given) == answer
    data = build_contrl(interchange, [], control_ref="C", prepared=PREPARED,
                        syntax_version=given)
    assert _pydifact(data)[0][1][0] == ["UNOA", str(answer)]


def test_syntax_version_other_than_3_or_4_is_refused():
    """A CONTRL exists in syntax 3 and 4 only."""
    with pytest.raises(ValueError, match="syntax 3 or 4"):
        build_contrl(_interchange("1"), [], control_ref="C", prepared=PREPARED,
                     syntax_version=2)


def test_one_rejected_message_of_three_points_at_its_segment_and_element():
    """Message 2 fails at DTM C507/2380: UCM 4, UCS 3 (UNH=1), UCD 12 with S011 2:2."""
    interchange = _interchange("1", "2", "3")
    second = interchange.messages[1]
    dtm = second.segments[2]
    assert dtm.tag == "DTM"
    error = EdifactSyntaxError("bad date", code="12", position=Position(
        segment=dtm.index, tag="DTM", element_pos=1, component_pos=2, message_ref="2"))
    reports = [MessageReport(m, error if m is second else None) for m in interchange.messages]
    data = build_contrl(interchange, reports, control_ref="C3", prepared=PREPARED)
    ident = ["ORDERS", "D", "96A", "UN", "EAN008"]
    assert _body(data)[1:] == [
        ("UCM", ["1", ident, "7"]),
        ("UCM", ["2", ident, "4"]),
        ("UCS", ["3"]),
        # 0098 counts the tag as 1: C507 is the DTM's first data element, so 2.
        ("UCD", ["12", ["2", "2"]]),
        ("UCM", ["3", ident, "7"]),
    ]
    assert _pydifact(data)[-2] == ("UNT", ["8", "1"])
    _edigw(data)


def test_only_rejected_messages_when_accepted_ones_are_not_reported():
    """report_accepted=False: UCI 7 acknowledges the rest, one UCM for the rejected one."""
    interchange = _interchange("1", "2", "3")
    error = MappingError("order has no buyer", position=Position(
        segment=interchange.messages[2].segments[3].index, tag="NAD"))
    reports = [MessageReport(m, error if m.ref == "3" else None) for m in interchange.messages]
    data = build_contrl(interchange, reports, control_ref="C4", prepared=PREPARED,
                        report_accepted=False)
    # No element named: the code goes on the UCS; a mapping error has none, so 18.
    assert _body(data) == [
        ("UCI", ["ICR42", ["5401234000012", "14"], ["4001234000015", "14"], "7"]),
        ("UCM", ["3", ["ORDERS", "D", "96A", "UN", "EAN008"], "4"]),
        ("UCS", ["4", "18"]),
    ]
    _edigw(data)


def test_error_in_unt_is_reported_in_the_ucm_itself():
    """A UNT count error (29) names UNT and 0074 in the UCM, with no UCS."""
    interchange = _interchange("1")
    message = interchange.messages[0]
    unt = message.segments[-1]
    message.error = EdifactSyntaxError("UNT count", code="29", position=Position(
        segment=unt.index, tag="UNT", element_pos=1, message_ref="1"))
    data = build_contrl(interchange, reports_from_envelope(interchange), control_ref="C5",
                        prepared=PREPARED)
    assert _body(data)[1:] == [
        ("UCM", ["1", ["ORDERS", "D", "96A", "UN", "EAN008"], "4", "29", "UNT", "2"]),
    ]
    _edigw(data)


def test_error_without_position_rejects_the_message_with_its_code():
    """No segment to point at: the UCM carries the code."""
    interchange = _interchange("1")
    error = EdifactSyntaxError("duplicate message reference", code="26")
    data = build_contrl(interchange, [MessageReport(interchange.messages[0], error)],
                        control_ref="C6", prepared=PREPARED)
    assert _body(data)[1] == ("UCM", ["1", ["ORDERS", "D", "96A", "UN", "EAN008"], "4", "26"])


def test_interchange_rejected_at_uci_level_names_the_unz_control_count():
    """UCI 4 with 29, UNZ and S011 2 (0036); accepted messages are not listed under it."""
    interchange = _interchange("1", "2")
    interchange.error = EdifactSyntaxError("UNZ count", code="29", position=Position(
        segment=21, tag="UNZ", element_pos=1))
    own = EdifactSyntaxError("UNT reference", code="28", position=Position(
        segment=interchange.messages[1].segments[-1].index, tag="UNT", element_pos=2))
    reports = [MessageReport(interchange.messages[0]),
               MessageReport(interchange.messages[1], own)]
    data = build_contrl(interchange, reports, control_ref="C7", prepared=PREPARED)
    assert _body(data) == [
        ("UCI", ["ICR42", ["5401234000012", "14"], ["4001234000015", "14"], "4", "29",
                 "UNZ", "2"]),
        ("UCM", ["2", ["ORDERS", "D", "96A", "UN", "EAN008"], "4", "28", "UNT", "3"]),
    ]
    _edigw(data)


def test_interchange_error_outside_its_service_segments_gives_only_the_code():
    """An interchange error in a segment other than UNA/UNB/UNZ names no segment in UCI."""
    interchange = _interchange("1")
    interchange.error = EdifactSyntaxError("segment outside a message", code="33",
                                           position=Position(segment=12, tag="FTX"))
    data = build_contrl(interchange, [], control_ref="C8", prepared=PREPARED)
    assert _body(data) == [
        ("UCI", ["ICR42", ["5401234000012", "14"], ["4001234000015", "14"], "4", "33"]),
    ]


def _grouped(syntax: str = "UNOC:3") -> Interchange:
    # The envelope reader counts UNG/UNE but does not yet set Message.group_ref; set here.
    interchange = _interchange("1", "2", "3", syntax=syntax)
    for message, group in zip(interchange.messages, ["G1", "G1", "G2"], strict=True):
        message.group_ref = group
    return interchange


def test_groups_in_syntax_3_get_a_ucf_each_with_mandatory_application_ids():
    """SG3 replaces SG1: UCF 7 per group (UNB parties copied when UNG's are unknown)."""
    interchange = _grouped()
    error = EdifactSyntaxError("bad date", code="12", position=Position(
        segment=interchange.messages[2].segments[2].index, tag="DTM", element_pos=1,
        component_pos=2))
    reports = [MessageReport(m, error if m.ref == "3" else None) for m in interchange.messages]
    groups = [GroupReport("G2", sender_id="SALES", recipient_id="ORDERDESK",
                          recipient_qualifier="ZZ")]
    data = build_contrl(interchange, reports, control_ref="C9", prepared=PREPARED,
                        groups=groups)
    ident = ["ORDERS", "D", "96A", "UN", "EAN008"]
    assert _body(data)[1:] == [
        ("UCF", ["G2", "SALES", ["ORDERDESK", "ZZ"], "7"]),
        ("UCM", ["3", ident, "4"]),
        ("UCS", ["3"]),
        ("UCD", ["12", ["2", "2"]]),
        ("UCF", ["G1", ["5401234000012", "14"], ["4001234000015", "14"], "7"]),
        ("UCM", ["1", ident, "7"]),
        ("UCM", ["2", ident, "7"]),
    ]
    _edigw(data)


def test_groups_in_syntax_4_leave_out_unknown_application_ids_and_quiet_groups():
    """Syntax 4 S006/S007 are conditional; report_accepted=False drops all-good groups."""
    interchange = _grouped("UNOC:4")
    error = MappingError("no buyer")
    reports = [MessageReport(m, error if m.ref == "3" else None) for m in interchange.messages]
    data = build_contrl(interchange, reports, control_ref="C10", prepared=PREPARED,
                        report_accepted=False)
    assert _body(data)[1:] == [
        ("UCF", ["G2", "", "", "7"]),
        ("UCM", ["3", ["ORDERS", "D", "96A", "UN", "EAN008"], "4", "18"]),
    ]
    _edigw(data)


def test_rejected_group_names_its_une_and_rejects_its_messages():
    """A group error: UCF 4 with the code, UNE and S011; its accepted messages are not listed."""
    interchange = _grouped()
    groups = [GroupReport("G1", error=EdifactSyntaxError(
        "UNE count", code="29", position=Position(segment=30, tag="UNE", element_pos=1)))]
    data = build_contrl(interchange, reports_from_envelope(interchange), control_ref="C11",
                        prepared=PREPARED, groups=groups)
    body = _body(data)
    assert body[1] == ("UCF", ["G1", ["5401234000012", "14"], ["4001234000015", "14"], "4",
                               "29", "UNE", "2"])
    assert [tag for tag, _ in body] == ["UCI", "UCF", "UCF", "UCM"]
    assert body[2][1][-1] == "7" and body[3][1][0] == "3"


def test_service_characters_in_copied_values_are_released():
    """A sender id or reference holding ? ' + : (and * in syntax 4) reads back unchanged."""
    for syntax, una in (("UNOC:3", "UNA:+.? '"), ("UNOC:4", "UNA:+.?*'")):
        interchange = _interchange("1", syntax=syntax, una=una, sender="AB?+C?:D?'E??F*G:ZZ")
        assert interchange.sender_id == "AB+C:D'E?F*G"
        interchange.messages[0].ref = "R?'1"  # as a partner's released reference reads
        data = build_contrl(interchange, reports_from_envelope(interchange),
                            control_ref="C+:'?*", prepared=PREPARED)
        segments = _pydifact(data)
        assert segments[0][1][2] == ["AB+C:D'E?F*G", "ZZ"]
        assert segments[0][1][4] == "C+:'?*"
        assert _body(data)[0][1][1] == ["AB+C:D'E?F*G", "ZZ"]
        assert _body(data)[1][1][0] == "R?'1"
        answer = _edigw(data)
        assert answer.recipient_id == "AB+C:D'E?F*G" and answer.control_ref == "C+:'?*"
        if syntax.endswith(":4"):
            assert b"F?*G" in data


def test_ucs_points_at_the_faulty_segment_of_a_real_mapping_error():
    """The position of a real MappingError, turned into 0096, names the DTM with the bad date."""
    interchange = _interchange("1", "2", "3", bad="2")
    message = interchange.messages[1]
    mapping = MappingSet.load(MAPPINGS).find(message)
    with pytest.raises(MappingError) as info:
        map_message(mapping, interchange, message, partner_id="acme")
    error = info.value
    number = segment_number(message, error.position)
    assert number is not None
    faulty = message.segments[number - 1]
    assert faulty.tag == "DTM" and faulty.get(0, 1) == "2024XX05"
    reports = [MessageReport(m, error if m is message else None) for m in interchange.messages]
    data = build_contrl(interchange, reports, control_ref="C12", prepared=PREPARED,
                        report_accepted=False)
    ucs = [elements for tag, elements in _body(data) if tag == "UCS"]
    assert ucs and ucs[0][0] == str(number) == "3"


def test_ucs_points_at_a_segment_the_directory_does_not_have():
    """A real code-15 error (segment not in D96A) is reported at that segment's position."""
    text = ("UNB+UNOC:3+S:14+R:14+240305:1012+ICR1'"
            "UNH+1+ORDERS:D:96A:UN:EAN008'BGM+220+PO+9'ZZZ+1'DTM+137:20240305:102'UNT+5+1'"
            "UNZ+1+ICR1'")
    interchange = read_interchanges(text.encode())[0]
    message = interchange.messages[0]
    with pytest.raises(EdifactSyntaxError) as info:
        map_message(MappingSet.load(MAPPINGS).find(message), interchange, message,
                    partner_id="acme")
    data = build_contrl(interchange, [MessageReport(message, info.value)], control_ref="C13",
                        prepared=PREPARED)
    assert _body(data)[2] == ("UCS", ["3", "15"])
    assert message.segments[2].tag == "ZZZ"


def test_test_indicator_of_the_subject_is_kept():
    """A test interchange (UNB 0035 = 1) gets a test CONTRL."""
    interchange = _interchange("1", extra="++ORDERS++++1")
    assert interchange.test_indicator == "1"
    data = build_contrl(interchange, [], control_ref="C14", prepared=PREPARED)
    assert _pydifact(data)[0][1][5:] == ["", "", "", "", "", "1"]
    assert _edigw(data).test_indicator == "1"


def test_encoding_follows_the_declared_character_set_and_falls_back_to_utf8():
    """UNOC is written in Latin-1; a UNOA subject whose ids are not ASCII gets UTF-8."""
    latin = _interchange("1", sender="MÜLLER:ZZ")
    data = build_contrl(latin, [], control_ref="C15", prepared=PREPARED)
    assert "MÜLLER".encode("latin-1") in data
    assert _edigw(data).recipient_id == "MÜLLER"
    ascii_declared = _interchange("1", syntax="UNOA:3", sender="MÜLLER:ZZ")
    data = build_contrl(ascii_declared, [], control_ref="C16", prepared=PREPARED)
    assert "MÜLLER".encode() in data and b"UNOA:3" in data
    assert _pydifact(data, "utf-8")[0][1][2] == ["MÜLLER", "ZZ"]


def test_a_file_of_bare_messages_cannot_be_answered():
    """Without UNB there is no one to address and nothing to copy into UCI."""
    bare = read_interchanges(_order("1").encode())[0]
    with pytest.raises(ValueError, match="UNB"):
        build_contrl(bare, reports_from_envelope(bare), control_ref="C", prepared=PREPARED)


def test_association_code_is_added_to_the_contrl_identifier():
    """EANCOM partners may want CONTRL:D:3:UN:EAN002."""
    interchange = _interchange("1")
    data = build_contrl(interchange, [], control_ref="C17", prepared=PREPARED,
                        association="EAN002")
    assert _pydifact(data)[1] == ("UNH", ["1", ["CONTRL", "D", "3", "UN", "EAN002"]])
