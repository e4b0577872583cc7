"""Envelope checks: each error has a reason, a position and a UN/EDIFACT 0085 code.

Errors of one message land on ``Message.error``, errors of one interchange on
``Interchange.error``; only what spoils the whole file raises.
"""

from __future__ import annotations

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import Interchange, read_interchanges

GOOD = ("UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+REF1'\n"
        "UNH+1+ORDERS:D:96A:UN:EAN008'\n"
        "BGM+220+PO1+9'\n"
        "UNT+3+1'\n"
        "UNZ+1+REF1'\n")


def _message(ref: str, body: str = "BGM+220+PO1+9'\n", count: int | None = None) -> str:
    n = count if count is not None else body.count("'") + 2
    return f"UNH+{ref}+ORDERS:D:96A:UN:EAN008'\n{body}UNT+{n}+{ref}'\n"


def _interchange(*messages: str, count: int | None = None, ref: str = "REF1") -> str:
    n = count if count is not None else len(messages)
    return (f"UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+{ref}'\n" + "".join(messages)
            + f"UNZ+{n}+{ref}'\n")


def _error(text: str) -> EdifactSyntaxError:
    with pytest.raises(EdifactSyntaxError) as info:
        read_interchanges(text.encode("latin-1"))
    return info.value


def _read(text: str) -> Interchange:
    [interchange] = read_interchanges(text.encode("latin-1"))
    return interchange


def test_good_interchange_gives_its_envelope_fields():
    """UNB, UNH and UNZ values land on Interchange and Message, with no error anywhere."""
    interchange = _read(GOOD)
    message = interchange.messages[0]
    assert (interchange.sender_id, interchange.sender_qualifier, interchange.control_ref,
            interchange.syntax_id, interchange.prepared_date) == (
        "SENDER", "14", "REF1", "UNOC", "240101")
    assert (message.ref, message.type, message.directory, message.association,
            message.index) == ("1", "ORDERS", "D96A", "EAN008", 2)
    assert interchange.error is None and message.error is None and message.group_ref is None


# -- whole file ------------------------------------------------------------------------------

def test_empty_file_is_rejected():
    """An empty or blank file fails with 'empty file'."""
    error = _error("  \n")
    assert "empty file" in error.reason and error.code == "13"


def test_junk_lines_before_unb_are_rejected_saying_what_was_found():
    """Garbage before UNB is not EDIFACT; the reason quotes what the file starts with."""
    error = _error("####@@@@####\r\n" + GOOD)
    assert "####@@@@####" in error.reason
    assert error.position.line == 1 and error.code == "13"


def test_proprietary_preamble_segment_before_una_is_rejected():
    """A header segment of another format before the UNA is not EDIFACT either."""
    error = _error("DOC+01=x+02=y'UNA:+.? '" + GOOD)
    assert "starts with \"DOC+01=x" in error.reason and error.code == "13"


def test_missing_unz_is_a_truncated_interchange():
    """A file that ends without UNZ names the interchange and its last segment."""
    error = _error(GOOD.replace("UNZ+1+REF1'\n", ""))
    assert "has no UNZ" in error.reason and "truncated" in error.reason
    assert error.code == "13" and error.position.tag == "UNB"


def test_missing_unt_at_end_of_file_is_a_truncated_message():
    """A file that ends inside a message points at the UNH."""
    error = _error(GOOD.replace("UNT+3+1'\nUNZ+1+REF1'\n", ""))
    assert "has no UNT" in error.reason and error.position.tag == "UNH"


def test_unb_inside_an_open_interchange_is_rejected():
    """A second UNB before the first interchange's UNZ: the first one is truncated."""
    error = _error(GOOD.replace("UNZ+1+REF1'\n", "") + GOOD.replace("REF1", "REF2"))
    assert "has no UNZ" in error.reason and error.code == "13" and error.position.segment == 5


def test_segment_after_the_unz_is_rejected():
    """Data after the last UNZ belongs to no interchange: code 33."""
    error = _error(GOOD + "DTM+137:20240101:102'\n")
    assert error.code == "33" and error.position.tag == "DTM" and "after the UNZ" in error.reason


def test_bad_segment_tag_between_messages_is_rejected_with_code_12():
    """Outside a message a tag that is not a tag means the framing is lost: the file fails."""
    error = _error(GOOD.replace("UNH+", "x`y`z'\nUNH+", 1))
    assert error.code == "12" and "'x`y`z'" in error.reason and error.position.line == 2


def test_ctrl_z_after_the_last_segment_is_ignored_with_a_warning():
    """A DOS end-of-file mark after the UNZ is padding, not data."""
    [interchange] = read_interchanges(GOOD.encode() + b"\x1a")
    assert interchange.error is None and len(interchange.messages) == 1


# -- one message -----------------------------------------------------------------------------

