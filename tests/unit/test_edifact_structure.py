"""Message validation against the UN/EDIFACT directories (structure.py), on synthetic messages.

Each message is written here, wrapped in UNB/UNH..UNT/UNZ with a correct UNT count, and read
with the gateway's reader; the directory tables are the generated ``_structure_data``.
"""

from __future__ import annotations

import random

import pytest

from gateway.formats.edifact import Message, read_interchanges
from gateway.formats.edifact._gen_structure import (
    parse_date_formats,
    parse_message,
    parse_segments,
)
from gateway.formats.edifact.structure import is_known, known_versions, validate_message

#: An EANCOM D96A order of 41 segments (with UNH and UNT): the benchmark message.
ORDER = [
    "BGM+220+PO12345+9", "DTM+137:20200101:102", "DTM+2:20200115:102",
    "NAD+BY+5412345000013::9", "NAD+SU+4012345000009::9", "NAD+DP+5412345000020::9",
    "CUX+2:EUR:9",
    *[seg for i in range(1, 6) for seg in (
        f"LIN+{i}++4000862141404:EN", f"PIA+1+ART{i}:SA", f"IMD+F++:::Article {i}",
        f"QTY+21:{i * 10}:PCE", f"MOA+203:{i * 12}.50", "PRI+AAA:1.25")],
    "UNS+S", "CNT+2:5",
]


def message(*body: str, ident: str = "ORDERS:D:96A:UN:EAN008", una: str = "",
            syntax: str = "UNOC:3") -> Message:
    """One message around ``body`` (segments without terminator), read by the gateway."""
    segments = [f"UNH+1+{ident}", *body]
    segments.append(f"UNT+{len(segments) + 1}+1")
    text = (una + f"UNB+{syntax}+SENDER+RECEIVER+200101:1200+42'\n"
            + "".join(s + "'\n" for s in segments) + "UNZ+1+42'\n")
    interchange = read_interchanges(text.encode("latin-1"))[0]
    (found,) = interchange.messages
    return found


def replaced(old: str, new: str | None) -> list[str]:
    """ORDER with the first segment equal to ``old`` replaced by ``new`` (or removed)."""
    body = list(ORDER)
    at = body.index(old)
    if new is None:
        del body[at]
    else:
        body[at] = new
    return body


def codes(errors: list) -> list[tuple[str, str]]:
    return [(e.code, e.position.tag) for e in errors]


# -- valid and unknown -------------------------------------------------------------------------

def test_valid_eancom_order_has_no_error():
    """The 41-segment EANCOM order is valid under UN D96A and the EANCOM rules."""
    order = message(*ORDER)
    assert len(order.segments) == 41
    assert is_known(order)
    assert validate_message(order) == []


def test_unknown_directory_or_type_is_not_checked():
    """An untabled directory or message type gives [] and is_known says it was not checked."""
    for ident in ("ORDERS:D:99Z:UN", "MSG1:S:93A:UN", "MEDRPT:1:901:UN"):
        unchecked = message("BGM+220+1+9", ident=ident)
        assert not is_known(unchecked)
        assert validate_message(unchecked) == []


def test_every_required_directory_and_message_type_is_tabled():
    """The generated data covers the corpus's directories and the trade messages edigw reads."""
    assert {"D93A", "D96A", "D96B", "D97A", "D97B", "D01B", "D03B", "D14B"} <= set(
        known_versions())
    for version in ("D96A", "D96B", "D97A", "D97B", "D01B", "D03B", "D14B"):
        for kind in ("ORDERS", "ORDRSP", "PRICAT", "INVOIC", "DESADV", "SLSRPT", "INVRPT",
                     "RECADV", "APERAK"):
            ident = f"{kind}:D:{version[1:]}:UN"
            assert is_known(message("BGM+1+1", ident=ident)), ident


# -- structure ---------------------------------------------------------------------------------

