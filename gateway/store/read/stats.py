"""Statistics for the console's API and charts: volume, order value and electronic share.

Each function takes the store, a half-open UTC range ``[since, until)`` on the transmission's
``received_at`` and a bucket (``"day"`` or ``"week"``, weeks start on Monday, ISO 8601), and
returns plain frozen rows sorted by bucket. Bucketing happens in Python so that SQLite and
PostgreSQL give the same answer; the queries read one range of one indexed column.

A range of whole UTC days (``since`` at midnight UTC, ``until`` at midnight or None) is
answered from per-day aggregates kept in memory (``gateway.store.read.daily``): the console
asks for 30 days or 12 weeks on every page view, and a million transmissions must not be read
each time. Other ranges are read as they are.

"Received electronically": an order whose transmission's format is one a partner's system
writes (``edifact``, ``xml``, ``csv``), as opposed to one a person typed or laid out for print
(``gateway.formats.registry.MANUAL_FORMATS``), which the gateway reads but the partner did
not send as data. The weekly share shows how online ordering progresses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa

from gateway.core import clock
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.read import daily
from gateway.store.records import aware

Bucket = Literal["day", "week"]

#: Formats a partner's system produces; orders in them count as received electronically.
ELECTRONIC_FORMATS = frozenset({"edifact", "xml", "csv"})

#: Transmission statuses that count as a failure.
FAILURE_STATUSES = frozenset({s.FAILED, s.QUARANTINED})

ORDER = "order"


def bucket_start(at: dt.datetime, bucket: Bucket) -> dt.date:
    """The first day of the bucket holding ``at`` (UTC): the day, or that week's Monday."""
    day = aware(at).astimezone(dt.UTC).date()
    if bucket == "week":
        return day - dt.timedelta(days=day.weekday())
    if bucket != "day":
        raise ValueError(f"bucket must be 'day' or 'week', not {bucket!r}")
    return day


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """Transmissions, documents and failures of one partner on one channel in one bucket."""

    bucket: dt.date
    partner: str | None
    channel: str
    format: str | None
    transmissions: int
    documents: int
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bucket": self.bucket.isoformat()}


@dataclass(frozen=True, slots=True)
class ValueRow:
    """The value of the orders of one partner in one currency in one bucket."""

    bucket: dt.date
    partner: str
    currency: str | None
    orders: int
    amount: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bucket": self.bucket.isoformat(), "amount": str(self.amount)}


@dataclass(frozen=True, slots=True)
class ShareRow:
    """Orders received in one bucket, and how many of them electronically."""

    bucket: dt.date
    orders: int
    electronic: int
    manual: int

    @property
    def share(self) -> float | None:
        """The electronic share (0..1), None without orders."""
        return self.electronic / self.orders if self.orders else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bucket": self.bucket.isoformat(), "share": self.share}


def _range(q: sa.Select[Any], since: dt.datetime | None, until: dt.datetime | None,
           partner: str | None) -> sa.Select[Any]:
    t = s.transmissions
    q = q.where(t.c.direction == "in")  # what partners sent: not the documents we send them
    if since is not None:
        q = q.where(t.c.received_at >= since)
    if until is not None:
        q = q.where(t.c.received_at < until)
    if partner:
        q = q.where(t.c.partner_id == partner)
    return q


