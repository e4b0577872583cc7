"""The manager page's figures: order and invoiced value per week or month, per currency and
partner; forecasts against actual; the weekly share of orders received electronically; the
clients whose traffic dropped against their own 4-week average.

Dates are days in the console's zone (``gateway.core.zone.zone_of``): weeks (ISO 8601, from
Monday) and months are cut there, and a range ``first`` … ``last`` includes both days.

Cost: the values and the share are sums over ``document_value_days`` (the orders and
invoices of ``document_values`` summed per day, partner, type, format and currency; amounts
read once from the payloads, ``gateway.store.values``) and over ``document_value_weeks`` (the
same per week: a range's whole weeks are read there, its other days from the days), grouped
in SQL by week or month over the range of their keys; no payload is parsed twice and no transmission outside the range is
read. Each figure refreshes the rollup first; a page showing several calls ``refresh`` once
and passes ``refresh=False``. Traffic for the dropped clients is a sum over
``traffic_days`` (inbound transmissions and their documents per day and partner,
``gateway.store.traffic``): five weeks of a few rows per partner, not their transmissions.

- **Order value**: as ``/api/stats`` (``stats.order_amount``), orders partners sent us.
- **Invoiced value**: invoices' net totals (``values.invoice_amount``, credit notes
  negative), apart for those we sent a partner (``invoiced_sent``) and those it sent us
  (``invoiced_received``).
- **Received electronically**: an order whose transmission's format is not one a person
  produces (``manual``: ``gateway.formats.registry.MANUAL_FORMATS``, passed in by the
  caller since the store does not import the formats).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store import traffic
from gateway.store import values as rollup
from gateway.store.db import Store
from gateway.store.forecasts import ForecastBook
from gateway.store.records import aware

Period = Literal["week", "month"]
Basis = Literal["orders", "invoiced"]
_E4 = Decimal(10000)
#: The longest range a request may ask for, in days (bounds the work of one request).
MAX_DAYS = 3 * 366 + 31


class RangeError(ValueError):
    """A date range refused: which bound, and why."""

    def __init__(self, reason: str, *, field: str | None = None, value: object = None) -> None:
        self.reason, self.field, self.value = reason, field, value
        super().__init__(f"{field} {value!s}: {reason}" if field else reason)


def check_range(first: dt.date, last: dt.date) -> None:
    """``first`` … ``last`` in order and at most ``MAX_DAYS`` long, else ``RangeError``."""
    if last < first:
        raise RangeError("comes before from", field="to", value=last.isoformat())
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"a range is at most {MAX_DAYS} days", field="from",
                         value=first.isoformat())


def period_start(day: dt.date, period: Period) -> dt.date:
    """The first day of the week (Monday) or month holding ``day``."""
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"period must be 'week' or 'month', not {period!r}")


def next_start(start: dt.date, period: Period) -> dt.date:
    """The first day of the period after the one starting on ``start``."""
    if period == "week":
        return start + dt.timedelta(days=7)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def period_label(start: dt.date, period: Period) -> str:
    """``2026-W49`` (ISO week) or ``2026-12``."""
    if period == "week":
        iso = start.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return start.strftime("%Y-%m")


def periods(first: dt.date, last: dt.date, period: Period) -> list[dt.date]:
    """The starts of every period touching ``first`` … ``last``, in order."""
    out, at = [], period_start(first, period)
    while at <= last:
        out.append(at)
        at = next_start(at, period)
    return out


def midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The start of ``day`` in ``zone``, in UTC."""
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _money(e4: int) -> Decimal:
    return (Decimal(e4) / _E4).quantize(Decimal("0.01")) if e4 % 100 == 0 else Decimal(e4) / _E4


@dataclass(frozen=True, slots=True)
class ValueRow:
    """Orders and invoices of one period and currency: of one partner, or of all (None)."""

    period: dt.date
    label: str
    partner_id: str | None
    currency: str | None
    orders: int
    order_value: Decimal
    invoices_sent: int
    invoiced_sent: Decimal
    invoices_received: int
    invoiced_received: Decimal

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["period"] = self.period.isoformat()
        for k in ("order_value", "invoiced_sent", "invoiced_received"):
            d[k] = str(d[k])
        return d


@dataclass(frozen=True, slots=True)
class ShareRow:
    """Orders of one week, and how many arrived electronically."""

    period: dt.date
    label: str
    orders: int
    electronic: int
    manual: int

    @property
    def share(self) -> float | None:
        """Electronic orders in per cent (one decimal), None without orders."""
        return round(100 * self.electronic / self.orders, 1) if self.orders else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "period": self.period.isoformat(), "share": self.share}