def test_missing_mandatory_segment_is_code_13_at_the_next_segment():
    """BGM missing: code 13, reported where DTM stands, with line, tag and message ref."""
    (error,) = validate_message(message(*replaced("BGM+220+PO12345+9", None)))
    assert error.code == "13"
    assert "mandatory segment BGM is missing" in error.reason
    position = error.position
    assert (position.tag, position.segment, position.line, position.message_ref) == (
        "DTM", 3, 3, "1")


def test_unknown_segment_is_code_15_and_the_rest_is_still_read():
    """XYZ is in no D96A directory: 15, and the lines after it are read as usual."""
    body = list(ORDER)
    body.insert(body.index("CUX+2:EUR:9"), "XYZ+INVALID+DATA")
    (error,) = validate_message(message(*body))
    assert (error.code, error.position.tag) == ("15", "XYZ")
    assert "unknown" in error.reason


def test_segment_out_of_place_is_code_15():
    """A second BGM after the lines has no place there (BGM comes once, after UNH)."""
    body = list(ORDER)
    body.insert(body.index("UNS+S"), "BGM+220+PO12346+9")
    errors = validate_message(message(*body))
    assert codes(errors) == [("15", "BGM")]
    assert "not allowed here, after segment PRI of segment group 28" in errors[0].reason


def test_segment_of_another_message_is_not_part_of_this_one():
    """A segment of the directory that ORDERS does not use at all: 15, 'not part of'."""
    errors = validate_message(message(*ORDER[:1], "BUS+A:B", *ORDER[1:]))
    assert codes(errors) == [("15", "BUS")]
    assert "not part of the message" in errors[0].reason


def test_too_many_segment_repetitions_is_code_35_once():
    """DTM may come 35 times after BGM: the 36th is reported, once for the whole run."""
    body = [ORDER[0], *["DTM+137:20200101:102"] * 38, *ORDER[3:]]
    errors = validate_message(message(*body))
    assert codes(errors) == [("35", "DTM")]
    assert errors[0].position.segment == 3 + 36  # after UNB, UNH and BGM
    assert "more than 35 times" in errors[0].reason


def test_too_many_group_repetitions_is_code_36_once():
    """Segment group 2 (NAD) may come 99 times in ORDERS D96A: the 100th is reported."""
    nads = [f"NAD+BY+{5412345000000 + i}::9" for i in range(101)]
    body = [*ORDER[:3], *nads, *ORDER[6:]]
    errors = validate_message(message(*body))
    assert codes(errors) == [("36", "NAD")]
    assert "segment group 2 (NAD) occurs more than 99 times" in errors[0].reason


def test_missing_mandatory_trigger_is_reported_and_the_group_still_checked():
    """SLSRPT lines without their LOC: the LOC group is missing (13); the lines are read as
    lines of that group, so a line without QTY still gets the EANCOM rule's error."""
    errors = validate_message(message(
        "BGM+73E+SLSRPT001+9", "DTM+137:20260115:102", "NAD+SU+9876543210987::9",
        "LIN+1++4006381333931:EN", "QTY+153:120:PCE", "LIN+2++4006381333948:EN",
        "MOA+203:239.92", ident="SLSRPT:D:96A:UN:EAN004"))
    assert [(e.code, e.position.tag, e.position.segment) for e in errors] == [
        ("13", "LIN", 6), ("13", "LIN", 8)]
    assert "segment group 5 (LOC) is missing" in errors[0].reason
    assert "has no QTY segment" in errors[1].reason


def test_a_missing_uns_is_not_jumped_over_by_a_detail_segment():
    """MOA after PRI in a line is out of place; it is not read as the summary's MOA (which
    would make every later line out of place behind a missing UNS)."""
    body = list(ORDER)
    body.insert(body.index("PRI+AAA:1.25") + 1, "MOA+66:12.50")
    errors = validate_message(message(*body))
    assert codes(errors) == [("15", "MOA")]


