"""Character sets: decoded as UNB 0001 declares, read anyway (with a warning) when they do not fit."""

from __future__ import annotations

import codecs

import pytest

from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.charset import decode, peek_syntax_id


def _interchange(value: str, syntax: str, encoding: str) -> bytes:
    """One message whose FTX holds ``value``, encoded as ``encoding``.

    UNOB gets a UNA, since its defaults without one are the information separators.
    """
    una = "UNA:+.? '" if syntax == "UNOB" else ""
    text = (f"{una}UNB+{syntax}:3+SENDER:14+RECEIVER:14+240101:1200+REF1'"
            f"UNH+1+ORDERS:D:96A:UN:EAN008'FTX+AAI+++{value}'UNT+3+1'UNZ+1+REF1'")
    return text.encode(encoding)


def _read(data: bytes) -> tuple[str, list[str]]:
    [interchange] = read_interchanges(data)
    assert interchange.error is None and interchange.messages[0].error is None
    return interchange.messages[0].segments[1].elements[3][0], interchange.warnings


@pytest.mark.parametrize(("syntax", "encoding", "value"), [
    ("UNOA", "ascii", "ORDER 42"),
    ("UNOB", "ascii", "Order 42"),
    ("UNOC", "latin-1", "Café crème"),
    ("UNOD", "iso8859-2", "Łódź Dvořák"),
    ("UNOE", "iso8859-5", "Москва"),
    ("UNOF", "iso8859-7", "Αθήνα"),
    ("UNOW", "utf-8", "東京 Zürich"),
    ("UNOY", "utf-8", "Ελλάδα 東京"),
])
def test_each_repertoire_is_decoded_as_declared(syntax, encoding, value):
    """The bytes of each repertoire read back as the text that was written, without warning."""
    text, warnings = _read(_interchange(value, syntax, encoding))
    assert text == value and warnings == []


def test_unoa_holding_utf8_is_read_as_utf8_with_a_warning():
    """A partner declaring UNOA but sending UTF-8 is read, not rejected, and warned about."""
    text, warnings = _read(_interchange("CAFÉ", "UNOA", "utf-8"))
    assert text == "CAFÉ" and any("bytes are UTF-8" in w for w in warnings)


def test_unoa_holding_latin1_is_read_as_latin1_naming_the_byte():
    """A byte UNOA does not define, not UTF-8 either: Latin-1, and the offset is given."""
    data = _interchange("CAFÉ", "UNOA", "latin-1")
    text, warnings = _read(data)
    assert text == "CAFÉ"
    offset = data.index(b"\xc9")
    assert any(f"byte {offset} is 0xc9" in w for w in warnings)


def test_unow_with_a_windows_1252_byte_is_read_as_latin1_with_a_warning():
    """UTF-8 declared, one 0x92 byte: never a crash, the byte offset is named."""
    data = _interchange("kWh\x92s", "UNOW", "latin-1")
    text, warnings = _read(data)
    assert text == "kWh\x92s" and any("is not UTF-8; read as Latin-1" in w for w in warnings)


def test_unod_bytes_undefined_in_the_codec_fall_back_to_latin1():
    """ISO 8859-3 (UNOG) leaves 0xA5 undefined: the file is still read."""
    text, warnings = _read(_interchange("x\xa5y", "UNOG", "latin-1"))
    assert text == "x\xa5y" and any("0xa5" in w for w in warnings)


def test_lower_case_under_unoa_is_accepted_with_one_warning():
    """Level A has no lower case: accepted (a large share of UNOA traffic has it), warned once."""
    text, warnings = _read(_interchange("Deliver to gate 4", "UNOA", "ascii"))
    found = [w for w in warnings if "level A character repertoire" in w]
    assert text == "Deliver to gate 4" and len(found) == 1
    assert "'e'" in found[0] and "line 1" in found[0] and "code 21" in found[0]


def test_una_service_characters_are_part_of_the_repertoire():
    """'@' and '#' are not level A, but as UNA separators they are allowed."""
    data = (b"UNA*@.? #UNB@UNOA*3@S*14@R*14@240101*1200@X1#UNH@1@ORDERS*D*96A*UN#"
            b"QTY@21*5#UNT@3@1#UNZ@1@X1#")
    [interchange] = read_interchanges(data)
    assert interchange.warnings == []


def test_national_variant_characters_under_unob_are_warned_about():
    """Level B is ISO 646 without its national positions: '@' gets a warning, lower case not."""
    _text, warnings = _read(_interchange("mail@example", "UNOB", "ascii"))
    assert any("'@'" in w and "level B" in w for w in warnings)


def test_utf8_bom_is_skipped_with_a_warning():
    """A UTF-8 byte order mark before UNB is dropped and reported."""
    text, warnings = _read(codecs.BOM_UTF8 + _interchange("X", "UNOC", "latin-1"))
    assert text == "X" and any("byte order mark" in w for w in warnings)


def test_utf16_file_is_decoded_as_utf16():
    """A UTF-16 file (with its byte order mark) is read, and said to be UTF-16."""
    data = _interchange("Zürich", "UNOW", "utf-16")
    text, warnings = _read(data)
    assert text == "Zürich" and any("UTF-16" in w for w in warnings)


def test_unknown_syntax_identifier_is_read_as_utf8_or_latin1():
    """An identifier edigw does not know (UNOL, ANSI): UTF-8 if it decodes, else Latin-1."""
    text, warnings = _read(_interchange("Pré", "UNOL", "latin-1"))
    assert text == "Pré" and any("UNOL is not one edigw knows" in w for w in warnings)


def test_peek_syntax_id_reads_level_b_information_separators():
    """Without UNA, UNOB writes IS3 after the tag; the identifier is still found."""
    assert peek_syntax_id(b"UNB\x1dUNOB\x1f3\x1dS\x1c") == "UNOB"
    assert peek_syntax_id(b"UNA:+.? 'UNB+UNOC:3+S'") == "UNOC"
    assert peek_syntax_id(b"UNH+1+ORDERS:D:96A:UN'") is None


def test_decode_never_fails_on_arbitrary_bytes():
    """Every byte value, under every declaration: text comes back."""
    junk = bytes(range(256))
    for syntax in ("UNOA", "UNOB", "UNOC", "UNOD", "UNOE", "UNOW", "UNOY", "UNOX", ""):
        text, _syntax, _warnings = decode(f"UNB+{syntax}:3+S'".encode() + junk)
        assert isinstance(text, str) and len(text) >= 256
