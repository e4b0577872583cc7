"""Typed conversions of CSV cells: numbers as people write them, dates by strftime formats,
GS1 keys with their check digit.

Each returns the value or raises ``CellError`` with a reason that reads after the cell's
place (``line 17, column "Qty" (3): 'ten' is not a number``).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from gateway.formats.mapping.convert import gs1_check_digit_ok

#: Cell types a CSV mapping names (``type:``); the default comes from the canonical field.
TYPES = frozenset({"text", "decimal", "date", "gtin", "gln"})

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
#: Spaces people and spreadsheets put between thousands (space, no-break, narrow no-break).
_SPACES = re.compile(r"[ \u00a0\u202f]")
#: strftime directives that carry a time of day: such a format gives a datetime.
_TIME_DIRECTIVES = re.compile(r"%[HIMSpf]")


class CellError(ValueError):
    """A cell whose text is not a value of the rule's type."""


def to_decimal(text: str, *, decimal_mark: str, thousands: str | None) -> Decimal:
    """``1.234,50`` with mark ',' and thousands '.' is 1234.50.

    A thousands separator is removed only when the mapping declares one; otherwise a mark
    that is not the decimal mark makes the cell an error rather than a guess (``1.234`` is
    1.234 or 1234 depending on the country).
    """
    cleaned = _SPACES.sub("", text)
    if thousands and thousands.strip():
        cleaned = cleaned.replace(thousands, "")
    other = "." if decimal_mark == "," else ","
    if other in cleaned:
        raise CellError(f"{text!r} is not a number (decimal mark {decimal_mark!r})")
    cleaned = cleaned.replace(decimal_mark, ".")
    if not _NUMBER.fullmatch(cleaned):
        raise CellError(f"{text!r} is not a number")
    try:
        return Decimal(cleaned)
    except InvalidOperation as exc:  # pragma: no cover - the pattern rules this out
        raise CellError(f"{text!r} is not a number") from exc


def has_time(fmt: str) -> bool:
    """Whether a strftime format reads a time of day (the value is then a datetime)."""
    return bool(_TIME_DIRECTIVES.search(fmt))


def to_date(text: str, formats: tuple[str, ...]) -> dt.date | dt.datetime:
    """The first of ``formats`` that reads ``text`` whole; a datetime when it has a time."""
    for fmt in formats:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if has_time(fmt) else parsed.date()
    shown = ", ".join(formats)
    raise CellError(f"{text!r} is not a date ({'format' if len(formats) == 1 else 'formats'} "
                    f"{shown})")


def to_gs1(text: str, kind: str) -> str:
    """A GTIN (8, 12, 13 or 14 digits) or GLN (13 digits) whose check digit is right."""
    lengths = (13,) if kind == "gln" else (8, 12, 13, 14)
    name = kind.upper()
    if not (text.isdigit() and text.isascii() and len(text) in lengths):
        shape = "13 digits" if kind == "gln" else "8, 12, 13 or 14 digits"
        raise CellError(f"{text!r} is not a {name} ({shape})")
    if not gs1_check_digit_ok(text):
        raise CellError(f"{name} {text} has a wrong check digit")
    return text