def volume(store: Store, since: dt.datetime | None, until: dt.datetime | None,
           bucket: Bucket = "day", partner: str | None = None) -> list[VolumeRow]:
    """Transmissions, their documents and failures per bucket, partner, channel and format.
    Duplicates (the same bytes again) are not counted."""
    span = daily.whole_days(since, until, _today())
    if span is not None:
        acc_days: dict[tuple[dt.date, str | None, str, str | None], list[int]] = defaultdict(
            lambda: [0, 0, 0])
        for day, agg in daily.cache_of(store).get_days(*span).items():
            start = bucket_start(day_start(day), bucket)
            for (p, channel, fmt), (n, docs, failures) in agg.volume.items():
                if partner and p != partner:
                    continue
                cell = acc_days[(start, p, channel, fmt)]
                cell[0] += n
                cell[1] += docs
                cell[2] += failures
        return _volume_rows(acc_days)
    t = s.transmissions
    q = _range(sa.select(t.c.received_at, t.c.partner_id, t.c.channel, t.c.format, t.c.status,
                         t.c.document_count).where(t.c.status != s.DUPLICATE),
               since, until, partner)
    acc: dict[tuple[dt.date, str | None, str, str | None], list[int]] = defaultdict(
        lambda: [0, 0, 0])
    with store.engine.connect() as conn:
        for r in conn.execute(q):
            cell = acc[(bucket_start(r.received_at, bucket), r.partner_id, r.channel, r.format)]
            cell[0] += 1
            cell[1] += r.document_count or 0
            cell[2] += r.status in FAILURE_STATUSES
    return _volume_rows(acc)


def _today() -> dt.date:
    return clock.now().astimezone(dt.UTC).date()


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _volume_rows(acc: dict[tuple[dt.date, str | None, str, str | None], list[int]]
                 ) -> list[VolumeRow]:
    # Sorted on the keys (None as ""), then made rows: thousands of cells per month.
    keys = sorted(acc, key=lambda k: (k[0], k[1] or "", k[2], k[3] or ""))
    return [VolumeRow(bucket=k[0], partner=k[1], channel=k[2], format=k[3],
                      transmissions=acc[k][0], documents=acc[k][1], failures=acc[k][2])
            for k in keys]


@dataclass(frozen=True, slots=True)
class VolumeTotals:
    """What the console's volume charts draw, per day: transmissions per channel and per
    format, and failures (as ``volume`` counts them)."""

    by_channel: dict[dt.date, dict[str, int]]
    by_format: dict[dt.date, dict[str | None, int]]
    failures: dict[dt.date, int]


