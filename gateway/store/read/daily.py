"""Per-day aggregates of the transmissions, kept in memory and refreshed from what changed, so
that the console's charts and counts do not read a million rows per request.

Why not a rollup table maintained on write: every write path (receive, process, publish, the
ERP's acks, conflicts, held files, reprocessing) would have to keep it exact, in the same
transaction. Instead every one of those paths already writes a ``transmission_events`` row in
its commit; this cache reads the events written since it last looked (by their increasing
id, a few rows per request), and forgets the UTC days of the transmissions they name. A
forgotten day is read again, alone, through the ``received_at`` index on the next request.

An event id can become visible after a higher one (two transactions committing out of
order); ids seen are remembered and the scan starts from the highest id seen at least
``LATE_COMMIT`` ago, so such an event is still applied, once.

The first request of a process fills the days it asks for (one range scan); later ones read
only the days that changed, usually today.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: How long a transaction may take between writing its event and committing (seconds).
LATE_COMMIT = 120.0

#: Document statuses whose orders count (as ``stats``: not failed, unsupported, duplicate
#: or rejected).
_NOT_COUNTED = (s.DOC_FAILED, s.DOC_UNSUPPORTED, s.DOC_DUPLICATE, s.DOC_REJECTED)

VolumeKey = tuple[str | None, str, str | None]  # partner, channel, format
ValueKey = tuple[str, str | None]  # partner, currency


def _day_expression(dialect: str) -> Callable[[Any], Any]:
    """The UTC day of a stored time, in SQL: PostgreSQL's ``date`` of the time in UTC;
    SQLite's first ten characters (the store writes UTC as ``YYYY-MM-DD HH:MM:SS``)."""
    if dialect == "postgresql":
        return lambda col: sa.func.date(sa.func.timezone("UTC", col))
    if dialect == "sqlite":
        return lambda col: sa.func.substr(col, 1, 10)
    raise ValueError(f"no day expression for the {dialect} dialect")


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def utc_day(at: dt.datetime) -> dt.date:
    return aware(at).astimezone(dt.UTC).date()


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


@dataclass(slots=True)
class Day:
    """What one UTC day holds. ``volume``: inbound, not duplicate, per (partner, channel,
    format): [transmissions, documents, failures]. ``statuses``: every transmission by
    (channel, partner, status). ``orders``: counted orders per (partner, format).
    For the metrics' counters (``gateway.store.read.counters``): ``received``, every inbound
    transmission per (channel, partner): [transmissions, bytes]; ``last_in``, each partner's
    last inbound transmission; ``documents``, the documents of inbound transmissions per
    (partner, format): [stored, published, failed]."""

    volume: dict[VolumeKey, list[int]] = field(default_factory=dict)
    statuses: dict[tuple[str, str | None, str], int] = field(default_factory=dict)
    orders: dict[tuple[str, str | None], int] = field(default_factory=dict)
    received: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)
    last_in: dict[str, dt.datetime] = field(default_factory=dict)
    documents: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)