@dataclass(frozen=True, slots=True)
class GapRow:
    """A partner's forecast for a month and currency against what came (``basis``)."""

    partner_id: str
    month: str
    currency: str
    forecast: Decimal
    actual: Decimal
    complete: bool  # the month is over (else: so far)
    updated_by: str
    updated_at: dt.datetime

    @property
    def gap(self) -> Decimal:
        """Actual minus forecast: negative when below the forecast."""
        return self.actual - self.forecast

    @property
    def gap_percent(self) -> float | None:
        """The gap in per cent of the forecast (one decimal); None for a forecast of 0."""
        return round(float(100 * self.gap / self.forecast), 1) if self.forecast else None

    def as_dict(self) -> dict[str, Any]:
        return {"partner_id": self.partner_id, "month": self.month, "currency": self.currency,
                "forecast": str(self.forecast), "actual": str(self.actual),
                "gap": str(self.gap), "gap_percent": self.gap_percent,
                "complete": self.complete, "updated_by": self.updated_by,
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True, slots=True)
class DropRow:
    """A partner whose last week is below ``threshold`` % of its previous weeks' average."""

    partner_id: str
    week: str  # the week compared, 2026-W49
    documents: int  # that week
    transmissions: int  # that week
    average: float  # documents per week over the weeks before
    before: int  # documents in the weeks before, in all
    last_received_at: dt.datetime | None  # its last file in these weeks

    @property
    def percent(self) -> float:
        """That week's documents in per cent of the average (one decimal)."""
        return round(100 * self.documents / self.average, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percent": self.percent,
                "average": round(self.average, 2),
                "last_received_at": (self.last_received_at.isoformat()
                                     if self.last_received_at else None)}


def refresh(store: Store, zone: ZoneInfo, first: dt.date) -> None:
    """Bring the value rollup up to date for every range starting on or after ``first``:
    what each figure does first, unless told (``refresh=False``) that its caller did it
    already (a page showing several figures refreshes once)."""
    # A document is created after its transmission is received: refreshing from the day
    # before the range catches every document of the range.
    rollup.refresh(store, zone, midnight(first, zone) - dt.timedelta(days=1))


def _split(first: dt.date, last: dt.date, grain: Period | None
           ) -> tuple[list[dt.date], list[tuple[dt.date, dt.date]]]:
    """The Mondays of the whole weeks of ``first`` … ``last`` read from the week sums (for
    months, only weeks within one month), and the spans of the other days (both included),
    read from the day sums."""
    weeks: list[dt.date] = []
    monday = period_start(first + dt.timedelta(days=6), "week")  # the first on or after
    while monday + dt.timedelta(days=6) <= last:
        sunday = monday + dt.timedelta(days=6)
        if grain != "month" or monday.month == sunday.month:
            weeks.append(monday)
        monday += dt.timedelta(days=7)
    spans, at = [], first
    for monday in weeks:
        if at < monday:
            spans.append((at, monday - dt.timedelta(days=1)))
        at = monday + dt.timedelta(days=7)
    if at <= last:
        spans.append((at, last))
    return weeks, spans


