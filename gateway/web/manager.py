"""The manager page (``/manager``, viewer and above): order and invoiced value per week or
month, forecasts against actual, the share of orders received electronically, the clients
whose traffic dropped; a date range, CSV export of each table (the API's ``.csv`` routes)
and charts on a scale one bulk day cannot flatten (``gateway.web.charts``).

Operators and admins also enter a forecast or import a CSV of them here. The tables the
page shows and the API's CSV answers are built by the same functions below, so the page and
an export never disagree. Days and months are those of the console's zone.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from starlette.responses import RedirectResponse, Response

from gateway.core import clock
from gateway.core.status import Role
from gateway.core.zone import shown, zone_of
from gateway.formats.registry import MANUAL_FORMATS
from gateway.store.audit import AuditLog
from gateway.store.forecasts import ForecastBook, ForecastError, check_forecast, parse_csv
from gateway.store.read import manager as figures
from gateway.store.read.manager import DropRow, GapRow, ShareRow, ValueRow
from gateway.web import charts

if TYPE_CHECKING:
    from gateway.web.pages import Page

#: The range shown when none is asked: the 13 weeks up to today.
DEFAULT_DAYS = 13 * 7
#: Currencies drawn as charts (the largest by order value); the tables list them all.
CHARTED_CURRENCIES = 3


def today(zone: ZoneInfo) -> dt.date:
    """Today in the console's zone."""
    return clock.now().astimezone(zone).date()


def date_range(zone: ZoneInfo, first: dt.date | None, last: dt.date | None
               ) -> tuple[dt.date, dt.date]:
    """``first`` … ``last`` with the defaults filled in (the last 13 weeks up to today) and
    checked (``figures.RangeError``)."""
    last = last or today(zone)
    first = first or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    figures.check_range(first, last)
    return first, last


def scale_of(text: str | None) -> charts.Scale:
    """The chart scale asked for; ``capped`` (outliers cut and marked) by default."""
    if text == "linear":
        return "linear"
    if text == "log":
        return "log"
    return "capped"


def months_of(first: dt.date, last: dt.date) -> tuple[str, str]:
    """The first and last month (YYYY-MM) a range touches."""
    return first.strftime("%Y-%m"), last.strftime("%Y-%m")


# -- the tables (page and CSV) ----------------------------------------------------------------

VALUE_COLUMNS = ("period", "start", "partner_id", "currency", "orders", "order_value",
                 "invoices_sent", "invoiced_sent", "invoices_received", "invoiced_received")
SHARE_COLUMNS = ("week", "start", "orders", "electronic", "manual", "share_percent")
GAP_COLUMNS = ("partner_id", "month", "currency", "amount", "actual", "gap", "gap_percent",
               "complete")
DROP_COLUMNS = ("partner_id", "week", "documents", "transmissions", "average_per_week",
                "percent_of_average", "documents_before", "last_received_at")


def value_cells(rows: Iterable[ValueRow]) -> list[list[Any]]:
    return [[r.label, r.period.isoformat(), r.partner_id or "", r.currency or "", r.orders,
             r.order_value, r.invoices_sent, r.invoiced_sent, r.invoices_received,
             r.invoiced_received] for r in rows]


def share_cells(rows: Iterable[ShareRow]) -> list[list[Any]]:
    return [[r.label, r.period.isoformat(), r.orders, r.electronic, r.manual,
             "" if r.share is None else r.share] for r in rows]


def gap_cells(rows: Iterable[GapRow]) -> list[list[Any]]:
    """The import's four columns first, so that an export imports back."""
    return [[r.partner_id, r.month, r.currency, r.forecast, r.actual, r.gap,
             "" if r.gap_percent is None else r.gap_percent, "yes" if r.complete else "no"]
            for r in rows]


def drop_cells(rows: Iterable[DropRow], zone: ZoneInfo) -> list[list[Any]]:
    return [[r.partner_id, r.week, r.documents, r.transmissions, round(r.average, 2),
             r.percent, r.before, shown(r.last_received_at, zone)] for r in rows]