def test_missing_uns_before_the_trailer():
    """Without UNS the order still ends: UNS is reported missing at UNT."""
    errors = validate_message(message(*replaced("UNS+S", None)[:-1]))
    assert codes(errors) == [("13", "UNT")]
    assert "mandatory segment UNS is missing" in errors[0].reason


def test_errors_come_in_file_order():
    """Structure and content errors are merged by segment position."""
    body = replaced("BGM+220+PO12345+9", "BGM+220+PO12345+9+AB")
    body = [body[0], "XYZ+1", *body[1:]]
    body[body.index("QTY+21:10:PCE")] = "QTY+21:1O:PCE"
    errors = validate_message(message(*body))
    assert [e.position.segment for e in errors] == sorted(e.position.segment for e in errors)
    assert codes(errors) == [("15", "XYZ"), ("37", "QTY")]


# -- content -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("segment", "code", "element", "element_pos", "component_pos"), [
    ("DTM+:20200101:102", "13", "DTM/C507/2005", 1, 1),            # mandatory component
    ("DTM", "13", "DTM/C507", 1, None),                            # mandatory composite
    ("CUX+2:EUR:9:4:Y", "16", "CUX/C504", 1, 5),                   # too many components
    ("CUX+2:EURO:9", "39", "CUX/C504/6345", 1, 2),                 # an..3 too long
    ("CUX+2:EUR:9+++4+5+6", "16", None, 5, None),                  # too many elements
    ("CUX+2:EUR:9:12345", "39", "CUX/C504/6348", 1, 4),            # n..4: five digits
])
def test_segment_content_errors(segment, code, element, element_pos, component_pos):
    """Each content error carries its code, element name and CONTRL positions."""
    errors = validate_message(message(*replaced(
        "CUX+2:EUR:9" if segment.startswith("CUX") else "DTM+2:20200115:102", segment)))
    assert [(e.code, e.position.element, e.position.element_pos, e.position.component_pos)
            for e in errors] == [(code, element, element_pos, component_pos)]


def test_simple_element_given_components_is_code_16():
    """BGM 1004 is a simple element in D96A: a second component is too many."""
    (error,) = validate_message(message(*replaced("BGM+220+PO12345+9", "BGM+220+PO1:X+9")))
    assert (error.code, error.position.element, error.position.element_pos) == (
        "16", "BGM/1004", 2)


def test_empty_trailing_separators_are_tolerated():
    """Empty elements or components beyond the directory's are not an error."""
    body = replaced("CUX+2:EUR:9", "CUX+2:EUR:9:::+++++++")
    assert validate_message(message(*body)) == []


@pytest.mark.parametrize(("value", "mark", "code"), [
    ("12.50", ".", None), ("12,50", ",", None), ("-12.50", ".", None),
    ("12,50", ".", "19"), ("12.50", ",", "19"), (".5", ".", "38"), ("1O", ".", "37"),
    ("?+5", ".", "37"), ("1.2.3", ".", "37"), ("12.", ".", None),
])
def test_numbers_use_the_interchange_decimal_mark(value, mark, code):
    """MOA 5004 (n..18 in D96A): the declared decimal mark, a minus sign, 37/38/19."""
    body = [s.replace(".", mark) if s[:3] in ("MOA", "PRI") else s for s in ORDER]
    body.insert(body.index("UNS+S") + 1, f"MOA+86:{value}")  # the summary's total
    una = f"UNA:+{mark}? '" if mark != "." else ""
    found = validate_message(message(*body, una=una), decimal_mark=mark)
    assert [(e.code, e.position.tag) for e in found] == (
        [] if code is None else [(code, "MOA")])


def test_sign_and_decimal_mark_are_not_counted_in_the_length():
    """LIN 1222 is n..2: '-1.5' has two digits and fits; '123' does not (39)."""
    fits = replaced("LIN+1++4000862141404:EN", "LIN+1++4000862141404:EN++-1.5")
    assert validate_message(message(*fits)) == []
    long = replaced("LIN+1++4000862141404:EN", "LIN+1++4000862141404:EN++123")
    assert [e.code for e in validate_message(message(*long))] == ["39"]