def _sums(store: Store, zone: ZoneInfo, first: dt.date, last: dt.date,
          partner: str | None, *, grain: Period | None, by_partner: bool,
          types: Collection[str] = rollup.VALUED_TYPES, by_format: bool = False,
          fresh: bool = True) -> list[Any]:
    """(start, partner, type, direction, format, currency, documents, amount × 10⁴) of the
    counted documents of the range, grouped in SQL per week or month (``grain``; None: the
    whole range), per partner (``by_partner``) and per format (``by_format``; else None),
    after bringing the rollup up to date
    (unless ``fresh`` is False: the caller did, from ``first`` or before). A group may come
    twice (from the week sums and from the day sums): the callers add them up."""
    check_range(first, last)
    if fresh:
        refresh(store, zone, first)
    weeks, spans = _split(first, last, grain)
    out: list[Any] = []
    with store.engine.connect() as conn:
        if spans:
            v = s.document_value_days
            start = v.c.week if grain == "week" else v.c.month if grain == "month" else None
            grouped: list[Any] = [c for c in (start, v.c.partner_id if by_partner else None,
                                              v.c.format if by_format else None)
                                  if c is not None] + [v.c.doc_type, v.c.direction,
                                                       v.c.currency]
            q: Any = (sa.select((start if start is not None else sa.literal(first, sa.Date))
                                .label("start"),
                                (v.c.partner_id if by_partner
                                 else sa.literal(None, sa.String)).label("partner_id"),
                                v.c.doc_type, v.c.direction,
                                (v.c.format if by_format else sa.literal(None, sa.String))
                                .label("format"), v.c.currency,
                                sa.func.sum(v.c.documents).label("n"),
                                sa.func.sum(v.c.amount_e4).label("e4"))
                      .where(sa.or_(*[sa.and_(v.c.day >= a, v.c.day <= b)
                                      for a, b in spans]))
                      .where(v.c.doc_type.in_(tuple(types)))
                      .group_by(*grouped))
            if partner:
                q = q.where(v.c.partner_id == partner)
            out += conn.execute(q)
        if weeks:
            w = s.document_value_weeks
            start = w.c.week if grain == "week" else w.c.month if grain == "month" else None
            grouped = [c for c in (start, w.c.partner_id if by_partner else None,
                                   w.c.format if by_format else None)
                       if c is not None] + [w.c.doc_type, w.c.direction, w.c.currency]
            q = (sa.select((start if start is not None else sa.literal(first, sa.Date))
                           .label("start"),
                           (w.c.partner_id if by_partner else sa.literal(None, sa.String))
                           .label("partner_id"),
                           w.c.doc_type, w.c.direction,
                           (w.c.format if by_format else sa.literal(None, sa.String))
                           .label("format"), w.c.currency,
                           sa.func.sum(w.c.documents).label("n"),
                           sa.func.sum(w.c.amount_e4).label("e4"))
                 .where(w.c.week.in_(weeks))
                 .where(w.c.doc_type.in_(tuple(types)))
                 .group_by(*grouped))
            if partner:
                q = q.where(w.c.partner_id == partner)
            out += conn.execute(q)
    return out


def _value_rows(found: list[Any], label: Any) -> list[ValueRow]:
    acc: dict[tuple[dt.date, str | None, str | None], list[int]] = defaultdict(
        lambda: [0, 0, 0, 0, 0, 0])
    for r in found:
        if r.doc_type == "order" and r.direction != "in":
            continue  # orders partners sent us, as /api/stats counts them
        cell = acc[(r.start, r.partner_id, r.currency or None)]
        at = 0 if r.doc_type == "order" else 2 if r.direction == "out" else 4
        cell[at] += int(r.n)
        cell[at + 1] += int(r.e4 or 0)
    rows = [ValueRow(period=k[0], label=label(k[0]), partner_id=k[1], currency=k[2],
                     orders=c[0], order_value=_money(c[1]), invoices_sent=c[2],
                     invoiced_sent=_money(c[3]), invoices_received=c[4],
                     invoiced_received=_money(c[5])) for k, c in acc.items()]
    return sorted(rows, key=lambda r: (r.period, r.partner_id or "", r.currency or ""))


def values(store: Store, zone: ZoneInfo, first: dt.date, last: dt.date, period: Period,
           partner: str | None = None, *, by_partner: bool = True,
           refresh: bool = True) -> list[ValueRow]:
    """Order value and invoiced value per period and currency, per partner (or in total
    with ``by_partner=False``), sorted by period, partner and currency. ``refresh=False``:
    the caller brought the rollup up to date (``refresh``) from ``first`` or before."""
    period_start(first, period)  # checks the period's name
    found = _sums(store, zone, first, last, partner, grain=period, by_partner=by_partner,
                  fresh=refresh)
    return _value_rows(found, lambda start: period_label(start, period))


def range_values(store: Store, zone: ZoneInfo, first: dt.date, last: dt.date,
                 partner: str | None = None, *, refresh: bool = True) -> list[ValueRow]:
    """Order value and invoiced value of each partner and currency over the whole range
    (``period`` is ``first``, ``label`` "first … last"), largest order value first."""
    found = _sums(store, zone, first, last, partner, grain=None, by_partner=True,
                  fresh=refresh)
    rows = _value_rows(found, lambda _start: f"{first.isoformat()} … {last.isoformat()}")
    return sorted(rows, key=lambda r: (r.currency or "", -r.order_value, r.partner_id or ""))


