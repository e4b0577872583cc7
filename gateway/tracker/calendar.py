"""Business days and deadlines in the tracker's timezone.

Cadences say "orders every business day before 10:00": local days and local times of
``[tracker] timezone``, with ``holidays`` as non-working days. The store keeps UTC; this
module turns a local day into its UTC bounds and a local "HH:MM" into a UTC deadline.
A day on which summer time starts or ends is 23 or 25 hours long; a deadline at a local time
that does not exist that day (skipped by the clocks going forward) falls one hour later.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable

#: Cadence day names (``Cadence.days``), Monday first as ``date.weekday()`` counts.
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKING_WEEK = WEEKDAYS[:5]


class BusinessCalendar:
    """Local days of one timezone, with non-working days."""

    def __init__(self, timezone: str = "Europe/Paris",
                 holidays: Iterable[dt.date] = ()) -> None:
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.holidays = frozenset(holidays)

    def local_date(self, when: dt.datetime) -> dt.date:
        """The local day ``when`` (timezone-aware) falls on."""
        return when.astimezone(self.tz).date()

    def is_holiday(self, day: dt.date) -> bool:
        return day in self.holidays

    def is_business_day(self, day: dt.date, days: Iterable[str] = WORKING_WEEK) -> bool:
        """``day`` is one of ``days`` (mon … sun) and not a non-working day."""
        return WEEKDAYS[day.weekday()] in set(days) and day not in self.holidays

    def day_bounds(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The UTC start (inclusive) and end (exclusive) of the local ``day``."""
        return self.at(day, "00:00"), self.at(day + dt.timedelta(days=1), "00:00")

    def at(self, day: dt.date, hhmm: str) -> dt.datetime:
        """The UTC instant of local time ``hhmm`` ("10:00") on ``day``: a cadence's
        deadline."""
        hour, minute = (int(x) for x in hhmm.split(":"))
        local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=self.tz)
        # A wall time in the spring-forward gap does not exist; round-tripping through UTC
        # gives the instant the clocks show after the jump (02:30 -> 03:30).
        return local.astimezone(dt.UTC)

    def days_back(self, until: dt.date, count: int) -> list[dt.date]:
        """``count`` local days ending with ``until``, oldest first."""
        return [until - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]