def test_fixed_length_and_alphabetic_formats():
    """UNS 0081 is a1 (37 for a digit, 39 for two letters); DGS C235 8186 is an4 (40)."""
    assert [e.code for e in validate_message(message(*replaced("UNS+S", "UNS+1")))] == ["37"]
    assert [e.code for e in validate_message(message(*replaced("UNS+S", "UNS+SS")))] == ["39"]
    body = [*ORDER[:-2], "DGS+ADR++++++++:AB", *ORDER[-2:]]
    assert codes(validate_message(message(*body))) == [("15", "DGS"), ("40", "DGS")]


REPEATING = ["BGM+220+PO1+9", "DTM+137:20200101:102", "NAD+BY+5412345000013::9",
             "CTA+IC+:John", "COM+0123456:TE*john@example.com:EM", "UNS+S"]


def test_repeating_element_is_split_with_the_repetition_separator():
    """D01B COM C076 repeats (x3, syntax 4): with the separator each occurrence is checked;
    "" checks the element as one occurrence (too many components, 3155 too long)."""
    order = message(*REPEATING, ident="ORDERS:D:01B:UN:EAN010", syntax="UNOC:4")
    assert validate_message(order, repetition="*") == []
    assert {e.code for e in validate_message(order, repetition="")} == {"16", "39"}


@pytest.mark.parametrize(("una", "syntax", "valid"), [
    ("", "UNOC:4", True),             # syntax 4 without UNA: '*' by default
    ("UNA:+.?*'", "UNOC:4", True),    # UNA5 says '*'
    ("UNA:+.?#'", "UNOC:4", False),   # UNA5 says '#': the '*' is data
    ("", "UNOC:3", False),            # syntax 3 has no repetition
])
def test_repetition_separator_is_read_from_the_interchange(una, syntax, valid):
    """Without ``repetition``, the separator comes from the UNA before UNB, or the syntax 4
    default."""
    order = message(*REPEATING, ident="ORDERS:D:01B:UN:EAN010", una=una, syntax=syntax)
    assert (validate_message(order) == []) is valid


# -- dates -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "qualifier", "problem"), [
    ("20200229", "102", None), ("20210229", "102", "no such calendar date"),
    ("20200230", "102", "no such calendar date"), ("20201301", "102", "month 13"),
    ("202001011200", "102", "12 characters where the format has 8"),
    ("202001011230", "203", None), ("202001012530", "203", "hour 25"),
    ("202001012400", "203", None), ("202001012401", "203", "2400"),
    ("20200101123059", "204", None), ("200101", "101", None), ("200230", "101", "calendar"),
    ("2020010120200131", "718", None), ("20200101-20200131", "718", None),
    ("2020013120200101", "718", "ends before it starts"), ("202053", "616", None),
    ("202054", "616", "week 54"), ("2020010112", "718", "characters"),
    ("12", "802", None), ("2020A101", "102", "not all digits"),
])
def test_dates_are_checked_against_their_format_qualifier(value, qualifier, problem):
    """DTM 2380 against 2379: code 12, the reason naming value, format and what is wrong."""
    body = replaced("DTM+2:20200115:102", f"DTM+2:{value}:{qualifier}")
    errors = validate_message(message(*body))
    if problem is None:
        assert errors == []
        return
    (error,) = errors
    assert error.code == "12"
    assert repr(value) in error.reason and f"format {qualifier}" in error.reason
    assert problem in error.reason
    assert (error.position.element, error.position.element_pos,
            error.position.component_pos) == ("DTM/C507/2380", 1, 2)


def test_unknown_date_format_code_is_code_12_on_2379():
    """2379 must be a code of UNCL 2379."""
    (error,) = validate_message(message(*replaced("DTM+2:20200115:102", "DTM+2:2020:999")))
    assert (error.code, error.position.element, error.position.component_pos) == (
        "12", "DTM/C507/2379", 3)


