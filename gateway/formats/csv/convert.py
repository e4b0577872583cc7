"""Typed conversions of CSV cells: numbers as people write them, dates by strftime formats,
GS1 keys with their check digit.

Each returns the value or raises ``CellError`` with a reason that reads after the cell's
place (``line 17, column "Qty" (3): 'ten' is not a number``).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.core.errors import MappingError
from gateway.formats.mapping.convert import gs1_check_digit_ok

#: Cell types a CSV mapping names (``type:``); the default comes from the canonical field.
TYPES = frozenset({"text", "decimal", "date", "gtin", "gln"})

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
#: Spaces people and spreadsheets put between thousands (space, no-break, narrow no-break).
_SPACES = re.compile(r"[ \u00a0\u202f]")
#: strftime directives that carry a time of day: such a format gives a datetime.
_TIME_DIRECTIVES = re.compile(r"%[HIMSpf]")


class CellError(MappingError, ValueError):
    """A cell whose text is not a value of the rule's type."""


#: The same dates and prices come back on row after row of a price list: results are
#: remembered (values are immutable; errors are not remembered). A full cache starts again.
_CACHE_LIMIT = 4096
_decimals: dict[tuple[str, str, str | None], Decimal] = {}
_dates: dict[tuple[str, tuple[str, ...]], dt.date | dt.datetime] = {}


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def to_decimal(text: str, *, decimal_mark: str, thousands: str | None) -> Decimal:
    """``1.234,50`` with mark ',' and thousands '.' is 1234.50.

    A thousands separator is removed only when the mapping declares one; otherwise a mark
    that is not the decimal mark makes the cell an error rather than a guess (``1.234`` is
    1.234 or 1234 depending on the country).
    """
    known = _decimals.get((text, decimal_mark, thousands))
    if known is not None:
        return known
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
        number = Decimal(cleaned)
    except InvalidOperation as exc:  # pragma: no cover - the pattern rules this out
        raise CellError(f"{text!r} is not a number") from exc
    _remember(_decimals, (text, decimal_mark, thousands), number)
    return number


def has_time(fmt: str) -> bool:
    """Whether a strftime format reads a time of day (the value is then a datetime)."""
    return bool(_TIME_DIRECTIVES.search(fmt))


def to_date(text: str, formats: tuple[str, ...]) -> dt.date | dt.datetime:
    """The first of ``formats`` that reads ``text`` whole; a datetime when it has a time."""
    known = _dates.get((text, formats))
    if known is not None:
        return known
    for fmt in formats:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        value = parsed if has_time(fmt) else parsed.date()
        _remember(_dates, (text, formats), value)
        return value
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
