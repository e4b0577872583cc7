"""Bytes to text, by the UNB syntax identifier (0001), never failing on a partner's bytes.

Policy when the bytes do not fit the declaration (every case is read, none raises; each
adds one warning, which the reader copies onto every interchange of the file):

- A UTF-8 byte order mark is dropped. A UTF-16 one (some Windows tools) decodes the file
  as UTF-16.
- Non-ASCII bytes under a single-byte repertoire (UNOA, UNOB, UNOC, UNOD …) that form
  valid UTF-8 are read as UTF-8: bytes valid as UTF-8 are almost never meant as Latin
  text, and partners often declare UNOA/UNOC and send UTF-8.
- Otherwise the declared codec; bytes it does not define (any byte above 0x7F under UNOA
  or UNOB, a hole of ISO 8859-3/6/7/8) make the file read as Latin-1, and the warning
  names the first such byte and its offset.
- UNOW and UNOY (ISO 10646) are read as UTF-8; bytes that are not UTF-8 (the EN 16931
  example 8 holds one Windows-1252 byte) make the file read as Latin-1, as above.
- ASCII characters outside the declared repertoire, such as lower-case letters under
  UNOA (ISO 9735 level A is upper case only, ISO 646 minus national variants) or ``@``
  and ``#``, are accepted with one warning naming the first one and its line and column
  (0085 code 21, invalid character, is what a strict CONTRL would report). Rejecting
  them would refuse a large share of real UNOA traffic for no loss of meaning.
- An unknown syntax identifier (ANSI, IATB, UNOL …) is read as ASCII when the bytes are
  ASCII, else as UTF-8, else Latin-1, with a warning in the last two cases.
"""

from __future__ import annotations

import codecs
import re

#: UNB 0001 -> Python codec (ISO 9735-1 annex: UNOA/UNOB level A/B are subsets of ASCII).
SYNTAX_CODECS = {
    "UNOA": "ascii", "UNOB": "ascii", "UNOC": "latin-1", "UNOD": "iso8859-2",
    "UNOE": "iso8859-5", "UNOF": "iso8859-7", "UNOG": "iso8859-3", "UNOH": "iso8859-4",
    "UNOI": "iso8859-6", "UNOJ": "iso8859-8", "UNOK": "iso8859-9", "UNOW": "utf-8",
    "UNOY": "utf-8",
}

# ISO 9735 level A: upper-case letters, digits, space and . , - ( ) / = ' + : ? ! " % & * ; < >.
_LEVEL_A = "A-Z0-9 .,\\-()/='+:?!\"%&*;<>"
# Level B: ISO 646 without its national variant positions (# $ @ [ \ ] ^ ` { | } ~), so
# level A plus lower case; its default separators are the information separators.
_LEVEL_B = _LEVEL_A + "a-z\x1c\x1d\x1f"
_REPERTOIRES = {"UNOA": _LEVEL_A, "UNOB": _LEVEL_B}
#: Line breaks and tabs between segments are layout, not data, in every repertoire.
_LAYOUT = "\r\n\t"


def peek_syntax_id(data: bytes) -> str | None:
    """The syntax identifier of the first UNB, read from the raw bytes before decoding.

    The element separator after ``UNB`` is UNA2 when a UNA leads, else ``+`` or (level B
    without UNA) the information separator IS3, 0x1D.
    """
    start = len(data) - len(data.lstrip())
    separators: tuple[bytes, ...] = (b"+", b"\x1d")
    if data.startswith(b"UNA", start) and len(data) >= start + 9:
        separators = (data[start + 4:start + 5],)
    for element in separators:
        found = data.find(b"UNB" + element)
        if found != -1:
            ident = data[found + 4:found + 8]
            return ident.decode("ascii", "replace") if ident.isalpha() else None
    return None


def decode(data: bytes) -> tuple[str, str | None, list[str]]:
    """(text, syntax identifier, warnings): decoded as declared, else UTF-8, else Latin-1."""
    warnings: list[str] = []
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
        warnings.append("the file starts with a UTF-8 byte order mark; it was ignored")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", "replace")
        warnings.append("the file is UTF-16 (it starts with a UTF-16 byte order mark); "
                        "read as UTF-16")
        return text, peek_syntax_id(text.encode("utf-8", "replace")), warnings
    syntax_id = peek_syntax_id(data)
    if data.isascii():
        text = data.decode("ascii")
        _check_repertoire(text, syntax_id, warnings)
        return text, syntax_id, warnings
    declared = SYNTAX_CODECS.get(syntax_id or "")
    if syntax_id and declared is None:
        warnings.append(f"syntax identifier {syntax_id} is not one edigw knows; "
                        "read as UTF-8 (Latin-1 if not valid UTF-8)")
    if declared and declared != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            warnings.append(f"declared {syntax_id} ({declared}) but the bytes are UTF-8; "
                            "read as UTF-8")
            return text, syntax_id, warnings
        try:
            return data.decode(declared), syntax_id, warnings
        except UnicodeDecodeError as exc:
            warnings.append(f"declared {syntax_id} ({declared}) but byte {exc.start} is "
                            f"0x{data[exc.start]:02x}; read as Latin-1")
            return data.decode("latin-1"), syntax_id, warnings
    try:
        return data.decode("utf-8"), syntax_id, warnings
    except UnicodeDecodeError as exc:
        warnings.append(f"{'declared ' + syntax_id if syntax_id else 'no syntax identifier'}"
                        f" but byte {exc.start} is not UTF-8; read as Latin-1")
        return data.decode("latin-1"), syntax_id, warnings


def _check_repertoire(text: str, syntax_id: str | None, warnings: list[str]) -> None:
    """Warn once when an ASCII file uses a character outside its declared level A or B.

    The service characters a UNA advises are allowed whatever they are. One regular
    expression search in C: about 1 ms per MB, and nothing when the file conforms.
    """
    allowed = _REPERTOIRES.get(syntax_id or "")
    if allowed is None:
        return
    start = len(text) - len(text.lstrip())
    if text.startswith("UNA", start):
        allowed += re.escape(text[start + 3:start + 9])
    found = re.search(f"[^{allowed}{_LAYOUT}]", text)
    if found is None:
        return
    offset = found.start()
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    level = syntax_id[-1] if syntax_id else "?"
    warnings.append(
        f"declared {syntax_id} but {found.group()!r} at line {line}, column {column} is "
        f"not in the level {level} character repertoire (0085 code 21); accepted as ASCII")