# -- EANCOM rules ------------------------------------------------------------------------------

def test_eancom_requires_the_document_number():
    """BGM 1004 is conditional in UN D96A but required in EANCOM (13); UN alone accepts it."""
    body = replaced("BGM+220+PO12345+9", "BGM+220")
    order = message(*body)
    (error,) = validate_message(order)
    assert (error.code, error.position.element, error.position.element_pos) == (
        "13", "BGM/1004", 2)
    assert "EANCOM" in error.reason
    assert validate_message(order, subset="UN") == []
    plain = message(*body, ident="ORDERS:D:96A:UN")
    assert validate_message(plain) == []
    assert [e.code for e in validate_message(plain, subset="EANCOM")] == ["13"]


def test_eancom_document_number_is_found_in_c106_from_d96b_on():
    """In D01B the number is C106/1004: the rule finds it there and names that position."""
    body = ["BGM+220", "DTM+137:20200101:102", "UNS+S"]
    (error,) = validate_message(message(*body, ident="ORDERS:D:01B:UN:EAN010"))
    assert (error.position.element, error.position.element_pos,
            error.position.component_pos) == ("BGM/C106/1004", 2, 1)
    good = message("BGM+220+PO1+9", *body[1:], ident="ORDERS:D:01B:UN:EAN010")
    assert validate_message(good) == []


# -- robustness --------------------------------------------------------------------------------

def test_bad_input_never_raises():
    """Random segments, values and orders: a list of errors, never an exception."""
    rng = random.Random(3)
    tags = ["BGM", "DTM", "NAD", "LIN", "QTY", "MOA", "PRI", "UNS", "CNT", "XYZ", "COM", "DGS"]
    pieces = ["", "1", "-", ".", ",", "a" * 40, "20200230", "102", "718", "?", "9" * 30, "EAN"]
    for _ in range(300):
        body = []
        for _ in range(rng.randint(0, 25)):
            elements = "+".join(":".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
                                for _ in range(rng.randint(0, 12)))
            body.append(rng.choice(tags) + ("+" + elements if elements else ""))
        for ident in ("ORDERS:D:96A:UN:EAN008", "INVOIC:D:14B:UN", "SLSRPT:D:96A:UN"):
            errors = validate_message(message(*body, ident=ident), decimal_mark=",",
                                      repetition="*")
            assert all(e.code and e.position is not None for e in errors)


def test_message_without_trailer_reports_what_is_owed():
    """A message built without UNT (not from the reader) still gets its missing segments."""
    order = message(*ORDER)
    order.segments = order.segments[:3]
    errors = validate_message(order)
    assert errors and all(e.code == "13" for e in errors)
    assert any("UNS" in e.reason for e in errors)


# -- the generator's readers, on small tables in each directory layout ----------------------

CP437_TABLE = (
    "4.3.1  Segment table\n\n"
    "Pos    Tag Name                                      S   R\n\n"
    "0010   UNH Message header                            M   1\n"
    "0020   BGM Beginning of message                      M   1\n"
    "0030       \u00c4\u00c4 Segment group 1  \u00c4\u00c4\u00c4\u00c4\u00c4 C   10\u00c4\u00c4\u00bf\n"
    "0040   NAD Name and address                          M   1        \u00b3\n"
    "0050       \u00c4\u00c4 Segment group 2  \u00c4\u00c4\u00c4\u00c4\u00c4 C   5\u00c4\u00c4\u00bf\u00b3\n"
    "0060   CTA Contact information                       M   1       \u00b3\u00b3\n"
    "0070   COM Communication contact                     C   5\u00c4\u00c4\u00c4\u00c4\u00c1\u00d9\n"
    "0080   SPS Sampling parameters for summary\n"
    "           statistics                                C   1\n"
    "0090   UNT Message trailer                           M   1\n"
)
ASCII_TABLE = (
    "  TAG  NAME                                 S   REPT  S   REPT\n\n"
    "  UNH  Message header                       M      1\n"
    "  --- Segment Group 1 --------------------- C     10 ------+\n"
    "  RFF  Reference                            M      1       |\n"
    "  --- Segment Group 2 --------------------- C      5 -----+|\n"
    "  DTM  Date/time/period                     M      1      ||\n"
    "  FTX  Free text                            C      5 -----++\n"
    "  UNT  Message trailer                      M      1\n"
)