def test_unt_count_mismatch_is_an_error_of_that_message_with_code_29():
    """A UNT count that is not the number of segments UNH..UNT fails the message only."""
    interchange = _read(GOOD.replace("UNT+3+1", "UNT+5+1"))
    error = interchange.messages[0].error
    assert interchange.error is None
    assert error.reason == "UNT segment count is 5 but the message has 3 segments (UNH to UNT)"
    assert (error.code, error.position.line, error.position.tag) == ("29", 4, "UNT")
    assert (error.position.message_ref, error.position.element_pos) == ("1", 1)


def test_unt_count_that_is_not_a_number_has_code_12():
    """'UNT+x+1' cannot be counted: invalid value."""
    error = _read(GOOD.replace("UNT+3+1", "UNT+x+1")).messages[0].error
    assert error.code == "12" and error.position.element_pos == 1


def test_unt_reference_mismatch_has_code_28_at_element_2():
    """UNT 0062 must repeat the UNH message reference."""
    error = _read(GOOD.replace("UNT+3+1", "UNT+3+2")).messages[0].error
    assert error.code == "28" and "does not match the UNH reference '1'" in error.reason
    assert error.position.element_pos == 2 and error.position.component_pos is None


def test_unh_without_reference_has_code_13():
    """UNH 0062 is mandatory."""
    error = _read(GOOD.replace("UNH+1+", "UNH++").replace("UNT+3+1", "UNT+3+")).messages[0].error
    assert error.code == "13" and "message reference (0062)" in error.reason
    assert error.position.element_pos == 1


@pytest.mark.parametrize(("identifier", "component", "number"), [
    (":D:96A:UN", 1, "0065"), ("ORDERS::96A:UN", 2, "0052"), ("ORDERS:D::UN", 3, "0054"),
    ("ORDERS:D:96A", 4, "0051")])
def test_unh_without_a_message_identifier_component_has_code_13(identifier, component, number):
    """S009 type, version, release and agency are mandatory; the UCD names the component."""
    error = _read(GOOD.replace("ORDERS:D:96A:UN:EAN008", identifier)).messages[0].error
    assert error.code == "13" and number in error.reason
    assert (error.position.element_pos, error.position.component_pos) == (2, component)


def test_repeated_message_reference_fails_the_second_message_with_code_26():
    """Message references are unique in an interchange; the repeat is the duplicate."""
    interchange = _read(_interchange(_message("7"), _message("8"), _message("7")))
    first, second, third = interchange.messages
    assert first.error is None and second.error is None and interchange.error is None
    assert third.error.code == "26" and "segment 2" in third.error.reason
    assert third.error.position.segment == 8 and third.error.position.element_pos == 1


def test_one_bad_message_of_forty_fails_alone():
    """Forty messages, the seventh with a wrong count: 39 clean, one error, interchange fine."""
    messages = [_message(str(n), count=9 if n == 7 else None) for n in range(1, 41)]
    interchange = _read(_interchange(*messages))
    failed = [m.ref for m in interchange.messages if m.error is not None]
    assert failed == ["7"] and interchange.error is None and len(interchange.messages) == 40


def test_message_cut_short_by_the_next_unh_fails_alone_and_reading_goes_on():
    """A message without UNT before the next UNH: code 13 on it, the next one is read."""
    broken = "UNH+1+ORDERS:D:96A:UN:EAN008'\nBGM+220+PO1+9'\n"
    interchange = _read(_interchange(broken, _message("2")))
    first, second = interchange.messages
    assert first.error.code == "13" and "has no UNT" in first.error.reason
    assert "UNH at segment 4" in first.error.reason and first.error.position.tag == "UNH"
    assert [s.tag for s in first.segments] == ["UNH", "BGM"]
    assert second.error is None and interchange.error is None


def test_message_cut_short_by_the_unz_fails_alone():
    """A message without UNT before UNZ: the message fails, the interchange closes."""
    interchange = _read(GOOD.replace("UNT+3+1'\n", ""))
    assert interchange.messages[0].error.code == "13" and interchange.error is None


def test_bad_segment_tag_inside_a_message_fails_that_message_with_code_12():
    """A tag that is not a tag inside UNH..UNT is that message's error."""
    interchange = _read(_interchange(_message("1", "bgm+220+X'\n"), _message("2")))
    first, second = interchange.messages
    assert first.error.code == "12" and "'bgm'" in first.error.reason
    assert first.error.position.line == 3 and first.error.position.message_ref == "1"
    assert second.error is None


def test_the_first_error_of_a_message_is_kept():
    """A duplicate reference (at UNH) wins over a wrong UNT count (later in the message)."""
    interchange = _read(_interchange(_message("1"), _message("1", count=9)))
    assert interchange.messages[1].error.code == "26"


# -- one interchange -------------------------------------------------------------------------