class DailyCache:
    """The per-day aggregates of one store (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.days: dict[dt.date, Day] = {}
        # Order value per (day, partner or None for all): {(partner, currency): [n, amount]}.
        self.values: dict[tuple[dt.date, str | None], dict[ValueKey, list[Any]]] = {}
        self.low: int | None = None  # events with a higher id are read at the next refresh
        self.seen: set[int] = set()
        self.marks: list[tuple[float, int]] = []  # (when, highest id seen then)
        # Bumped whenever a day is forgotten or read: what is derived from many days (the
        # status totals) is kept for one generation.
        self.generation = 0
        self.totals: tuple[int, dt.date, dt.date, dict[Any, int]] | None = None

    # -- keeping up -----------------------------------------------------------------------

    def refresh(self, conn: sa.Connection) -> None:
        """Forget the days (and values) the events written since the last look touch."""
        e, t = s.transmission_events, s.transmissions
        if self.low is None:  # nothing cached yet: start from here
            top = conn.execute(sa.select(sa.func.max(e.c.id))).scalar_one() or 0
            self.low = max(0, int(top) - 1000)
        rows = conn.execute(
            sa.select(e.c.id, t.c.received_at, t.c.partner_id)
            .select_from(e.join(t, t.c.id == e.c.transmission_id))
            .where(e.c.id > self.low)).all()
        top = self.low
        for r in rows:
            top = max(top, r.id)
            if r.id in self.seen:
                continue
            self.seen.add(r.id)
            day = utc_day(r.received_at)
            if self.days.pop(day, None) is not None:
                self.generation += 1
            self.values.pop((day, r.partner_id), None)
            self.values.pop((day, None), None)
        now = time.monotonic()
        self.marks.append((now, max(top, self.marks[-1][1] if self.marks else top)))
        settled = [m for m in self.marks if m[0] <= now - LATE_COMMIT]
        if settled:
            self.low = settled[-1][1]
            self.marks = [m for m in self.marks if m[0] > now - LATE_COMMIT] or [settled[-1]]
            self.seen = {i for i in self.seen if i > self.low}

    # -- reading --------------------------------------------------------------------------

    def get_days(self, first: dt.date, last: dt.date) -> dict[dt.date, Day]:
        """The days ``first`` … ``last`` (inclusive), filling those not known."""
        with self.lock, self.store.engine.connect() as conn:
            self.refresh(conn)
            wanted = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
            missing = [d for d in wanted if d not in self.days]
            if missing:
                self._fill(conn, missing[0], missing[-1], set(missing))
            return {d: self.days[d] for d in wanted}

    def _fill(self, conn: sa.Connection, first: dt.date, last: dt.date,
              missing: set[dt.date]) -> None:
        """Read the days ``first`` … ``last`` (those in ``missing`` are kept), grouped by day
        in SQL: a few thousand rows come back, not one per transmission."""
        t, d = s.transmissions, s.documents
        since, until = day_start(first), day_start(last + dt.timedelta(days=1))
        day_of = _day_expression(conn.dialect.name)
        fresh = {day: Day() for day in missing}
        day_col = day_of(t.c.received_at).label("day")
        q = (sa.select(day_col, t.c.partner_id, t.c.channel, t.c.format, t.c.status,
                       t.c.direction, sa.func.count().label("n"),
                       sa.func.sum(t.c.document_count).label("docs"),
                       sa.func.sum(t.c.size).label("bytes"),
                       sa.func.max(t.c.received_at).label("last"))
             .where(t.c.received_at >= since, t.c.received_at < until)
             .group_by(day_col, t.c.partner_id, t.c.channel, t.c.format, t.c.status,
                       t.c.direction))
        failures = (s.FAILED, s.QUARANTINED)
        for r in conn.execute(q):
            day = fresh.get(_as_date(r.day))
            if day is None:
                continue
            counted = (r.channel, r.partner_id, r.status)
            day.statuses[counted] = day.statuses.get(counted, 0) + int(r.n)
            if r.direction != "in":
                continue
            got = day.received.setdefault((r.channel, r.partner_id), [0, 0])
            got[0] += int(r.n)
            got[1] += int(r.bytes or 0)
            if r.partner_id is not None and r.last is not None:
                seen_at = aware(r.last)
                if r.partner_id not in day.last_in or day.last_in[r.partner_id] < seen_at:
                    day.last_in[r.partner_id] = seen_at
            if r.status == s.DUPLICATE:
                continue
            cell = day.volume.setdefault((r.partner_id, r.channel, r.format), [0, 0, 0])
            cell[0] += int(r.n)
            cell[1] += int(r.docs or 0)
            cell[2] += int(r.n) if r.status in failures else 0
        # Every document of the inbound transmissions of those days, once: the counted
        # orders, and what the metrics count (stored, published, failed).
        order = sa.and_(d.c.doc_type == "order", d.c.status.notin_(_NOT_COUNTED))
        q = (sa.select(day_col, t.c.format, d.c.partner_id, sa.func.count().label("n"),
                       sa.func.count(d.c.published_at).label("published"),
                       sa.func.sum(sa.case((d.c.status == s.DOC_FAILED, 1), else_=0))
                       .label("failed"),
                       sa.func.sum(sa.case((order, 1), else_=0)).label("orders"))
             .select_from(d.join(t, d.c.transmission_id == t.c.id))
             .where(t.c.received_at >= since, t.c.received_at < until, t.c.direction == "in")
             .group_by(day_col, t.c.format, d.c.partner_id))
        for r in conn.execute(q):
            day = fresh.get(_as_date(r.day))
            if day is None:
                continue
            key = (r.partner_id, r.format)
            if int(r.orders or 0):
                day.orders[key] = day.orders.get(key, 0) + int(r.orders)
            cell = day.documents.setdefault(key, [0, 0, 0])
            cell[0] += int(r.n)
            cell[1] += int(r.published or 0)
            cell[2] += int(r.failed or 0)
        self.days.update(fresh)
        self.generation += 1

    def values_of(self, first: dt.date, last: dt.date, partner: str | None,
                  amount: Callable[[dict[str, Any]], Decimal]
                  ) -> dict[dt.date, dict[ValueKey, list[Any]]]:
        """Order value per day ``first`` … ``last``: {(partner, currency): [orders, amount]}
        (``amount`` prices one order's payload)."""
        t, d = s.transmissions, s.documents
        with self.lock, self.store.engine.connect() as conn:
            self.refresh(conn)
            wanted = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
            missing = [x for x in wanted if (x, partner) not in self.values]
            if missing:
                fresh: dict[dt.date, dict[ValueKey, list[Any]]] = {x: {} for x in missing}
                q = (sa.select(t.c.received_at, d.c.partner_id, d.c.payload)
                     .select_from(d.join(t, d.c.transmission_id == t.c.id))
                     .where(t.c.received_at >= day_start(missing[0]),
                            t.c.received_at < day_start(missing[-1] + dt.timedelta(days=1)),
                            t.c.direction == "in", d.c.doc_type == "order",
                            d.c.status.notin_(_NOT_COUNTED)))
                if partner:
                    q = q.where(t.c.partner_id == partner)
                for r in conn.execute(q):
                    cells = fresh.get(utc_day(r.received_at))
                    if cells is None:
                        continue
                    try:
                        payload = json.loads(r.payload)
                    except ValueError:
                        continue
                    cell = cells.setdefault((r.partner_id, payload.get("currency")),
                                            [0, Decimal(0)])
                    cell[0] += 1
                    cell[1] += amount(payload)
                for x, cells in fresh.items():
                    self.values[(x, partner)] = cells
            return {x: self.values[(x, partner)] for x in wanted}

    def earliest(self) -> dt.date | None:
        """The UTC day of the oldest transmission (an index seek), None when there is none."""
        t = s.transmissions
        with self.store.engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(t.c.received_at))).scalar_one()
        return None if first is None else utc_day(first)


