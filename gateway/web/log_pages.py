"""The console's transmission log: ``/transmissions`` (filters, a search field, a pager with
the total, compact one-line rows with each transmission's order numbers and ERP answer),
``/transmissions/rows`` (the table body alone, for the page's polling) and
``/transmissions.csv`` (every row the same filters match, streamed).

The filters travel in the query string, so every pager link and the export keep them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.channels.registry import CHANNEL_NAMES
from gateway.core.status import TRANSMISSION_STATUSES
from gateway.formats.registry import FORMAT_NAMES
from gateway.store.read.log_export import log_csv
from gateway.store.read.transmissions import LogPage, LogQuery, transmission_page
from gateway.web.pages import STATUS_CLASS, Page

FILTERS = ("q", "partner", "channel", "status", "format", "since", "until", "direction")
#: Rows per page the operator may choose; the first is the default.
PAGE_SIZES = (50, 100, 200, 25)
#: The furthest row a page may start at (a bound on OFFSET; the filters narrow further).
MAX_OFFSET = 10_000_000


@dataclass(frozen=True, slots=True)
class Pager:
    """Where one page of ``total`` rows sits: rows ``first``–``last`` (1-based)."""

    total: int
    size: int
    offset: int

    @property
    def first(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.size, self.total)

    @property
    def previous(self) -> int | None:
        return max(self.offset - self.size, 0) if self.offset > 0 else None

    @property
    def next(self) -> int | None:
        return self.offset + self.size if self.offset + self.size < self.total else None

    @property
    def final(self) -> int:
        """The offset of the last page."""
        return max((self.total - 1) // self.size * self.size, 0)

    @property
    def page(self) -> int:
        return self.offset // self.size + 1

    @property
    def pages(self) -> int:
        return max((self.total + self.size - 1) // self.size, 1)


def _filters(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "").strip()[:512] for k in FILTERS}


def _number(request: Request, name: str, default: int, allowed: range) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return value if value in allowed else default


def _size(request: Request) -> int:
    size = _number(request, "size", PAGE_SIZES[0], range(1, 1001))
    return size if size in PAGE_SIZES else PAGE_SIZES[0]


def _date(text: str, tz: ZoneInfo) -> dt.datetime | None:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tz).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # not a date, or beyond year 1 … 9999 in UTC
        return None


def log_query(f: dict[str, str], tz: ZoneInfo) -> LogQuery:
    """The store's query for the page's filters (dates are whole days in ``tz``)."""
    since, until = _date(f["since"], tz), _date(f["until"], tz)
    return LogQuery(partner=f["partner"] or None, channel=f["channel"] or None,
                    format=f["format"] or None,
                    statuses=(f["status"].upper(),) if f["status"] else (), since=since,
                    direction=f["direction"] if f["direction"] in ("in", "out") else None,
                    # a bare date means its whole day
                    until=until + dt.timedelta(days=1)
                    if until and until.date() < dt.date.max else None,
                    text=f["q"] or None)


def _page(p: Page, f: dict[str, str], size: int) -> tuple[LogPage, Pager]:
    offset = _number(p.request, "offset", 0, range(0, MAX_OFFSET + 1))
    page = transmission_page(p.store, log_query(f, p.tz), limit=size, offset=offset,
                                by_day=True)
    if offset and offset >= page.total > 0:  # past the end (rows went): the last page
        offset = (page.total - 1) // size * size
        page = transmission_page(p.store, log_query(f, p.tz), limit=size, offset=offset,
                                by_day=True)
    return page, Pager(total=page.total, size=size, offset=offset)


def transmissions(p: Page) -> Response:
    f = _filters(p.request)
    size = _size(p.request)
    page, pager = _page(p, f, size)
    kept = {k: v for k, v in f.items() if v}
    if size != PAGE_SIZES[0]:
        kept["size"] = str(size)
    query = urlencode(kept)
    return p.render("transmissions.html", page=page, rows=page.rows, pager=pager, filters=f,
                    query=query, rows_query=urlencode({**kept, "offset": pager.offset}),
                    csv_query=urlencode({k: v for k, v in f.items() if v}),
                    sizes=sorted(PAGE_SIZES), size=size,
                    partners=[x.id for x in p.gateway.partners], channels=CHANNEL_NAMES,
                    statuses=TRANSMISSION_STATUSES, formats=FORMAT_NAMES,
                    status_class=STATUS_CLASS)


def transmission_rows(p: Page) -> Response:
    """The log's table body alone, for the page's polling."""
    page, _pager = _page(p, _filters(p.request), _size(p.request))
    return p.render("_transmission_rows.html", page=page, rows=page.rows,
                    status_class=STATUS_CLASS)


def transmissions_csv(p: Page) -> Response:
    """Every row the page's filters match, as CSV (see ``gateway.web.log_export``)."""
    lines = log_csv(p.store, log_query(_filters(p.request), p.tz), p.tz)
    return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="transmissions.csv"'})