def csv_text(columns: Sequence[str], cells: Iterable[Sequence[Any]]) -> str:
    """A CSV document (RFC 4180, CRLF) with a header."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(columns)
    for row in cells:
        w.writerow(["" if c is None else str(c) for c in row])
    return out.getvalue()


def csv_response(name: str, columns: Sequence[str], cells: Iterable[Sequence[Any]]) -> Response:
    """The CSV as a download named ``name``."""
    return Response(csv_text(columns, cells), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- the charts -------------------------------------------------------------------------------


def value_charts(rows: Sequence[ValueRow], starts: Sequence[dt.date], period: figures.Period,
                 scale: charts.Scale) -> list[str]:
    """One chart per currency (the largest few): order value and invoiced per period."""
    labels = [figures.period_label(d, period) for d in starts]
    index = {d: i for i, d in enumerate(starts)}
    by: dict[str, dict[str, list[float | None]]] = {}
    weight: dict[str, Decimal] = {}
    for r in rows:
        cur = r.currency or "?"
        series = by.setdefault(cur, {k: [0.0] * len(starts) for k in
                                     ("orders", "invoiced (sent)", "invoiced (received)")})
        i = index.get(r.period)
        if i is None:
            continue
        for name, amount in (("orders", r.order_value), ("invoiced (sent)", r.invoiced_sent),
                             ("invoiced (received)", r.invoiced_received)):
            series[name][i] = (series[name][i] or 0) + float(amount)
        weight[cur] = weight.get(cur, Decimal(0)) + abs(r.order_value) + abs(r.invoiced_sent)
    shown_currencies = sorted(by, key=lambda c: -weight.get(c, Decimal(0)))[:CHARTED_CURRENCIES]
    colors = {"orders": "#0072B2", "invoiced (sent)": "#E69F00",
              "invoiced (received)": "#009E73"}
    out = []
    for cur in shown_currencies:
        drawn = [charts.Series(name, values, colors[name]) for name, values in by[cur].items()
                 if any(v for v in values)]
        out.append(charts.bar_chart(f"Value per {period} in {cur}", labels, drawn,
                                    stacked=False, unit=f" {cur}", scale=scale))
    return out


# -- the page ---------------------------------------------------------------------------------


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text and text.strip() else None
    except ValueError:
        return None


def _number(text: str | None, default: float, lo: float, hi: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if lo <= value <= hi else default


def manager_page(p: Page) -> Response:
    """The page: filters, values (total per period, per partner), forecasts, share, drops."""
    q = p.request.query_params
    zone = zone_of(p.gateway.settings)
    partner = (q.get("partner_id") or q.get("partner") or "").strip() or None
    period: figures.Period = "month" if q.get("period") == "month" else "week"
    scale = scale_of(q.get("scale"))
    basis: figures.Basis = "invoiced" if q.get("basis") == "invoiced" else "orders"
    threshold = _number(q.get("threshold"), 50, 1, 100)
    error = q.get("error")
    try:
        first, last = date_range(zone, _day(q.get("from")), _day(q.get("to")))
    except figures.RangeError as exc:
        error = str(exc)
        first, last = date_range(zone, None, None)
    store = p.store
    # The rollup brought up to date once for the four value figures (the forecasts read
    # whole months: from the first of the first one).
    figures.refresh(store, zone, first.replace(day=1))
    totals = figures.values(store, zone, first, last, period, partner, by_partner=False,
                            refresh=False)
    partners_rows = figures.range_values(store, zone, first, last, partner, refresh=False)
    share = figures.electronic_share(store, zone, first, last, manual=MANUAL_FORMATS,
                                     partner=partner, refresh=False)
    gaps = figures.forecast_gaps(store, zone, *months_of(first, last), today=today(zone),
                                 partner=partner, basis=basis, refresh=False)
    drops = figures.dropped_clients(store, zone, last, threshold=threshold, partner=partner)
    starts = figures.periods(first, last, period)
    pics = value_charts(totals, starts, period, scale)
    pics.append(charts.bars_with_share(
        "Orders per week, and the share received electronically", [r.label for r in share],
        [charts.Series("electronic", [r.electronic for r in share], "#009E73"),
         charts.Series("typed or printed", [r.manual for r in share], "#E69F00")],
        charts.Series("electronic share", [r.share for r in share]),
        scale=scale))
    kept = {k: v for k, v in dict(
        {"from": first.isoformat(), "to": last.isoformat()}, period=period,
        partner_id=partner or "", scale=scale, basis=basis,
        threshold=f"{threshold:g}").items() if v}
    query = urlencode(kept)
    names = {x.id: x.name for x in p.gateway.partners}
    return p.render("manager.html", first=first, last=last, period=period, partner=partner,
                    scale=scale, scales=charts.SCALES, basis=basis, threshold=threshold,
                    totals=totals, per_partner=partners_rows, share=share,
                    gaps=gaps, drops=drops, charts=pics, query=query, names=names,
                    partners=sorted(names), operator=p.who.may(Role.OPERATOR),
                    this_month=today(zone).strftime("%Y-%m"), zone=zone,
                    shown=lambda at: shown(at, zone),
                    message=q.get("message"), error=error)


def _back(p: Page, **said: str) -> Response:
    """Back to the page with the same filters and a message or error."""
    kept = p.field("back")
    target = kept if kept.startswith("/manager") and not kept.startswith("//") else "/manager"
    sep = "&" if "?" in target else "?"
    return RedirectResponse(target + sep + "&".join(f"{k}={quote(v)}" for k, v in said.items()),
                            303)


def _remote(p: Page) -> str | None:
    return p.request.client.host if p.request.client else None


def forecast_post(p: Page) -> Response:
    """One forecast entered (operator, admin): written, recorded in the audit trail."""
    known = {x.id for x in p.gateway.partners}
    try:
        f = check_forecast(p.field("partner_id"), p.field("month"), p.field("currency"),
                           p.field("amount"), known=known)
    except ForecastError as exc:
        return _back(p, error=f"forecast not saved: {exc}")
    ForecastBook(p.store).put([f], by=p.who.username)
    AuditLog(p.store).record(p.who.username, "forecast.put",
                             f"forecast:{f.partner_id}/{f.month}/{f.currency}",
                             after={"amount": str(f.amount)}, remote=_remote(p))
    return _back(p, message=f"forecast saved: {f.partner_id} {f.month} {f.amount} {f.currency}")


def forecast_import(p: Page) -> Response:
    """A CSV of forecasts uploaded (operator, admin): all or nothing."""
    upload = p.form.get("file") if p.form is not None else None
    data = upload.file.read() if upload is not None and hasattr(upload, "file") else b""
    if not data:
        return _back(p, error="choose a CSV file of forecasts to import")
    try:
        items = parse_csv(data.decode("utf-8-sig"), known={x.id for x in p.gateway.partners})
    except UnicodeDecodeError:
        return _back(p, error="the file is not UTF-8 text")
    except ForecastError as exc:
        return _back(p, error=f"nothing imported: {exc}")
    saved = ForecastBook(p.store).put(items, by=p.who.username)
    AuditLog(p.store).record(p.who.username, "forecast.import", "forecasts",
                             after={"forecasts": saved}, remote=_remote(p))
    return _back(p, message=f"{saved} forecast(s) imported")


__all__ = ["csv_response", "date_range", "forecast_import", "forecast_post", "manager_page"]