@pytest.mark.parametrize("table", [CP437_TABLE, ASCII_TABLE], ids=["cp437", "ascii"])
def test_generator_reads_segment_tables_with_nested_groups(table):
    """Group boxes open on their header row and close on the last segment's row."""
    parsed = parse_message(table)
    assert parsed[0] == ["UNH", "M", 1] and parsed[-1] == ["UNT", "M", 1]
    group = parsed[1] if table is ASCII_TABLE else parsed[2]
    assert group[:3] == [1, "C", 10]
    assert group[3][1][:3] == [2, "C", 5]
    assert [e[0] for e in group[3][1][3]] == (
        ["DTM", "FTX"] if table is ASCII_TABLE else ["CTA", "COM"])
    if table is CP437_TABLE:
        assert parsed[3] == ["SPS", "C", 1]  # the wrapped name


def test_generator_reads_segment_specifications():
    """Positions or none, repetition counts, composites with components, a wrapped name."""
    text = (
        "       BGM  BEGINNING OF MESSAGE\n\n"
        "010    C002 DOCUMENT/MESSAGE NAME                      C    1\n"
        "       1001  Document name code                        C      an..3\n"
        "       1000  Document name which is long and\n"
        "             wraps                                     C      an..35\n"
        "020    1004 DOCUMENT IDENTIFIER                        M    1 an..35\n"
        "030    C076 COMMUNICATION CONTACT                      C    3\n"
        "       3148  Communication address identifier          M      an..512\n"
        "----------------------------------------------------------------------\n"
        "  AJT  ADJUSTMENT DETAILS\n\n"
        "  4465 ADJUSTMENT REASON, CODED                               M an..3\n"
        "  C543 AGREEMENT TYPE IDENTIFICATION                          C\n"
        "  7431   Agreement type qualifier                             M an..3\n"
    )
    parsed = parse_segments(text)
    assert parsed["BGM"] == [
        ["C002", "C", 1, [["1001", "C", "an..3"], ["1000", "C", "an..35"]]],
        ["1004", "M", 1, "an..35"],
        ["C076", "C", 3, [["3148", "M", "an..512"]]],
    ]
    assert parsed["AJT"] == [["4465", "M", 1, "an..3"],
                             ["C543", "C", 1, [["7431", "M", "an..3"]]]]


def test_generator_reads_date_format_codes():
    """UNCL 2379 codes and their pictures; a description line starting with digits is not
    a code."""
    text = (
        "  2379  Date/time/period format qualifier\n\n  Repr: an..3\n\n"
        "      102 CCYYMMDD\n             Calendar date.\n"
        "      105 YYDDD\n             Calendar day: January the first = Day\n"
        "             001 Always start numbering the days of the year\n"
        "      718 CCYYMMDD-CCYYMMDD\n"
        "----------------------------------------------------------------------\n"
        "      999 Not in the list\n"
    )
    assert parse_date_formats(text) == {
        "102": "CCYYMMDD", "105": "YYDDD", "718": "CCYYMMDD-CCYYMMDD"}


def test_hand_built_segments_without_components_do_not_raise():
    """A Segment built by hand may hold an element with no component list at all."""
    order = message(*ORDER)
    order.segments[2].elements = [[], [], []]  # the first DTM
    errors = validate_message(order)
    assert [(e.code, e.position.element) for e in errors] == [("13", "DTM/C507")]
    assert "mandatory composite DTM/C507 is missing" in errors[0].reason