def test_unz_count_mismatch_is_an_error_of_the_interchange_with_code_29():
    """UNZ 0036 must count the messages; the messages are still listed."""
    interchange = _read(GOOD.replace("UNZ+1+REF1", "UNZ+2+REF1"))
    assert interchange.error.code == "29" and interchange.error.position.tag == "UNZ"
    assert interchange.error.position.element_pos == 1 and len(interchange.messages) == 1
    assert interchange.messages[0].error is None


def test_unz_reference_mismatch_is_accepted_with_a_code_28_warning():
    """A UNZ 0020 that does not repeat UNB 0020 is a warning: every message checked out."""
    interchange = _read(GOOD.replace("UNZ+1+REF1", "UNZ+1+OTHER"))
    assert len(interchange.messages) == 1 and interchange.error is None
    assert any("'OTHER'" in w and "code 28" in w for w in interchange.warnings)


@pytest.mark.parametrize(("unb", "element", "position"), [
    ("UNB+UNOC:3+:14+RECEIVER:14+240101:1200+REF1", "UNB/S002/0004", (2, 1)),
    ("UNB+UNOC:3+SENDER:14++240101:1200+REF1", "UNB/S003/0010", (3, 1)),
    ("UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200", "UNB/0020", (5, None)),
    ("UNB+UNOC+SENDER:14+RECEIVER:14+240101:1200+REF1", "UNB/S001/0002", (1, 2)),
    ("UNB+UNOC:3+SENDER:14+RECEIVER:14+:1200+REF1", "UNB/S004/0017", (4, 1)),
    ("UNB+UNOC:3+SENDER:14+RECEIVER:14+240101+REF1", "UNB/S004/0019", (4, 2)),
])
def test_unb_missing_a_mandatory_element_rejects_the_interchange_with_code_13(
        unb, element, position):
    """Sender, recipient, control reference, syntax version, date and time are mandatory."""
    interchange = _read(GOOD.replace(GOOD.split("'")[0], unb))
    error = interchange.error
    assert error.code == "13" and error.position.element == element
    assert (error.position.element_pos, error.position.component_pos) == position
    assert len(interchange.messages) == 1


def test_unb_syntax_version_5_is_not_supported_code_2():
    """Syntax versions are 1 to 4; another one rejects the interchange with code 2."""
    error = _read(GOOD.replace("UNOC:3", "UNOC:5")).error
    assert error.code == "2" and error.position.component_pos == 2


def test_segment_between_messages_rejects_the_interchange_with_code_33():
    """A segment between UNB and UNH is outside any message: the interchange fails."""
    interchange = _read(GOOD.replace("UNH+", "DTM+137:20240101:102'\nUNH+", 1))
    error = interchange.error
    assert error.code == "33" and error.position.tag == "DTM" and error.position.line == 2
    assert len(interchange.messages) == 1


def test_later_interchange_errors_are_kept_as_warnings():
    """The first interchange error rejects it; the next ones are listed, with their code."""
    interchange = _read(GOOD.replace("UNH+", "DTM+1'\nUNH+", 1).replace("UNZ+1", "UNZ+4"))
    assert interchange.error.code == "33"
    assert any(w.startswith("also (0085 code 29)") for w in interchange.warnings)


def test_several_interchanges_fail_independently():
    """An interchange with a wrong UNZ count does not touch the next one."""
    bad = _interchange(_message("1"), count=3, ref="A")
    good = _interchange(_message("1"), ref="B")
    first, second = read_interchanges((bad + good).encode())
    assert first.error.code == "29" and second.error is None


# -- positions -------------------------------------------------------------------------------

def test_error_position_gives_line_and_column_on_a_single_line_file():
    """On a one-line file the column tells where the bad segment starts."""
    text = GOOD.replace("\n", "").replace("UNT+3+1", "UNT+9+1")
    error = _read(text).messages[0].error
    assert error.position.line == 1 and error.position.column == text.index("UNT") + 1


def test_messages_without_envelope_give_one_interchange_without_sender():
    """UNH..UNT with no UNB is read; the partner then comes from the channel."""
    text = "UNA:+,? 'UNH+1+ORDERS:D:96A:UN:EAN008'BGM+220+X+9'UNT+3+1'"
    interchange = read_interchanges(text.encode())[0]
    assert interchange.sender_id is None and interchange.decimal_mark == ","
    assert len(interchange.messages) == 1 and interchange.messages[0].error is None


@pytest.mark.parametrize("enabled", [True, False])
def test_reading_leaves_the_garbage_collector_as_it_found_it(enabled):
    """The collector is paused while reading, then restored (enabled or not), nothing frozen."""
    import gc

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        read_interchanges(GOOD.encode())
        _error(GOOD.replace("UNZ+1+REF1'\n", ""))
        assert gc.isenabled() is enabled and gc.get_freeze_count() == 0
    finally:
        gc.enable() if was else gc.disable()
