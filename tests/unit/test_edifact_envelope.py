"""Envelope checks: each error has a reason, a position and a UN/EDIFACT 0085 code."""

from __future__ import annotations

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import read_interchanges

GOOD = ("UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+REF1'\n"
        "UNH+1+ORDERS:D:96A:UN:EAN008'\n"
        "BGM+220+PO1+9'\n"
        "UNT+3+1'\n"
        "UNZ+1+REF1'\n")


def _error(text: str) -> EdifactSyntaxError:
    with pytest.raises(EdifactSyntaxError) as info:
        read_interchanges(text.encode("latin-1"))
    return info.value


def test_good_interchange_gives_its_envelope_fields():
    """UNB, UNH and UNZ values land on Interchange and Message."""
    interchange = read_interchanges(GOOD.encode())[0]
    message = interchange.messages[0]
    assert (interchange.sender_id, interchange.sender_qualifier, interchange.control_ref,
            interchange.syntax_id, interchange.prepared_date) == (
        "SENDER", "14", "REF1", "UNOC", "240101")
    assert (message.ref, message.type, message.directory, message.association,
            message.index) == ("1", "ORDERS", "D96A", "EAN008", 2)


def test_empty_file_is_rejected():
    """An empty or blank file fails with 'empty file'."""
    error = _error("  \n")
    assert "empty file" in error.reason and error.code == "13"


def test_junk_lines_before_unb_are_rejected_saying_what_was_found():
    """Garbage before UNB is not EDIFACT; the reason quotes what the file starts with."""
    error = _error("####@@@@####\r\n" + GOOD)
    assert "####@@@@####" in error.reason
    assert error.position.line == 1 and error.code == "13"


def test_unt_count_mismatch_fails_with_code_29():
    """A UNT count that is not the number of segments UNH..UNT fails at the UNT."""
    error = _error(GOOD.replace("UNT+3+1", "UNT+5+1"))
    assert error.reason == "UNT segment count is 5 but the message has 3 segments (UNH to UNT)"
    assert (error.code, error.position.line, error.position.tag) == ("29", 4, "UNT")
    assert error.position.message_ref == "1"


def test_unt_reference_mismatch_fails_with_code_28():
    """UNT 0062 must repeat the UNH message reference."""
    error = _error(GOOD.replace("UNT+3+1", "UNT+3+2"))
    assert error.code == "28" and "does not match the UNH reference '1'" in error.reason


def test_unz_count_mismatch_fails_with_code_29():
    """UNZ 0036 must count the messages."""
    error = _error(GOOD.replace("UNZ+1+REF1", "UNZ+2+REF1"))
    assert error.code == "29" and error.position.tag == "UNZ"


def test_unz_reference_mismatch_is_accepted_with_a_code_28_warning():
    """A UNZ 0020 that does not repeat UNB 0020 is a warning: every message checked out."""
    from gateway.formats.edifact import read_interchanges

    [interchange] = read_interchanges(GOOD.replace("UNZ+1+REF1", "UNZ+1+OTHER").encode())
    assert len(interchange.messages) == 1
    assert any("'OTHER'" in w and "code 28" in w for w in interchange.warnings)


def test_missing_unz_is_a_truncated_interchange():
    """A file that ends without UNZ names the interchange and its last segment."""
    error = _error(GOOD.replace("UNZ+1+REF1'\n", ""))
    assert "has no UNZ" in error.reason and "truncated" in error.reason
    assert error.code == "13" and error.position.tag == "UNB"


def test_missing_unt_is_a_truncated_message():
    """A file that ends inside a message points at the UNH."""
    error = _error(GOOD.replace("UNT+3+1'\nUNZ+1+REF1'\n", ""))
    assert "has no UNT" in error.reason and error.position.tag == "UNH"


def test_segment_between_messages_is_outside_a_message():
    """A segment between UNB and UNH fails with code 33."""
    error = _error(GOOD.replace("UNH+", "DTM+137:20240101:102'\nUNH+", 1))
    assert error.code == "33" and error.position.tag == "DTM" and error.position.line == 2


def test_unb_without_sender_fails():
    """UNB must name the interchange sender (S002 0004)."""
    error = _error(GOOD.replace("SENDER:14", ":14"))
    assert "no interchange sender" in error.reason and error.position.element == "UNB/S002/0004"


def test_bad_segment_tag_fails_with_code_12():
    """A tag that is not three upper-case letters or digits is rejected."""
    error = _error(GOOD.replace("BGM+", "bgm+"))
    assert error.code == "12" and "'bgm'" in error.reason and error.position.line == 3


def test_messages_without_envelope_give_one_interchange_without_sender():
    """UNH..UNT with no UNB is read; the partner then comes from the channel."""
    text = "UNA:+,? 'UNH+1+ORDERS:D:96A:UN:EAN008'BGM+220+X+9'UNT+3+1'"
    interchange = read_interchanges(text.encode())[0]
    assert interchange.sender_id is None and interchange.decimal_mark == ","
    assert len(interchange.messages) == 1


def test_error_position_gives_line_and_column_on_a_single_line_file():
    """On a one-line file the column tells where the bad segment starts."""
    error = _error(GOOD.replace("\n", "").replace("UNT+3+1", "UNT+9+1"))
    assert error.position.line == 1 and error.position.column == GOOD.replace("\n", "").index("UNT") + 1


@pytest.mark.parametrize("enabled", [True, False])
def test_reading_leaves_the_garbage_collector_as_it_found_it(enabled):
    """The collector is paused while reading, then restored (enabled or not), nothing frozen."""
    import gc

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        read_interchanges(GOOD.encode())
        _error(GOOD.replace("UNT+3+1", "UNT+9+1"))
        assert gc.isenabled() is enabled and gc.get_freeze_count() == 0
    finally:
        gc.enable() if was else gc.disable()