_caches: weakref.WeakKeyDictionary[sa.Engine, DailyCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def cache_of(store: Store) -> DailyCache:
    """The one cache of ``store``'s database in this process."""
    with _caches_lock:
        cache = _caches.get(store.engine)
        if cache is None:
            cache = _caches[store.engine] = DailyCache(store)
        return cache


def whole_days(since: dt.datetime | None, until: dt.datetime | None,
               today: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first and last UTC day of ``[since, until)`` when both ends fall on UTC midnight
    (``until`` None: up to now), else None (the range is read as it is)."""
    if since is None:
        return None
    start = aware(since).astimezone(dt.UTC)
    if start.time() != dt.time():
        return None
    if until is None:
        return start.date(), today
    end = aware(until).astimezone(dt.UTC)
    if end.time() != dt.time() or end <= start:
        return None
    return start.date(), min(end.date() - dt.timedelta(days=1), today)


def merge_status_counts(days: Iterable[Day]) -> dict[tuple[str, str | None, str], int]:
    """Transmissions per (channel, partner, status) over ``days``."""
    out: dict[tuple[str, str | None, str], int] = defaultdict(int)
    for day in days:
        for key, n in day.statuses.items():
            out[key] += n
    return dict(out)


def status_totals(store: Store, today: dt.date) -> dict[tuple[str, str | None, str], int]:
    """Transmissions per (channel, partner, status), every day from the oldest
    transmission's to ``today``; summed again only when a day changed."""
    cache = cache_of(store)
    first = cache.earliest()
    if first is None:
        return {}
    last = max(first, today)
    with cache.lock:  # reentrant: get_days takes it too
        days = cache.get_days(first, last)
        kept = cache.totals
        if kept is not None and kept[:3] == (cache.generation, first, last):
            return dict(kept[3])
        totals = merge_status_counts(days.values())
        cache.totals = (cache.generation, first, last, totals)
    return dict(totals)


@dataclass(frozen=True, slots=True)
class Inbound:
    """Every day's ``received``, ``documents`` and ``last_in`` merged (see ``Day``)."""

    received: dict[tuple[str, str | None], list[int]]
    documents: dict[tuple[str, str | None], list[int]]
    last_in: dict[str, dt.datetime]


def inbound_totals(store: Store, today: dt.date) -> Inbound:
    """What came in since the oldest transmission, from the per-day figures: a call reads
    again only the days that changed since the last."""
    cache = cache_of(store)
    first = cache.earliest()
    received: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    documents: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0, 0])
    last_in: dict[str, dt.datetime] = {}
    if first is None:
        return Inbound({}, {}, {})
    with cache.lock:
        days = cache.get_days(first, max(first, today))
        for day in days.values():
            for key, (n, size) in day.received.items():
                cell = received[key]
                cell[0] += n
                cell[1] += size
            for key, counts in day.documents.items():
                cell = documents[key]
                for i, n in enumerate(counts):
                    cell[i] += n
            for partner, at in day.last_in.items():
                if partner not in last_in or last_in[partner] < at:
                    last_in[partner] = at
    return Inbound(dict(received), dict(documents), last_in)
