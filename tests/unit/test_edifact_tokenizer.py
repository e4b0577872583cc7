"""The EDIFACT tokenizer: separators, release characters, line breaks, charsets."""

from __future__ import annotations

import pytest

from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.tokenizer import tokenize


def _wrap(body: str, *, una: str = "", count: int | None = None) -> bytes:
    """An interchange of one message whose body is ``body`` (segments with terminators)."""
    n = count if count is not None else body.count("'\n") - body.count("?'\n") + 2
    return (f"{una}UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+REF1'"
            f"UNH+1+ORDERS:D:96A:UN:EAN008'{body}UNT+{n}+1'UNZ+1+REF1'"
            ).encode("latin-1")


def _body(data: bytes) -> list:
    message = read_interchanges(data)[0].messages[0]
    return [(s.tag, s.elements) for s in message.segments[1:-1]]


def test_plain_segments_split_into_elements_and_components():
    """Elements split on '+' and components on ':' when no UNA is given (defaults)."""
    assert _body(_wrap("DTM+137:20240101:102'\n")) == [("DTM", [["137", "20240101", "102"]])]


def test_release_character_keeps_separators_as_data():
    """A released '+', ':' and apostrophe stay in the value instead of splitting it."""
    body = _body(_wrap("FTX+AAI+++a?+b?:c?'d'\n"))
    assert body == [("FTX", [["AAI"], [""], [""], ["a+b:c'd"]])]


def test_released_release_character_before_terminator_ends_the_segment():
    """'??'' is a literal '?' followed by the segment terminator."""
    body = _body(_wrap("FTX+AAI+++O??'\nRFF+ON:1'\n", count=4))
    assert body == [("FTX", [["AAI"], [""], [""], ["O?"]]), ("RFF", [["ON", "1"]])]


def test_custom_una_separators_are_used():
    """UNA*@.? # gives '*' for components, '@' for elements and '#' as terminator."""
    data = (b"UNA*@.? #UNB@UNOA*3@S*14@R*14@240101*1200@X1#UNH@1@ORDERS*D*96A*UN#"
            b"QTY@21*5#UNT@3@1#UNZ@1@X1#")
    message = read_interchanges(data)[0].messages[0]
    assert message.segments[1].elements == [["21", "5"]]


def test_una_decimal_comma_is_reported_on_the_interchange():
    """The decimal mark of UNA3 is kept for the mapping's decimal conversion."""
    assert read_interchanges(_wrap("QTY+21:1,5'\n", una="UNA:+,? '"))[0].decimal_mark == ","


def test_crlf_between_segments_is_ignored():
    """CRLF after each terminator is not part of the next segment's tag."""
    data = _wrap("DTM+137:20240101:102'\r\nQTY+21:5'\r\n", count=4).replace(b"'", b"'\r\n")
    assert [t for t, _ in _body(data)] == ["DTM", "QTY"]


def test_line_wrapped_inside_an_element_is_joined():
    """A line break in the middle of an element is removed (the terminator is not a newline)."""
    data = _wrap("FTX+AAI+++Deliver at the back\r\n door'\n", count=3)
    assert _body(data)[0][1][3] == ["Deliver at the back door"]


def test_utf8_bom_is_skipped_with_a_warning():
    """A UTF-8 byte order mark before UNB is dropped and reported."""
    interchange = read_interchanges(b"\xef\xbb\xbf" + _wrap("QTY+21:5'\n"))[0]
    assert any("byte order mark" in w for w in interchange.warnings)


def test_unoc_latin1_bytes_are_decoded_as_latin1():
    """UNOC declares ISO 8859-1: byte 0xE9 reads as 'é'."""
    data = _wrap("FTX+AAI+++Caf\xe9'\n")
    assert _body(data)[0][1][3] == ["Café"]


def test_unoa_holding_utf8_is_read_as_utf8_with_a_warning():
    """A partner declaring UNOA but sending UTF-8 is read, not rejected, and warned about."""
    data = _wrap("FTX+AAI+++x'\n").replace(b"UNOC", b"UNOA").replace(b"+x'", "+Café'".encode())
    interchange = read_interchanges(data)[0]
    assert interchange.messages[0].segments[1].elements[3] == ["Café"]
    assert any("UTF-8" in w for w in interchange.warnings)


def test_segments_keep_index_and_offset():
    """Each segment knows its 1-based index in the file (UNA included) and its offset."""
    text = "UNA:+.? 'UNB+UNOA:3+S+R+240101:1200+X'"
    chunks = tokenize(text)
    unb = chunks[0].segments[0]
    assert (unb.tag, unb.index, unb.offset) == ("UNB", 2, 9)


@pytest.mark.parametrize("sep", ["", "\n", "\r\n"])
def test_two_interchanges_in_one_file_each_with_una(sep):
    """Concatenated interchanges, each with its own UNA, are all read."""
    one = _wrap("QTY+21:5'\n", una="UNA:+.? '").decode()
    data = (one + sep + one.replace("REF1", "REF2")).encode()
    assert [i.control_ref for i in read_interchanges(data)] == ["REF1", "REF2"]


@pytest.mark.parametrize("layout", ["", "\n", "\r\n", "\r\n\r\n"])
def test_line_ends_between_segments_do_not_matter(layout):
    """No line breaks, LF, CRLF or blank lines between segments: the same segments."""
    data = _wrap("DTM+137:20240101:102'QTY+21:5'", count=4).replace(b"'", b"'" + layout.encode())
    assert [t for t, _ in _body(data)] == ["DTM", "QTY"]


def test_three_interchanges_without_una_with_a_bom_and_mixed_line_ends():
    """A BOM, then interchanges back to back (CRLF, LF, none): each read, each clean."""
    one = _wrap("QTY+21:5'\n").decode()
    text = (one.replace("'", "'\r\n") + one.replace("REF1", "REF2").replace("'", "'\n")
            + one.replace("REF1", "REF3"))
    interchanges = read_interchanges(b"\xef\xbb\xbf" + text.encode())
    assert [i.control_ref for i in interchanges] == ["REF1", "REF2", "REF3"]
    assert all(i.error is None and i.messages[0].error is None for i in interchanges)


def test_line_wrapped_inside_a_tag_and_a_component_is_joined():
    """Fixed-width wrapping can split anywhere, even a tag; the segment reads whole."""
    data = _wrap("Q\nTY+21:1\r\n5'\n", count=3)
    assert _body(data) == [("QTY", [["21", "15"]])]
