"""The tracker's calendar: local business days, their UTC bounds and cadence deadlines."""

import datetime as dt

from gateway.tracker.calendar import BusinessCalendar

PARIS = BusinessCalendar("Europe/Paris", holidays=[dt.date(2026, 12, 25)])


def test_weekdays_are_business_days_and_holidays_and_weekends_are_not():
    """Mon-Fri count by default; a listed holiday and the weekend do not."""
    assert PARIS.is_business_day(dt.date(2026, 12, 24))  # Thursday
    assert not PARIS.is_business_day(dt.date(2026, 12, 25))  # Christmas, a Friday
    assert not PARIS.is_business_day(dt.date(2026, 12, 26))  # Saturday


def test_cadence_days_choose_the_weekdays():
    """A cadence on mon and sat makes Saturday a day, Tuesday not."""
    assert PARIS.is_business_day(dt.date(2026, 12, 26), ["mon", "sat"])
    assert not PARIS.is_business_day(dt.date(2026, 12, 22), ["mon", "sat"])


def test_deadline_is_local_time_in_utc_winter_and_summer():
    """10:00 in Paris is 09:00 UTC in winter and 08:00 UTC in summer."""
    assert PARIS.at(dt.date(2026, 12, 1), "10:00") == dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    assert PARIS.at(dt.date(2026, 7, 1), "10:00") == dt.datetime(2026, 7, 1, 8, tzinfo=dt.UTC)


def test_day_bounds_of_the_spring_forward_day_are_23_hours():
    """29 March 2026 (clocks go forward in Paris) lasts 23 hours, from 23:00 UTC the day
    before."""
    start, end = PARIS.day_bounds(dt.date(2026, 3, 29))
    assert start == dt.datetime(2026, 3, 28, 23, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(hours=23)


def test_deadline_in_the_skipped_hour_falls_after_the_jump():
    """02:30 does not exist on 29 March 2026 in Paris: the deadline is 03:30 local (01:30 UTC)."""
    assert PARIS.at(dt.date(2026, 3, 29), "02:30") == dt.datetime(2026, 3, 29, 1, 30,
                                                                   tzinfo=dt.UTC)


def test_local_date_of_a_utc_time_late_in_the_evening():
    """23:30 UTC on 1 December is already 2 December in Paris."""
    assert PARIS.local_date(dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)) == dt.date(2026, 12, 2)


def test_days_back_ends_with_the_day_given():
    """Three days back from a Monday: Saturday, Sunday, Monday."""
    assert BusinessCalendar("UTC").days_back(dt.date(2026, 11, 30), 3) == [
        dt.date(2026, 11, 28), dt.date(2026, 11, 29), dt.date(2026, 11, 30)]
