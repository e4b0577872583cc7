"""Bytes to text, by the UNB syntax identifier (0001), never failing on a partner's bytes."""

from __future__ import annotations

import codecs

#: UNB 0001 -> Python codec (ISO 9735-1 annex: UNOA/UNOB level A/B are subsets of ASCII).
SYNTAX_CODECS = {
    "UNOA": "ascii", "UNOB": "ascii", "UNOC": "latin-1", "UNOD": "iso8859-2",
    "UNOE": "iso8859-5", "UNOF": "iso8859-7", "UNOG": "iso8859-3", "UNOH": "iso8859-4",
    "UNOI": "iso8859-6", "UNOJ": "iso8859-8", "UNOK": "iso8859-9", "UNOW": "utf-8",
    "UNOY": "utf-8",
}


def peek_syntax_id(data: bytes) -> str | None:
    """The syntax identifier of the first UNB, read from the raw bytes before decoding."""
    start = len(data) - len(data.lstrip())
    element = b"+"
    if data.startswith(b"UNA", start) and len(data) >= start + 9:
        element = data[start + 4:start + 5]
    found = data.find(b"UNB" + element)
    if found == -1:
        return None
    ident = data[found + 4:found + 8]
    return ident.decode("ascii", "replace") if ident.isalpha() else None


def decode(data: bytes) -> tuple[str, str | None, list[str]]:
    """(text, syntax identifier, warnings): decoded as declared, else UTF-8, else Latin-1."""
    warnings: list[str] = []
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
        warnings.append("the file starts with a UTF-8 byte order mark; it was ignored")
    syntax_id = peek_syntax_id(data)
    if data.isascii():
        return data.decode("ascii"), syntax_id, warnings
    declared = SYNTAX_CODECS.get(syntax_id or "")
    if syntax_id and declared is None:
        warnings.append(f"syntax identifier {syntax_id} is not one edigw knows; "
                        "read as UTF-8 (Latin-1 if not valid UTF-8)")
    if declared and declared != "utf-8":
        # Bytes valid as UTF-8 are almost never meant as Latin text: partners often declare
        # UNOA/UNOC and send UTF-8. Read what they sent, and say so.
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