def volume_totals(store: Store, since: dt.datetime | None, until: dt.datetime | None,
                  partner: str | None = None) -> VolumeTotals:
    """``volume`` per day, summed per channel and per format: tens of numbers a day where
    ``volume`` makes a row per partner, channel and format (thousands a month)."""
    by_channel: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_format: dict[dt.date, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    failures: dict[dt.date, int] = defaultdict(int)
    span = daily.whole_days(since, until, _today())
    if span is None:
        for r in volume(store, since, until, "day", partner):
            by_channel[r.bucket][r.channel] += r.transmissions
            by_format[r.bucket][r.format] += r.transmissions
            failures[r.bucket] += r.failures
    else:
        for day, agg in daily.cache_of(store).get_days(*span).items():
            channels, formats = by_channel[day], by_format[day]
            for (p, channel, fmt), (n, _docs, failed) in agg.volume.items():
                if partner and p != partner:
                    continue
                channels[channel] += n
                formats[fmt] += n
                failures[day] += failed
    return VolumeTotals(by_channel={d: dict(v) for d, v in by_channel.items()},
                        by_format={d: dict(v) for d, v in by_format.items()},
                        failures=dict(failures))


def order_amount(payload: dict[str, Any]) -> Decimal:
    """An order's value: the sum of its lines' ``line_amount``, or quantity × unit price
    (per price basis quantity) where a line has no amount; lines without a price add 0."""
    total = Decimal(0)
    for line in payload.get("lines") or []:
        try:
            if line.get("line_amount") is not None:
                total += Decimal(str(line["line_amount"]))
            elif line.get("unit_price") is not None and line.get("quantity") is not None:
                basis = Decimal(str(line.get("price_basis_quantity") or 1)) or Decimal(1)
                total += (Decimal(str(line["quantity"])) * Decimal(str(line["unit_price"]))
                          / basis)
        except (InvalidOperation, TypeError):
            continue  # the mapping validated amounts; a foreign payload adds nothing
    return total


def _orders(store: Store, since: dt.datetime | None, until: dt.datetime | None,
            partner: str | None, *, with_payload: bool) -> list[Any]:
    """Order documents (not failed, not duplicate) with their transmission's time and format."""
    t, d = s.transmissions, s.documents
    cols = [t.c.received_at, t.c.format, d.c.partner_id, d.c.id]
    if with_payload:
        cols.append(d.c.payload)
    q = (sa.select(*cols).select_from(d.join(t, d.c.transmission_id == t.c.id))
         .where(d.c.doc_type == ORDER)
         .where(d.c.status.notin_([s.DOC_FAILED, s.DOC_UNSUPPORTED, s.DOC_DUPLICATE,
                                   s.DOC_REJECTED])))
    q = _range(q, since, until, partner)
    with store.engine.connect() as conn:
        return list(conn.execute(q))


def value(store: Store, since: dt.datetime | None, until: dt.datetime | None,
          bucket: Bucket = "week", partner: str | None = None) -> list[ValueRow]:
    """Order value per bucket, partner and currency (see ``order_amount``)."""
    acc: dict[tuple[dt.date, str, str | None], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    span = daily.whole_days(since, until, _today())
    if span is not None:
        days = daily.cache_of(store).values_of(*span, partner or None, order_amount)
        for day, cells in days.items():
            for (p, currency), (n, amount) in cells.items():
                cell = acc[(bucket_start(day_start(day), bucket), p, currency)]
                cell[0] += n
                cell[1] += amount
        return _value_rows(acc)
    for r in _orders(store, since, until, partner, with_payload=True):
        try:
            payload = json.loads(r.payload)
        except ValueError:
            continue
        cell = acc[(bucket_start(r.received_at, bucket), r.partner_id, payload.get("currency"))]
        cell[0] += 1
        cell[1] += order_amount(payload)
    return _value_rows(acc)


def _value_rows(acc: dict[tuple[dt.date, str, str | None], list[Any]]) -> list[ValueRow]:
    rows = [ValueRow(bucket=k[0], partner=k[1], currency=k[2], orders=v[0], amount=v[1])
            for k, v in acc.items()]
    return sorted(rows, key=lambda r: (r.bucket, r.partner, r.currency or ""))


def electronic_share(store: Store, since: dt.datetime | None, until: dt.datetime | None,
                     bucket: Bucket = "week", partner: str | None = None) -> list[ShareRow]:
    """Orders per bucket, split into electronic (``ELECTRONIC_FORMATS``) and manual."""
    acc: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0])
    span = daily.whole_days(since, until, _today())
    if span is not None:
        for day, agg in daily.cache_of(store).get_days(*span).items():
            start = bucket_start(day_start(day), bucket)
            for (p, fmt), n in agg.orders.items():
                if partner and p != partner:
                    continue
                acc[start][0 if fmt in ELECTRONIC_FORMATS else 1] += n
        return _share_rows(acc)
    for r in _orders(store, since, until, partner, with_payload=False):
        cell = acc[bucket_start(r.received_at, bucket)]
        if r.format in ELECTRONIC_FORMATS:
            cell[0] += 1
        else:
            cell[1] += 1
    return _share_rows(acc)


def _share_rows(acc: dict[dt.date, list[int]]) -> list[ShareRow]:
    return [ShareRow(bucket=b, orders=v[0] + v[1], electronic=v[0], manual=v[1])
            for b, v in sorted(acc.items())]


def status_counts(store: Store) -> dict[str, int]:
    """Every transmission by status (as ``Store.counts_by_status``), from the per-day
    aggregates: the first call reads the store once, later ones the days that changed."""
    out: dict[str, int] = defaultdict(int)
    for (_channel, _partner, status), n in daily.status_totals(store, _today()).items():
        out[status] += n
    return dict(out)
