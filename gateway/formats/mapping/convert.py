"""Typed conversions named in mapping files: date, date_end, decimal, gtin, gln (plus code lists).

Each takes the raw text and returns the value, or raises ConversionError (the caller turns
it into a MappingError naming field and position); ``gtin`` and ``gln`` return None with a
warning instead, because a bad check digit should not stop an order.

The same few dates, prices and article numbers come back in message after message, so each
conversion remembers its recent results (values are immutable; errors are not remembered).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from gateway.core.errors import MappingError

TYPES = frozenset({"text", "date", "date_end", "decimal", "gtin", "gln"})

_DECIMAL = re.compile(r"[+-]?(\d+[.,]?\d*|[.,]\d+)")


class ConversionError(MappingError, ValueError):
    """A value that cannot be converted to the mapping's type."""


#: Results remembered per conversion; a cache that reaches the limit starts again empty.
#: ``apply`` reads ``known_decimals``, ``known_gtins`` and ``known_glns`` directly (never
#: writes them) to skip two calls per value in the usual case.
_CACHE_LIMIT = 4096
known_decimals: dict[str, Decimal] = {}
known_gtins: dict[str, tuple[str | None, str | None]] = {}
known_glns: dict[str, tuple[str | None, str | None]] = {}
_dates: dict[tuple[str, str | None, bool], tuple[dt.date | dt.datetime, str | None]] = {}


#: Longest value the caches keep, and longest text read as a number: a payload's value of
#: megabytes is neither remembered (4,096 of them would pin gigabytes in the process) nor
#: converted.
_CACHED_LENGTH = 64


_Key = TypeVar("_Key", str, tuple[str, str | None, bool])
_Value = TypeVar("_Value")


def _remember(cache: dict[_Key, _Value], key: _Key, value: _Value) -> _Value:
    if len(key if isinstance(key, str) else key[0]) > _CACHED_LENGTH:
        return value
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut when it is long."""
    return repr(value) if len(value) <= 40 else f"{value[:32]!r}… ({len(value)} characters)"


def to_decimal(value: str, decimal_mark: str = ".") -> Decimal:
    """A decimal written with the interchange's mark; ``.`` and ``,`` are both accepted."""
    known = known_decimals.get(value)
    if known is not None:
        return known
    if len(value) > _CACHED_LENGTH and len(value.strip()) > _CACHED_LENGTH:
        raise ConversionError(f"{_shown(value)} is too long to be a decimal number")
    if value.isascii() and value.replace(".", "", 1).isdigit():
        # Unsigned digits with at most one '.': what the pattern below accepts, read the
        # same way, without the pattern (most values of a file are seen once: amounts).
        return _remember(known_decimals, value, Decimal(value))
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise ConversionError(f"{_shown(value)} is not a decimal number")
    try:
        number = Decimal(text.replace(",", "."))
    except InvalidOperation as exc:  # pragma: no cover - the pattern already rules this out
        raise ConversionError(f"{_shown(value)} is not a decimal number") from exc
    return _remember(known_decimals, value, number)


# 2379 date/time/period format codes (UNCL 2379) edigw reads.
_FORMATS: dict[str, tuple[str, bool]] = {
    "102": ("%Y%m%d", False),
    "101": ("%y%m%d", False),
    "203": ("%Y%m%d%H%M", True),
    "204": ("%Y%m%d%H%M%S", True),
    "201": ("%y%m%d%H%M", True),
}
_RANGES = {"718": "102", "719": "203", "720": "101"}
#: Digits of one date of each range's format, to split a range written without its hyphen.
_DIGITS = {"102": 8, "203": 12, "101": 6}
_GUESS_BY_LENGTH = {8: "102", 12: "203", 14: "204", 6: "101"}
DATE_FORMATS = frozenset(_FORMATS) | frozenset(_RANGES)


def to_date(value: str, format_code: str | None, *,
            end: bool = False) -> tuple[dt.date | dt.datetime, str | None]:
    """(date or datetime, warning) for ``value`` in 2379 format ``format_code``.

    A range (718, 719, 720) gives its start, or its end with ``end`` (the ``date_end`` type:
    a validity period's last day); a single date is the same either way. Without a format
    code the length decides (8 digits: 102, 12: 203) and a warning says so.
    """
    key = (value, format_code, end)
    known = _dates.get(key)
    if known is not None:
        return known
    text = value.strip()
    warning = None
    code = (format_code or "").strip()
    if not code:
        code = _GUESS_BY_LENGTH.get(len(text), "")
        if not code:
            raise ConversionError(f"date {_shown(value)} has no format qualifier (2379) and its "
                                  "length does not tell")
        warning = f"date {_shown(value)} has no format qualifier (2379); read as {code}"
    if code in _RANGES:
        code = _RANGES[code]
        if "-" in text:
            text = text.split("-", 1)[1 if end else 0]
        elif len(text) == 2 * _DIGITS[code]:
            # EANCOM writes 718 without the hyphen: DTM+273:2024010120241231:718
            # (EANCOM 1997 PRICAT DTM example), the two dates side by side.
            half = len(text) // 2
            text = text[half:] if end else text[:half]
    if code not in _FORMATS:
        raise ConversionError(f"date format qualifier {code} (2379) is not one edigw reads "
                              f"({', '.join(sorted(DATE_FORMATS))})")
    pattern, has_time = _FORMATS[code]
    try:
        if code == "102" and len(text) == 8 and text.isdigit() and text.isascii():
            # CCYYMMDD, by far the most common: what strptime("%Y%m%d") gives, 20 x faster.
            result: dt.date | dt.datetime = dt.date(int(text[:4]), int(text[4:6]),
                                                    int(text[6:]))
        else:
            parsed = dt.datetime.strptime(text, pattern)
            result = parsed if has_time else parsed.date()
    except ValueError as exc:
        raise ConversionError(f"{_shown(value)} is not a date in format {code}") from exc
    return _remember(_dates, key, (result, warning))


def gs1_check_digit_ok(digits: str) -> bool:
    """True when the last digit is the GS1 mod-10 check digit of the others (``digits``:
    ASCII digits only, as the callers have checked)."""
    # Weights 3, 1, 3 … from the digit left of the check digit (GS1 General Specifications 7.9).
    # Summed as ASCII codes (each digit is its code minus 48): no int() per digit.
    codes = digits.encode("ascii")
    threes, ones = codes[-2::-2], codes[-3::-2]
    total = 3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)
    return (10 - total % 10) % 10 == codes[-1] - 48


def to_gtin(value: str) -> tuple[str | None, str | None]:
    """(GTIN, None) when 8, 12, 13 or 14 digits with a right check digit, else (None, warning)."""
    return _gs1_key(value, "GTIN", "8, 12, 13 or 14 digits", (8, 12, 13, 14), known_gtins)


def to_gln(value: str) -> tuple[str | None, str | None]:
    """(GLN, None) when 13 digits with a right check digit, else (None, warning)."""
    return _gs1_key(value, "GLN", "13 digits", (13,), known_glns)


def _gs1_key(value: str, name: str, shape: str, lengths: tuple[int, ...],
             cache: dict[str, tuple[str | None, str | None]]) -> tuple[str | None, str | None]:
    known = cache.get(value)
    if known is not None:
        return known
    text = value.strip()
    result: tuple[str | None, str | None]
    if not (text.isdigit() and text.isascii() and len(text) in lengths):
        result = None, f"{_shown(value)} is not a {name} ({shape}); left empty"
    elif not gs1_check_digit_ok(text):
        result = None, f"{name} {text} has a wrong check digit; left empty"
    else:
        result = text, None
    return _remember(cache, value, result)
