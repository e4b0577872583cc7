"""Delimited text as rows: decoding, the delimiter, quoting and the line each row starts on.

Sans-IO: bytes in, ``Row`` values out. Nothing here knows about mappings or canonical
documents; ``mapping`` says which encoding and delimiter to use, ``apply`` reads the rows.
"""

from __future__ import annotations

import _csv
import codecs
import csv
import io
import re
from dataclasses import dataclass

from gateway.core.errors import PayloadError, Position

#: Delimiters tried when a mapping says ``delimiter: auto``, in order of preference on a tie
#: (a semicolon file with decimal commas also splits evenly on ',' into fewer fields).
DELIMITERS = (";", "\t", "|", ",")
#: How many records the delimiter and the sniff look at.
_SAMPLE_RECORDS = 50
#: Fields a one-record file needs to look like a table row rather than a sentence.
_ONE_ROW_FIELDS = 5

_BOM = codecs.BOM_UTF8
#: The first field of a record-type line (``H``, ``D``, ``LIN``, ``QTYLIN``, ``01``).
_RECORD_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,11}")
#: What a payload of another format starts with (XML, PDF, JSON, EDIFACT service segments).
_OTHER_FORMAT = re.compile(r"\s*(<|%PDF|\{|\[|UNA|UNB|UNH)")


@dataclass(slots=True)
class Row:
    """One record of the file: the 1-based line it starts on and its fields as read."""

    line: int
    values: list[str]

    def get(self, position: int) -> str:
        """The field at a 1-based position, stripped; '' when the row is shorter."""
        if 0 < position <= len(self.values):
            value = self.values[position - 1]
            # A quoted cell may hold line breaks: one notation for them, whatever the file's.
            return (value.replace("\r\n", "\n") if "\r" in value else value).strip()
        return ""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The text of a payload, the encoding it was read in and why (for the timeline)."""

    text: str
    encoding: str
    warning: str | None = None


def decode(data: bytes, *, encoding: str, fallback: str) -> Decoded:
    """The text of ``data``. A UTF-8 byte order mark always means UTF-8 (and is dropped).

    ``encoding`` ``auto``: UTF-8 when the bytes decode as UTF-8, else ``fallback`` with a
    warning (spreadsheets on Windows save Windows-1252). A declared encoding that does not fit
    the bytes is a PayloadError naming the line and column of the first bad byte.
    """
    if data.startswith(_BOM):
        warning = None
        if encoding not in ("auto", "utf-8"):
            warning = f"file starts with a UTF-8 byte order mark; read as UTF-8, not {encoding}"
        return Decoded(_strict(data, "utf-8", "utf-8", skip=3), "utf-8", warning)
    if encoding == "auto":
        try:
            return Decoded(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError as exc:
            text = _strict(data, fallback, fallback)
            line, column = _line_column(data, exc.start)
            return Decoded(text, fallback, f"file is not UTF-8 (byte 0x{data[exc.start]:02X} at "
                           f"line {line}, column {column}); read as {fallback}")
    return Decoded(_strict(data, encoding, encoding), encoding)


def _strict(data: bytes, codec: str, declared: str, skip: int = 0) -> str:
    try:
        return data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        bad = exc.start + skip
        line, column = _line_column(data, bad)
        raise PayloadError(
            f"line {line}: byte 0x{data[bad]:02X} at byte {column} is not "
            f"{declared} (the mapping's encoding)",
            position=Position(line=line, column=column), stage="parse") from exc


def _line_column(data: bytes, index: int) -> tuple[int, int]:
    """1-based line and byte column of ``data[index]`` (CR LF, LF and CR end a line)."""
    before = data[:index]
    line = before.count(b"\n") + (before.count(b"\r") - before.count(b"\r\n")) + 1
    start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
    return line, index - start + 1


def read_rows(text: str, *, delimiter: str, quote: str | None,
              limit: int | None = None) -> list[Row]:
    """Every non-blank record of ``text`` (or the first ``limit``), with the line it starts
    on.

    Quoted fields may hold the delimiter and line breaks (the record then spans lines).
    Broken quoting is a PayloadError naming the line: after it no row can be trusted.
    """
    reader = _reader(text, delimiter, quote)
    rows: list[Row] = []
    start = 1
    try:
        for values in reader:
            if any(v.strip() for v in values):
                rows.append(Row(start, values))
                if limit is not None and len(rows) >= limit:
                    break
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PayloadError(f"line {start}: the file cannot be read as delimited text "
                           f"({exc}); check the quoting", position=Position(line=start),
                           stage="parse") from exc
    return rows


def _reader(text: str, delimiter: str, quote: str | None) -> _csv.Reader:
    """A reader of ``text`` that refuses broken quoting (``strict``)."""
    if quote is None:
        return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                          quoting=csv.QUOTE_NONE, strict=True)
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote,
                      doublequote=True, strict=True)


def detect_delimiter(text: str, quote: str | None) -> str | None:
    """The delimiter among ``DELIMITERS`` that splits the first records most evenly into
    the most fields; None when none splits any record in two."""
    best: tuple[int, int, int] | None = None
    chosen = None
    for rank, delimiter in enumerate(DELIMITERS):
        counts = _field_counts(text, delimiter, quote)
        if not counts:
            continue
        mode = max(set(counts), key=lambda n: (counts.count(n), n))
        if mode < 2:
            continue
        score = (counts.count(mode), mode, -rank)
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def _field_counts(text: str, delimiter: str, quote: str | None) -> list[int]:
    counts: list[int] = []
    reader = _reader(text, delimiter, quote)
    try:
        for values in reader:
            if any(v.strip() for v in values):
                counts.append(len(values))
            if len(counts) >= _SAMPLE_RECORDS:
                break
    except csv.Error:
        return counts
    return counts


def looks_delimited(head: bytes) -> bool:
    """Whether the first bytes of a payload look like delimited text.

    True for several records that split evenly on one of ``DELIMITERS`` (a table), for
    record-type lines (``H;…`` / ``D;…``, ``LIN|…``) most of which split on one of them and
    begin with a short code, or for a whole file of one record with many fields. XML, PDF,
    JSON and EDIFACT are never taken, nor binary data.
    """
    if b"\x00" in head:
        return False
    text = head[3:] if head.startswith(_BOM) else head
    decoded = text.decode("utf-8", errors="replace")
    if _OTHER_FORMAT.match(decoded) or decoded.count("\ufffd") > len(decoded) // 20:
        return False
    if len(head) >= 4096:  # a head cut mid-record: leave the last, partial line out
        cut = max(decoded.rfind("\n"), decoded.rfind("\r"))
        decoded = decoded[:cut] if cut > 0 else ""
    whole = len(head) < 4096
    for delimiter in DELIMITERS:
        records = _records(decoded, delimiter)
        if len(records) == 1 and whole and len(records[0]) >= _ONE_ROW_FIELDS:
            return True  # a file of one row (an order of one line) with many columns
        if len(records) < 2:
            continue
        counts = {len(r) for r in records}
        if len(counts) == 1 and counts.pop() >= 2:
            return True
        split = [r for r in records if len(r) >= 2]
        if (len(records) >= 3 and len(split) * 5 >= len(records) * 4
                and all(_RECORD_TAG.fullmatch(r[0].strip()) for r in split)):
            return True
    return False


def _records(text: str, delimiter: str) -> list[list[str]]:
    records: list[list[str]] = []
    reader = _reader(text, delimiter, '"')
    try:
        for values in reader:
            if any(v.strip() for v in values):
                records.append(values)
            if len(records) >= _SAMPLE_RECORDS:
                break
    except csv.Error:
        return []
    return records
