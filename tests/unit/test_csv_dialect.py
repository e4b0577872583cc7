"""Delimited text as rows: encodings, quoting, line numbers, the delimiter and the sniff."""

from __future__ import annotations

import pytest

from gateway.core.errors import PayloadError
from gateway.formats.csv.dialect import (
    decode,
    detect_delimiter,
    looks_delimited,
    read_rows,
)

# -- encodings -------------------------------------------------------------------------------


def test_utf8_without_bom_is_read_as_utf8_without_warning():
    """Plain UTF-8 text decodes as UTF-8 and says nothing."""
    decoded = decode("Désignation;Qté\n".encode(), encoding="auto", fallback="windows-1252")
    assert (decoded.text, decoded.encoding, decoded.warning) == ("Désignation;Qté\n", "utf-8",
                                                                 None)


def test_utf8_bom_is_dropped_and_means_utf8_even_when_another_encoding_is_declared():
    """Excel's "CSV UTF-8" starts with a BOM: it is removed, and it wins over a declaration."""
    data = b"\xef\xbb\xbf" + "N° commande;Qté\n".encode()
    auto = decode(data, encoding="auto", fallback="windows-1252")
    assert auto.text.startswith("N° commande") and auto.warning is None
    declared = decode(data, encoding="windows-1252", fallback="windows-1252")
    assert declared.text.startswith("N° commande")
    assert "byte order mark" in declared.warning


def test_windows_1252_with_euro_sign_and_accents_falls_back_with_a_warning():
    """Bytes that are not UTF-8 are read in the fallback encoding, and the timeline is told
    where the first non-UTF-8 byte was."""
    data = "Prix;Désignation\n12,50 €;Crème brûlée\n".encode("cp1252")
    decoded = decode(data, encoding="auto", fallback="windows-1252")
    assert decoded.text == "Prix;Désignation\n12,50 €;Crème brûlée\n"
    assert decoded.encoding == "windows-1252"
    assert "not UTF-8" in decoded.warning and "line 1" in decoded.warning


def test_declared_iso_8859_1_reads_every_byte():
    """ISO-8859-1 maps every byte, so a declared Latin-1 file always decodes."""
    data = "Größe;Stück\n".encode("latin-1")
    assert decode(data, encoding="iso-8859-1", fallback="windows-1252").text == "Größe;Stück\n"


def test_declared_utf8_that_is_not_names_line_and_byte():
    """A file declared UTF-8 with a Windows-1252 byte on line 2 is refused at that place."""
    data = b"a;b\nCaf\xe9;1\n"
    with pytest.raises(PayloadError) as err:
        decode(data, encoding="utf-8", fallback="windows-1252")
    assert err.value.position.line == 2 and err.value.position.column == 4
    assert "0xE9" in err.value.reason and err.value.stage == "parse"


def test_byte_undefined_in_windows_1252_is_refused():
    """0x81 has no character in Windows-1252: the fallback cannot guess, the file fails."""
    with pytest.raises(PayloadError, match="0x81"):
        decode(b"a;b\n\x81;1\n", encoding="auto", fallback="windows-1252")


# -- rows and quoting ----------------------------------------------------------------------


def test_quoted_fields_keep_delimiters_and_line_breaks_and_rows_know_their_first_line():
    """A quoted cell may hold the delimiter, doubled quotes and line breaks; each row
    knows the line it starts on, blank lines are skipped."""
    text = 'a;b;c\r\n1;"x; y";"say ""hi"""\r\n\r\n2;"two\r\nlines";z\r\n3;;\r\n'
    rows = read_rows(text, delimiter=";", quote='"')
    assert [r.line for r in rows] == [1, 2, 4, 6]
    assert rows[1].get(2) == "x; y" and rows[1].get(3) == 'say "hi"'
    assert rows[2].get(2) == "two\nlines"  # one notation for embedded line breaks
    assert rows[3].get(2) == "" and rows[3].get(9) == ""


def test_cr_only_line_ends_are_lines_too():
    """Old Mac exports end lines with CR alone."""
    rows = read_rows("a,b\r1,2\r3,4\r", delimiter=",", quote='"')
    assert [(r.line, r.values) for r in rows] == [(1, ["a", "b"]), (2, ["1", "2"]),
                                                  (3, ["3", "4"])]


def test_without_quoting_a_quote_is_text():
    """quote: null reads '"' as an ordinary character (pipe flat files)."""
    rows = read_rows('LIN|5" screen|1\n', delimiter="|", quote=None)
    assert rows[0].values == ["LIN", '5" screen', "1"]


def test_broken_quoting_names_the_line():
    """A closing quote followed by text is not CSV: the file fails at that line."""
    with pytest.raises(PayloadError) as err:
        read_rows('a;b\n1;2\n"x"y;3\n', delimiter=";", quote='"')
    assert err.value.position.line == 3 and "line 3" in err.value.reason


# -- delimiter -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("a;b;c\n1;2,5;3\n4;5,5;6\n", ";"),        # decimal commas do not fool it
    ("a,b,c\n1,2,3\n", ","),
    ("a\tb\n1\t2\n", "\t"),
    ("a|b|c\n1|2|3\n", "|"),
    ('name,"x;y"\n"a;b",1\n', ","),          # delimiters inside quotes do not count
    ("just one column\nand another\n", None),
])
def test_delimiter_is_the_one_that_splits_rows_evenly(text, expected):
    """auto picks the delimiter giving the same, largest field count on most rows."""
    assert detect_delimiter(text, '"') == expected


# -- sniff -----------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"GTIN;Qty\n4000862141404;3\n",
    b"\xef\xbb\xbfOrder No,Qty\r\nA1,3\r\n",
    b"H;PO1;20240101\nD;1;4000862141404;3\nD;2;4006381333931;1\n",
    b"ORDERS_D_96A_UN_EAN008\nORD|1|220|9\nDTM|20240101\nLIN|1|EN|1\nQTYLIN|21|4|PCE\n",
    b'"A","B","C","D","E","F"\r\n',               # a whole file of one wide row
])
def test_sniff_takes_delimited_text(head):
    """Tables, record-type files and a one-row file look delimited."""
    assert looks_delimited(head)


@pytest.mark.parametrize("head", [
    b"UNA:+.? 'UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+1'UNH+1+ORDERS:D:96A:UN'",
    b"UNB+UNOA:2+A+B+240101:1200+1'\nUNH+1+ORDERS:D:96A:UN:EAN008'\nBGM+220+1,2+9'\n",
    b'<?xml version="1.0"?>\n<Order>\n<ID>1;2;3</ID>\n</Order>\n',
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    b'[{"a": 1, "b": 2},\n {"a": 3, "b": 4}]\n',
    b"\x00\x01\x02;\x03\n\x04;\x05\n",
    b"Hello, I would like three boxes.\n",
    b"",
])
def test_sniff_leaves_other_formats_alone(head):
    """EDIFACT, XML, PDF, JSON, binary data and a sentence are not CSV."""
    assert not looks_delimited(head)


def test_sniff_ignores_the_cut_last_line_of_a_full_head():
    """The pipeline passes 4096 bytes: the partial last record must not spoil the count."""
    line = b"4000862141404;ART-100;Kaffee;12;3,45\n"
    head = (b"GTIN;Article;Description;Qty;Price\n" + line * 200)[:4096]
    assert looks_delimited(head)
