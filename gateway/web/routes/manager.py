"""The manager's figures (``gateway.store.read.manager``): order and invoiced value per
week or month, forecasts against actual (and their CRUD and CSV import), the weekly share of
orders received electronically, the clients whose traffic dropped. Every list is paged
(``Paged``), takes ``partner_id`` and a range ``from`` … ``to`` (days in the console's zone,
both included; the last 13 weeks by default), and has a ``.csv`` twin with the same
parameters (every row, no paging). Viewers read; operators and admins write forecasts.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from gateway.core.zone import zone_of
from gateway.formats.registry import MANUAL_FORMATS
from gateway.store.audit import AuditLog
from gateway.store.forecasts import (
    ForecastBook,
    ForecastError,
    check_forecast,
    check_month,
    parse_csv,
)
from gateway.store.read import manager as figures
from gateway.web import manager as tables
from gateway.web.deps import Gateway, Operator, StoreDep, Viewer, remote
from gateway.web.numbers import Offset
from gateway.web.paging import Limit, Paged, PartnerFilter, paged

router = APIRouter(prefix="/manager", tags=["manager"])

#: Forecast imports may be larger than the server's ``max_json``: (path pattern, limit).
BODY_LIMITS = [(r"/api/manager/forecasts\.csv", 2 << 20), (r"/manager/forecasts/import", 2 << 20)]

From = Annotated[dt.date | None, Query(alias="from", description="first day (default: 13 "
                                       "weeks before to)")]
To = Annotated[dt.date | None, Query(alias="to", description="last day, included "
                                     "(default: today)")]
PeriodQ = Annotated[Literal["week", "month"], Query(description="weeks from Monday, or months")]
Threshold = Annotated[float, Query(gt=0, le=100, description="listed below this per cent of "
                                   "the partner's weekly average")]
Basis = Annotated[Literal["orders", "invoiced"], Query(
    description="compare forecasts with the order value or the value invoiced (sent)")]


class ValueOut(BaseModel):
    period: str = Field(description="2026-W49 or 2026-12")
    start: str = Field(description="the period's first day")
    partner_id: str | None = Field(description="None in the totals (by=total)")
    currency: str | None
    orders: int
    order_value: str
    invoices_sent: int
    invoiced_sent: str
    invoices_received: int
    invoiced_received: str


class ShareOut(BaseModel):
    week: str
    start: str
    orders: int
    electronic: int
    manual: int
    share_percent: float | None


class GapOut(BaseModel):
    partner_id: str
    month: str
    currency: str
    amount: str = Field(description="the forecast")
    actual: str
    gap: str = Field(description="actual minus forecast")
    gap_percent: float | None = Field(description="the gap in % of the forecast")
    complete: bool = Field(description="the month is over (else: so far)")
    updated_by: str
    updated_at: str


class DropOut(BaseModel):
    partner_id: str
    week: str
    documents: int
    transmissions: int
    average_per_week: float
    percent_of_average: float
    documents_before: int
    last_received_at: str | None


class ForecastIn(BaseModel):
    partner_id: str = Field(max_length=64)
    month: str = Field(description="YYYY-MM", max_length=7)
    currency: str = Field(description="ISO 4217", max_length=3)
    amount: str = Field(description="a decimal, 0 … 10^15", max_length=32)


class SavedOut(BaseModel):
    saved: int


def _range(gateway: Any, first: dt.date | None, last: dt.date | None) -> tuple[Any, dt.date,
                                                                             dt.date]:
    zone = zone_of(gateway.settings)
    try:
        return (zone, *tables.date_range(zone, first, last))
    except figures.RangeError as exc:
        raise HTTPException(422, str(exc)) from exc


def _value_out(r: figures.ValueRow) -> dict[str, Any]:
    d = r.as_dict()
    return dict(d, period=r.label, start=r.period.isoformat())


@router.get("/values", response_model=Paged[ValueOut],
            summary="Order value and invoiced value per period and currency, per partner or "
            "in total")
def values(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
           last: To = None, period: PeriodQ = "week", partner_id: PartnerFilter = None,
           by: Literal["partner", "total"] = "partner", limit: Limit = 1000,
           offset: Offset = 0) -> dict[str, Any]:
    zone, a, b = _range(gateway, first, last)
    rows = figures.values(store, zone, a, b, period, partner_id, by_partner=by == "partner")
    return paged([_value_out(r) for r in rows[offset:offset + limit]], len(rows), limit,
                 offset)


@router.get("/values.csv", summary="The values as CSV (every row)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def values_csv(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
               last: To = None, period: PeriodQ = "week", partner_id: PartnerFilter = None,
               by: Literal["partner", "total"] = "partner") -> Response:
    zone, a, b = _range(gateway, first, last)
    rows = figures.values(store, zone, a, b, period, partner_id, by_partner=by == "partner")
    return tables.csv_response(f"values-{period}-{a}-{b}.csv", tables.VALUE_COLUMNS,
                               tables.value_cells(rows))


def _share(gateway: Any, store: Any, first: dt.date | None, last: dt.date | None,
           partner: str | None) -> tuple[dt.date, dt.date, list[figures.ShareRow]]:
    zone, a, b = _range(gateway, first, last)
    return a, b, figures.electronic_share(store, zone, a, b, manual=MANUAL_FORMATS,
                                          partner=partner)


@router.get("/electronic-share", response_model=Paged[ShareOut],
            summary="Orders per week and the share received electronically")
def electronic_share(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
                     last: To = None, partner_id: PartnerFilter = None, limit: Limit = 1000,
                     offset: Offset = 0) -> dict[str, Any]:
    _a, _b, rows = _share(gateway, store, first, last, partner_id)
    items = [dict(zip(tables.SHARE_COLUMNS, c, strict=True)) for c in tables.share_cells(rows)]
    for d in items:
        d["share_percent"] = d["share_percent"] if d["share_percent"] != "" else None
    return paged(items[offset:offset + limit], len(items), limit, offset)


@router.get("/electronic-share.csv", summary="The electronic share as CSV",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def electronic_share_csv(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
                         last: To = None, partner_id: PartnerFilter = None) -> Response:
    a, b, rows = _share(gateway, store, first, last, partner_id)
    return tables.csv_response(f"electronic-share-{a}-{b}.csv", tables.SHARE_COLUMNS,
                               tables.share_cells(rows))


def _drops(gateway: Any, store: Any, last: dt.date | None, threshold: float,
           partner: str | None) -> tuple[Any, list[figures.DropRow]]:
    zone, _a, b = _range(gateway, None, last)
    return zone, figures.dropped_clients(store, zone, b, threshold=threshold, partner=partner)


@router.get("/dropped", response_model=Paged[DropOut],
            summary="Clients whose last week is below a share of their 4-week average")
def dropped(who: Viewer, gateway: Gateway, store: StoreDep, last: To = None,
            threshold: Threshold = 50, partner_id: PartnerFilter = None, limit: Limit = 1000,
            offset: Offset = 0) -> dict[str, Any]:
    _zone, rows = _drops(gateway, store, last, threshold, partner_id)
    items = [dict(partner_id=r.partner_id, week=r.week, documents=r.documents,
                  transmissions=r.transmissions, average_per_week=round(r.average, 2),
                  percent_of_average=r.percent, documents_before=r.before,
                  last_received_at=r.last_received_at.isoformat() if r.last_received_at
                  else None) for r in rows]
    return paged(items[offset:offset + limit], len(items), limit, offset)


@router.get("/dropped.csv", summary="The dropped clients as CSV", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def dropped_csv(who: Viewer, gateway: Gateway, store: StoreDep, last: To = None,
                threshold: Threshold = 50, partner_id: PartnerFilter = None) -> Response:
    zone, rows = _drops(gateway, store, last, threshold, partner_id)
    return tables.csv_response("dropped-clients.csv", tables.DROP_COLUMNS,
                               tables.drop_cells(rows, zone))


def _gaps(gateway: Any, store: Any, first: dt.date | None, last: dt.date | None,
          partner: str | None, basis: figures.Basis) -> list[figures.GapRow]:
    zone, a, b = _range(gateway, first, last)
    return figures.forecast_gaps(store, zone, *tables.months_of(a, b), today=tables.today(zone),
                                 partner=partner, basis=basis)


@router.get("/forecasts", response_model=Paged[GapOut],
            summary="Forecasts of the range's months against actual, with the gap")
def forecasts(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
              last: To = None, partner_id: PartnerFilter = None, basis: Basis = "orders",
              limit: Limit = 1000, offset: Offset = 0) -> dict[str, Any]:
    rows = _gaps(gateway, store, first, last, partner_id, basis)
    items = [dict(r.as_dict(), amount=str(r.forecast)) for r in rows]
    return paged(items[offset:offset + limit], len(items), limit, offset)


@router.get("/forecasts.csv", summary="Forecasts against actual as CSV (imports back)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def forecasts_csv(who: Viewer, gateway: Gateway, store: StoreDep, first: From = None,
                  last: To = None, partner_id: PartnerFilter = None,
                  basis: Basis = "orders") -> Response:
    rows = _gaps(gateway, store, first, last, partner_id, basis)
    return tables.csv_response("forecasts.csv", tables.GAP_COLUMNS, tables.gap_cells(rows))


def _known(gateway: Any) -> set[str]:
    return {p.id for p in gateway.partners}


@router.put("/forecasts", response_model=SavedOut,
            summary="Set forecasts (each replaces the one of its partner, month and currency)")
def put_forecasts(who: Operator, gateway: Gateway, store: StoreDep, request: Request,
                  items: Annotated[list[ForecastIn], Body(max_length=5000)]) -> dict[str, int]:
    known = _known(gateway)
    checked = []
    for n, i in enumerate(items, start=1):
        try:
            checked.append(check_forecast(i.partner_id, i.month, i.currency, i.amount,
                                          known=known))
        except ForecastError as exc:
            raise HTTPException(422, f"nothing saved: item {n}: {exc}") from exc
    saved = ForecastBook(store).put(checked, by=who.username)
    AuditLog(store).record(who.username, "forecast.put", "forecasts",
                           after=[{"partner_id": f.partner_id, "month": f.month,
                                   "currency": f.currency, "amount": str(f.amount)}
                                  for f in checked[:50]], remote=remote(request))
    return {"saved": saved}


@router.delete("/forecasts/{partner_id}/{month}/{currency}", status_code=204,
               summary="Remove one forecast")
def delete_forecast(who: Operator, store: StoreDep, request: Request, partner_id: str,
                    month: str, currency: str) -> Response:
    try:
        month = check_month(month)
    except ForecastError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not ForecastBook(store).delete(partner_id, month, currency):
        raise HTTPException(404, f"no forecast for {partner_id} in {month} in {currency}")
    AuditLog(store).record(who.username, "forecast.delete",
                           f"forecast:{partner_id}/{month}/{currency.upper()}",
                           remote=remote(request))
    return Response(status_code=204)


@router.post("/forecasts.csv", response_model=SavedOut,
             summary="Import forecasts from CSV: partner_id,month,currency,amount",
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {
                 "type": "string"}}}, "required": True}})
async def import_forecasts(who: Operator, gateway: Gateway, store: StoreDep,
                           request: Request) -> dict[str, int]:
    data = await request.body()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, "the CSV is not UTF-8 text") from exc
    try:
        items = parse_csv(text, known=_known(gateway))
    except ForecastError as exc:
        raise HTTPException(422, f"nothing imported: {exc}") from exc
    from starlette.concurrency import run_in_threadpool

    saved = await run_in_threadpool(ForecastBook(store).put, items, by=who.username)
    await run_in_threadpool(AuditLog(store).record, who.username, "forecast.import",
                            "forecasts", after={"forecasts": saved}, remote=remote(request))
    return {"saved": saved}