def _content_errors(segment, spec, mark, *, dates_only=False):
    """What ``_Check._content`` finds in one segment (the long way, without the compiled
    shortcut), or with ``dates_only`` what ``run`` still checks after the shortcut."""
    from gateway.formats.edifact import structure as st

    errors: list = []
    check = st._Check.__new__(st._Check)
    check.message, check.mark, check.repetition, check.errors = None, mark, "", errors
    check.error = lambda segment, code, reason, **_: errors.append((code, reason))
    if not dates_only:
        check._content(segment, spec)
    elif spec.dates is not None:
        st._valid_dates.clear()
        check._date(segment, spec.dates)
    return errors


def _mutations(rng: random.Random, elements: list[list[str]]) -> list[list[list[str]]]:
    """Variants of a segment's elements: values emptied, lengthened, given letters, signs,
    marks or spaces; components and elements added or dropped."""
    out = []
    pieces = ["", "X", "9", "-", ".", ",", "1.5", "-2", "A" * 40, "1" * 20, " ", "²", "20241399",
              ".5", "5.", "12a"]
    for _ in range(30):
        copy = [list(e) for e in elements]
        kind = rng.randrange(5)
        if copy and kind < 3:
            e = rng.randrange(len(copy))
            c = rng.randrange(len(copy[e]))
            copy[e][c] = rng.choice(pieces) if kind < 2 else copy[e][c] + rng.choice(pieces)
        elif copy and kind == 3:
            e = rng.randrange(len(copy))
            if rng.random() < 0.5 and len(copy[e]) > 1:
                copy[e].pop()
            else:
                copy[e].append(rng.choice(pieces))
        elif rng.random() < 0.5 and copy:
            copy.pop()
        else:
            copy.append([rng.choice(pieces)])
        out.append(copy)
    return out


def test_compiled_content_shortcut_never_vouches_for_a_segment_the_long_way_faults():
    """For every segment of the shipped samples and the benchmark order, and thousands of
    mutations of them, a segment the compiled ``fits`` calls valid has no content error the
    long way (``_Check._content``) but those of its date, which ``run`` still checks, under
    either decimal mark; and many do take the shortcut."""
    from pathlib import Path

    from gateway.formats.edifact import structure as st
    from gateway.formats.edifact.model import Segment

    samples = sorted((Path(__file__).resolve().parents[2] / "mappings" / "edifact")
                     .glob("*.sample.edi"))
    messages = [m for path in samples for i in read_interchanges(path.read_bytes())
                for m in i.messages]
    messages.append(message(*ORDER))
    rng = random.Random(7)
    vouched = checked = 0
    for msg in messages:
        compiled = st._message_structure(msg.directory, msg.type.upper())
        assert compiled is not None
        for segment in msg.segments:
            spec = compiled.specs.get(segment.tag)
            if spec is None or spec.fits is None:
                continue
            for elements in [segment.elements, *_mutations(rng, segment.elements)]:
                for mark in (".", ","):
                    checked += 1
                    probe = Segment(segment.tag, elements, segment.index, segment.offset)
                    if spec.fits(elements, mark):
                        vouched += 1
                        assert _content_errors(probe, spec, mark) == _content_errors(
                            probe, spec, mark, dates_only=True), (segment.tag, elements, mark)
    assert checked > 5000 and vouched > checked // 10


def test_a_valid_date_remembered_does_not_hide_a_bad_one():
    """Dates found valid are remembered by (format, value); a bad value in the same format
    right after is still reported."""
    good = message("BGM+220+PO1+9", "DTM+137:20240101:102", "NAD+BY+5412345000013::9",
                   "LIN+1++4000862141404:EN", "QTY+21:1", "UNS+S")
    bad = message("BGM+220+PO1+9", "DTM+137:20240231:102", "NAD+BY+5412345000013::9",
                  "LIN+1++4000862141404:EN", "QTY+21:1", "UNS+S")
    assert validate_message(good) == []
    assert validate_message(good) == []
    errors = validate_message(bad)
    assert [e.code for e in errors] == ["12"] and "no such calendar date" in errors[0].reason
