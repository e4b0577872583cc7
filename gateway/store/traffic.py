"""Inbound traffic per day and partner, in the console's zone, in ``traffic_days``: what the
manager's dropped clients sum (a few rows per day instead of every transmission of five
weeks).

A day's row of a partner holds its inbound transmissions that are not duplicates, their
documents (``document_count``) and the last one's ``received_at``, as the grouped query over
``transmissions`` counted them; a day is held whole or not at all (``traffic_days_held``,
a day without traffic too). Nothing in the pipeline writes here: the rollup is a cache of
the transmissions, filled on read for the days asked (``refresh``, one grouped query per
day on ``(direction, received_at)``) and emptied at will.

- **Changes**: every write of a transmission's partner, status or document count sets its
  ``updated_at``. ``traffic_coverage.as_of`` remembers until when the changes were read; a
  refresh reads the ``received_at`` of what changed since (less an hour's margin for
  transactions that committed late, an index range on ``updated_at``) and drops the held
  days they fall on: a day asked and dropped is counted again, in the same refresh.
- **Day**: cut at midnight in the zone; a change of zone empties the rollup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.core import clock
from gateway.core.status import TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: What a refresh reads again before the end of what it read (late commits).
MARGIN = dt.timedelta(hours=1)
#: Days deleted or inserted per statement.
CHUNK = 500


def midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The start of ``day`` in ``zone``, in UTC."""
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _upsert(conn: sa.Connection, table: sa.Table, keys: list[str],
            rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, or overwrite the row with the same key (two refreshes at once)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        ins: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ins = sqlite_insert(table)
    rest = [c.name for c in table.columns if c.name not in keys]
    q = (ins.on_conflict_do_update(index_elements=keys,
                                   set_={k: ins.excluded[k] for k in rest})
         if rest else ins.on_conflict_do_nothing(index_elements=keys))
    conn.execute(q, rows)


def _count_day(conn: sa.Connection, day: dt.date, zone: ZoneInfo) -> list[dict[str, Any]]:
    """The rows of ``day``: one grouped query over its transmissions."""
    t = s.transmissions
    q = (sa.select(t.c.partner_id, sa.func.count().label("files"),
                   sa.func.sum(sa.func.coalesce(t.c.document_count, 0)).label("docs"),
                   sa.func.max(t.c.received_at).label("last_at"))
         .where(t.c.direction == "in")
         .where(t.c.received_at >= midnight(day, zone))
         .where(t.c.received_at < midnight(day + dt.timedelta(days=1), zone))
         .where(t.c.partner_id.is_not(None))
         .where(t.c.status != TransmissionStatus.DUPLICATE)
         .group_by(t.c.partner_id))
    return [dict(day=day, partner_id=r.partner_id, transmissions=int(r.files),
                 documents=int(r.docs or 0), last_received_at=aware(r.last_at))
            for r in conn.execute(q)]


def _chunks(days: Iterable[dt.date]) -> list[list[dt.date]]:
    ordered = sorted(set(days))
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


def refresh(store: Store, zone: ZoneInfo, first: dt.date, last: dt.date) -> None:
    """Make ``traffic_days`` hold the days ``first`` … ``last`` (in ``zone``) as the
    transmissions stand now: drop the held days a transmission changed on since the last
    refresh, count the days asked that are not held."""
    c, h, td, t = s.traffic_coverage, s.traffic_days_held, s.traffic_days, s.transmissions
    now = aware(clock.now()).astimezone(dt.UTC)  # before reading: a later change is seen
    with store.engine.connect() as conn:
        cov = conn.execute(sa.select(c.c.zone, c.c.as_of).where(c.c.id == 1)).first()
    if cov is not None and cov.zone != zone.key:
        clear(store)  # days were cut in another zone: start again
        cov = None
    with store.engine.connect() as conn:
        held: set[dt.date] = set()
        changed: set[dt.date] = set()
        dropped: set[dt.date] = set()
        if cov is not None:
            held = set(conn.execute(sa.select(h.c.day).where(h.c.day >= first)
                                    .where(h.c.day <= last)).scalars())
            since = aware(cov.as_of).astimezone(dt.UTC) - MARGIN
            changed = {aware(at).astimezone(zone).date() for at in conn.execute(
                sa.select(t.c.received_at).where(t.c.updated_at >= since)
                .where(t.c.direction == "in")).scalars()}
            for days in _chunks(changed):
                dropped.update(conn.execute(sa.select(h.c.day).where(h.c.day.in_(days)))
                               .scalars())
        wanted = [d for d in _days(first, last) if d not in held or d in dropped]
        counted = [row for day in wanted for row in _count_day(conn, day, zone)]
    if (cov is not None and not dropped and not wanted
            and not (changed and now - aware(cov.as_of) > MARGIN)):
        return  # nothing held changed, nothing to add: no write per read
    with store._begin() as conn:
        for days in _chunks(dropped | set(wanted)):
            conn.execute(td.delete().where(td.c.day.in_(days)))
            conn.execute(h.delete().where(h.c.day.in_(days)))
        _upsert(conn, td, ["day", "partner_id"], counted)
        _upsert(conn, h, ["day"], [{"day": d} for d in wanted])
        _upsert(conn, c, ["id"], [{"id": 1, "zone": zone.key, "as_of": now}])

def clear(store: Store) -> None:
    """Empty the rollup (it fills again on the next read)."""
    with store._begin() as conn:
        conn.execute(s.traffic_days.delete())
        conn.execute(s.traffic_days_held.delete())
        conn.execute(s.traffic_coverage.delete())


__all__ = ["clear", "refresh"]
