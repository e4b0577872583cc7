"""The console's per-day aggregates (``gateway.store.read.daily``): whole-day ranges answered
from memory give what reading the transmissions gives, and a change through the store (a new
file, a failure on a past day) is seen at the next read."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.core import clock
from gateway.store import schema as s
from gateway.store.db import NewDocument, Store
from gateway.store.read import daily, stats

DAY0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # a Monday, midnight UTC
JUST_BEFORE = DAY0 - dt.timedelta(microseconds=1)  # the same range, read from the store


@pytest.fixture
def pinned():
    fixed = clock.FixedClock(DAY0 + dt.timedelta(hours=9))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(None)


@pytest.fixture
def store(store_url, pinned):
    st = Store.from_url(store_url)
    yield st
    st.close()


def _order(number: str, currency: str, amount: str) -> bytes:
    return json.dumps({"order_number": number, "currency": currency,
                       "lines": [{"quantity": "1", "line_amount": amount}]}).encode()


def _receive(store: Store, *, partner: str, channel: str, fmt: str, orders: list[bytes],
             fail: bool = False) -> str:
    tid = store.record_received(channel=channel, channel_ref=None, filename="f", size=1,
                                sha256=f"{hash((clock.now(), partner, channel)) & 0xFFFFFF:064x}",
                                partner_id=partner)
    if fail:
        store.record_failed(tid, stage="parse", reason="broken", partner_id=partner, fmt=fmt)
    else:
        store.record_processed(tid, partner_id=partner, fmt=fmt, standard=None, docs=[
            NewDocument(doc_type="order", schema_version="edigw.order/1",
                        business_number=f"{tid}-{n}", interchange_ref=None, message_ref=None,
                        message_id=f"{tid}-{n}", payload=p, routing_key="order")
            for n, p in enumerate(orders)])
    return tid


def _week(store: Store, pinned: clock.FixedClock) -> None:
    for day in range(4):
        pinned.set(DAY0 + dt.timedelta(days=day, hours=10))
        _receive(store, partner="acme", channel="sftp", fmt="edifact",
                 orders=[_order(f"{day}-1", "EUR", "10"), _order(f"{day}-2", "CHF", "3")])
        pinned.advance(hours=2)
        _receive(store, partner="kiosk", channel="sms", fmt="sms",
                 orders=[_order(f"{day}-3", "EUR", "7.5")])
        _receive(store, partner="acme", channel="as2", fmt="edifact", orders=[], fail=day == 2)


def _same(store: Store, partner: str | None = None) -> None:
    for bucket in ("day", "week"):
        assert stats.volume(store, DAY0, None, bucket, partner) == stats.volume(
            store, JUST_BEFORE, None, bucket, partner)
        assert stats.value(store, DAY0, None, bucket, partner) == stats.value(
            store, JUST_BEFORE, None, bucket, partner)
        assert stats.electronic_share(store, DAY0, None, bucket, partner) == \
            stats.electronic_share(store, JUST_BEFORE, None, bucket, partner)


def test_whole_days_are_answered_as_the_store_reads_them(store, pinned):
    """Volume, value and electronic share over whole days equal the answer read from the
    transmissions, for every partner and for one; status counts equal counts_by_status."""
    _week(store, pinned)
    _same(store)
    _same(store, "acme")
    assert stats.status_counts(store) == store.counts_by_status()
    assert daily.whole_days(DAY0, None, pinned().date()) == (DAY0.date(), pinned().date())
    assert daily.whole_days(JUST_BEFORE, None, pinned().date()) is None


def _per_day(store: Store) -> dict[dt.date, int]:
    out: dict[dt.date, int] = {}
    for r in stats.volume(store, DAY0, None, "day"):
        out[r.bucket] = out.get(r.bucket, 0) + r.transmissions
    return out


def test_a_change_after_a_read_is_seen_at_the_next_read(store, pinned):
    """Read (the days are kept), then a new file today and a failure recorded for a file of
    the first day: the next read counts both, as the store does."""
    _week(store, pinned)
    before = _per_day(store)
    late = _receive(store, partner="acme", channel="sftp", fmt="edifact",
                    orders=[_order("late", "EUR", "1")])
    pinned.set(DAY0 + dt.timedelta(days=6))
    old = _receive(store, partner="acme", channel="folder", fmt="csv", orders=[])
    with store.engine.begin() as conn:  # received on the first day, failed only now
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == old)
                     .values(received_at=DAY0 + dt.timedelta(hours=1)))
    store.record_failed(old, stage="parse", reason="late failure", partner_id="acme",
                        fmt="csv")
    after = _per_day(store)
    assert late and after[DAY0.date() + dt.timedelta(days=3)] == \
        before[DAY0.date() + dt.timedelta(days=3)] + 1
    assert after[DAY0.date()] == before[DAY0.date()] + 1
    _same(store)
    assert stats.status_counts(store) == store.counts_by_status()


def test_volume_totals_sum_the_volume_rows_per_channel_format_and_day(store, pinned):
    """The charts' totals equal the volume rows summed per day and channel, per day and
    format, and failures per day, for whole days and for any range."""
    _week(store, pinned)
    for since in (DAY0, JUST_BEFORE):
        for partner in (None, "acme"):
            totals = stats.volume_totals(store, since, None, partner)
            channels: dict = {}
            formats: dict = {}
            failures: dict = {}
            for r in stats.volume(store, since, None, "day", partner):
                channels.setdefault(r.bucket, {}).setdefault(r.channel, 0)
                channels[r.bucket][r.channel] += r.transmissions
                formats.setdefault(r.bucket, {}).setdefault(r.format, 0)
                formats[r.bucket][r.format] += r.transmissions
                failures[r.bucket] = failures.get(r.bucket, 0) + r.failures
            assert totals.by_channel == channels and totals.by_format == formats
            assert totals.failures == failures
            assert sum(failures.values()) == (1 if partner in (None, "acme") else 0)


def test_the_log_total_from_the_days_is_the_count_in_sql(store, pinned):
    """The console log's total read from the per-day figures (partner, channel, statuses,
    a client's scope) equals the SQL count, before and after a new file and a failure."""
    from gateway.core.scope import Scope
    from gateway.store.read.transmissions import NO_PARTNER, LogQuery, transmission_count

    _week(store, pinned)
    queries = [LogQuery(), LogQuery(partner="acme"), LogQuery(channel="sms"),
               LogQuery(statuses=("FAILED",)), LogQuery(partner="acme", channel="as2"),
               LogQuery(partner=NO_PARTNER), LogQuery(partner="nobody")]
    scopes = [Scope(), Scope(partner="kiosk")]

    def check() -> None:
        for q in queries:
            for scope in scopes:
                assert transmission_count(store, q, scope, by_day=True) == \
                    transmission_count(store, q, scope), (q, scope)

    check()
    assert transmission_count(store, LogQuery(), by_day=True) == 12
    _receive(store, partner="acme", channel="sftp", fmt="edifact", orders=[], fail=True)
    store.record_received(channel="folder", channel_ref=None, filename="who.edi", size=1,
                          sha256="e" * 64, partner_id=None)
    check()
    assert transmission_count(store, LogQuery(), by_day=True) == 14
    # what the days do not keep is counted in SQL
    assert transmission_count(store, LogQuery(direction="in", text="who.edi"), by_day=True) == 1
