"""Forecasts: what a partner is expected to order per month and currency, entered in the
console or the API, or imported from CSV (``partner_id,month,currency,amount``).

``check_forecast`` and ``parse_csv`` refuse a bad value with a ``ForecastError`` naming the
line, the field and the value; ``ForecastBook`` writes (one transaction per call: an import
is all or nothing) and lists them. Amounts are exact decimals, kept as text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from gateway.core import clock
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: The columns of an import, in this order; an export adds the comparison after them.
CSV_COLUMNS = ("partner_id", "month", "currency", "amount")
#: Columns an export adds, which an import accepts and ignores (an export re-imports).
EXPORT_COLUMNS = ("actual", "gap", "gap_percent", "complete")
#: Rows one import may hold.
MAX_ROWS = 20000
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MAX_AMOUNT = Decimal("1e15")


class ForecastError(ValueError):
    """A forecast refused: which line (of an import), field and value, and why."""

    def __init__(self, reason: str, *, field: str | None = None, value: object = None,
                 line: int | None = None) -> None:
        self.reason, self.field, self.value, self.line = reason, field, value, line
        where = f"line {line}: " if line is not None else ""
        what = f"{field} {str(value)[:60]!r}: " if field else ""
        super().__init__(f"{where}{what}{reason}")


@dataclass(frozen=True, slots=True)
class NewForecast:
    """A forecast to write: checked, normalised."""

    partner_id: str
    month: str  # YYYY-MM
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Forecast:
    """A stored forecast, who set it and when."""

    partner_id: str
    month: str
    currency: str
    amount: Decimal
    updated_at: dt.datetime
    updated_by: str

    def as_dict(self) -> dict[str, Any]:
        return {"partner_id": self.partner_id, "month": self.month, "currency": self.currency,
                "amount": str(self.amount), "updated_at": self.updated_at.isoformat(),
                "updated_by": self.updated_by}


def check_month(text: str, *, field: str = "month", line: int | None = None) -> str:
    """``YYYY-MM`` (a real month), or ``ForecastError``."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise ForecastError("not a month: write YYYY-MM", field=field, value=text, line=line)
    return m.group(0)


def check_forecast(partner_id: str, month: str, currency: str, amount: str | Decimal, *,
                   known: Container[str] | None = None, line: int | None = None
                   ) -> NewForecast:
    """One forecast checked: a partner of ``known`` (when given), a month, an ISO 4217
    currency (upper case), an amount from 0 up to 10¹⁵ with at most 4 decimals."""
    pid = (partner_id or "").strip()
    if not pid or len(pid) > 64:
        raise ForecastError("a partner id is required (at most 64 characters)",
                            field="partner_id", value=partner_id, line=line)
    if known is not None and pid not in known:
        raise ForecastError("no such partner", field="partner_id", value=pid, line=line)
    cur = (currency or "").strip().upper()
    if not _CURRENCY.match(cur):
        raise ForecastError("not an ISO 4217 currency code (three letters)", field="currency",
                            value=currency, line=line)
    try:
        value = Decimal(str(amount).strip().replace(" ", ""))
    except (InvalidOperation, ValueError):
        raise ForecastError("not a number", field="amount", value=amount, line=line) from None
    if not value.is_finite() or value < 0 or value >= _MAX_AMOUNT:
        raise ForecastError("must be a number from 0 to 10^15", field="amount", value=amount,
                            line=line)
    if value != value.quantize(Decimal("0.0001")):
        raise ForecastError("at most 4 decimals", field="amount", value=amount, line=line)
    return NewForecast(pid, check_month(month, line=line), cur, value)


def parse_csv(text: str, *, known: Container[str] | None = None) -> list[NewForecast]:
    """The forecasts of a CSV with the header ``partner_id,month,currency,amount`` (comma or
    semicolon separated; the comparison columns of an export are ignored). Every line is
    checked before any is written; the first bad one is the error."""
    body = text.lstrip("\ufeff")
    first = body.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS and h not in EXPORT_COLUMNS]
    if missing or unknown:
        raise ForecastError(f"the header must name {', '.join(CSV_COLUMNS)}"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; unknown {', '.join(unknown)}" if unknown else ""),
                            line=1)
    at = {c: header.index(c) for c in CSV_COLUMNS}
    out: dict[tuple[str, str, str], NewForecast] = {}
    for n, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ForecastError(f"{len(row)} fields, the header has {len(header)}", line=n)
        f = check_forecast(*(row[at[c]] for c in CSV_COLUMNS), known=known, line=n)
        key = (f.partner_id, f.month, f.currency)
        if key in out:
            raise ForecastError(f"{'/'.join(key)} is given twice", line=n)
        out[key] = f
        if len(out) > MAX_ROWS:
            raise ForecastError(f"more than {MAX_ROWS} forecasts in one import", line=n)
    return list(out.values())


class ForecastBook:
    """The forecasts of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, items: Sequence[NewForecast], *, by: str) -> int:
        """Write ``items`` (replacing those of the same partner, month and currency) in one
        transaction; how many."""
        f = s.forecasts
        now = clock.now()
        with self.store._begin() as conn:
            for it in items:
                conn.execute(f.delete().where(f.c.partner_id == it.partner_id)
                             .where(f.c.month == it.month).where(f.c.currency == it.currency))
            if items:
                conn.execute(f.insert(), [dict(partner_id=it.partner_id, month=it.month,
                                               currency=it.currency, amount=str(it.amount),
                                               updated_at=now, updated_by=by[:64])
                                          for it in items])
        return len(items)

    def delete(self, partner_id: str, month: str, currency: str) -> bool:
        """Remove one forecast; whether there was one."""
        f = s.forecasts
        with self.store._begin() as conn:
            done = conn.execute(f.delete().where(f.c.partner_id == partner_id)
                                .where(f.c.month == month)
                                .where(f.c.currency == currency.upper()))
        return bool(done.rowcount)

    def _query(self, first: str | None, last: str | None, partner: str | None) -> Any:
        f = s.forecasts
        q = sa.select(f)
        if first:
            q = q.where(f.c.month >= first)
        if last:
            q = q.where(f.c.month <= last)
        if partner:
            q = q.where(f.c.partner_id == partner)
        return q

    def list(self, first: str | None = None, last: str | None = None,
             partner: str | None = None) -> list[Forecast]:
        """The forecasts of months ``first`` … ``last`` (YYYY-MM, both included), by month,
        partner and currency."""
        f = s.forecasts
        q = self._query(first, last, partner).order_by(f.c.month, f.c.partner_id, f.c.currency)
        with self.store.engine.connect() as conn:
            return [Forecast(r.partner_id, r.month, r.currency, Decimal(r.amount),
                             aware(r.updated_at), r.updated_by) for r in conn.execute(q)]


__all__ = ["CSV_COLUMNS", "Forecast", "ForecastBook", "ForecastError", "NewForecast",
           "check_forecast", "check_month", "parse_csv"]