def electronic_share(store: Store, zone: ZoneInfo, first: dt.date, last: dt.date, *,
                     manual: Collection[str], partner: str | None = None,
                     refresh: bool = True) -> list[ShareRow]:
    """Orders per week, electronic (a format not in ``manual``) and manual; every week of
    the range, those without orders included."""
    acc: dict[dt.date, list[int]] = {w: [0, 0] for w in periods(first, last, "week")}
    for r in _sums(store, zone, first, last, partner, grain="week", by_partner=False,
                   types=("order",), by_format=True, fresh=refresh):
        if r.direction != "in":
            continue
        cell = acc[r.start]
        cell[0 if r.format and r.format not in manual else 1] += int(r.n)
    return [ShareRow(period=w, label=period_label(w, "week"), orders=c[0] + c[1],
                     electronic=c[0], manual=c[1]) for w, c in sorted(acc.items())]


def month_days(first_month: str, last_month: str) -> tuple[dt.date, dt.date]:
    """The first day of ``first_month`` and the last day of ``last_month`` (YYYY-MM)."""
    start = dt.date.fromisoformat(first_month + "-01")
    end = next_start(dt.date.fromisoformat(last_month + "-01"), "month") - dt.timedelta(days=1)
    return start, end


def forecast_gaps(store: Store, zone: ZoneInfo, first_month: str, last_month: str, *,
                  today: dt.date, partner: str | None = None,
                  basis: Basis = "orders", refresh: bool = True) -> list[GapRow]:
    """Each forecast of months ``first_month`` … ``last_month`` against the whole month's
    actual value in its currency: the order value (``basis="orders"``) or the value
    invoiced to the partner (``"invoiced"``). ``refresh=False``: the caller brought the
    rollup up to date from the first day of ``first_month`` or before."""
    found = ForecastBook(store).list(first_month, last_month, partner)
    if not found:
        return []
    start, end = month_days(first_month, last_month)
    actual: dict[tuple[str | None, str, str | None], Decimal] = {}
    for r in values(store, zone, start, end, "month", partner, refresh=refresh):
        actual[(r.partner_id, r.label, r.currency)] = (
            r.order_value if basis == "orders" else r.invoiced_sent)
    return [GapRow(partner_id=f.partner_id, month=f.month, currency=f.currency,
                   forecast=f.amount,
                   actual=actual.get((f.partner_id, f.month, f.currency), Decimal("0.00")),
                   complete=month_days(f.month, f.month)[1] < today,
                   updated_by=f.updated_by, updated_at=f.updated_at) for f in found]


def dropped_clients(store: Store, zone: ZoneInfo, last: dt.date, *, threshold: float = 50,
                    weeks: int = 4, partner: str | None = None) -> list[DropRow]:
    """Partners whose documents in the last whole week ending on or before ``last`` are
    below ``threshold`` % of their weekly average over the ``weeks`` weeks before; no
    volume floor (one document a month that stops counts). Worst drop first."""
    end = period_start(last + dt.timedelta(days=1), "week")  # the Monday after that week
    week = end - dt.timedelta(days=7)
    start = week - dt.timedelta(days=7 * weeks)
    traffic.refresh(store, zone, start, end - dt.timedelta(days=1))
    td = s.traffic_days
    recent = td.c.day >= week
    q = (sa.select(td.c.partner_id,
                   sa.func.sum(sa.case((recent, td.c.documents), else_=0)).label("docs"),
                   sa.func.sum(sa.case((recent, td.c.transmissions), else_=0)).label("files"),
                   sa.func.sum(sa.case((recent, 0), else_=td.c.documents)).label("before"),
                   sa.func.max(td.c.last_received_at).label("last_at"))
         .where(td.c.day >= start).where(td.c.day < end)
         .group_by(td.c.partner_id))
    if partner:
        q = q.where(td.c.partner_id == partner)
    with store.engine.connect() as conn:
        found = list(conn.execute(q))
    rows = []
    for r in found:
        before = int(r.before or 0)
        if not before:
            continue  # nothing to drop from: new, or silent all along
        average = before / weeks
        if int(r.docs or 0) * 100 < threshold * average:
            rows.append(DropRow(partner_id=r.partner_id, week=period_label(week, "week"),
                                documents=int(r.docs or 0), transmissions=int(r.files or 0),
                                average=average, before=before,
                                last_received_at=aware(r.last_at) if r.last_at else None))
    return sorted(rows, key=lambda r: (r.percent, -r.average, r.partner_id))


__all__ = ["DropRow", "GapRow", "RangeError", "ShareRow", "ValueRow", "check_range",
           "dropped_clients", "electronic_share", "forecast_gaps", "month_days",
           "period_label", "period_start", "periods", "range_values", "refresh", "values"]
