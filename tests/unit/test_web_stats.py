"""Statistics for the console: volume, order value per currency and the electronic share."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from gateway.store import schema as s
from gateway.store.db import NewDocument, Store
from gateway.store.read import stats

MON = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday


@pytest.fixture
def store(tmp_path):
    st = Store.from_url(f"sqlite:///{tmp_path / 'stats.sqlite3'}")
    yield st
    st.close()


def _order(number: str, currency: str | None, lines: list[dict]) -> bytes:
    return json.dumps({"schema": "edigw.order/1", "order_number": number, "currency": currency,
                       "lines": lines}).encode()


def _receive(store: Store, *, at: dt.datetime, partner: str, channel: str, fmt: str,
             orders: list[bytes], fail: bool = False) -> str:
    tid = store.record_received(channel=channel, channel_ref=None, filename="f", size=1,
                                sha256=f"{hash((at, partner, channel)) & 0xFFFF:064x}")
    if fail:
        store.record_failed(tid, stage="parse", reason="broken")
    else:
        store.record_processed(tid, partner_id=partner, fmt=fmt, standard=None, docs=[
            NewDocument(doc_type="order", schema_version="edigw.order/1",
                        business_number=f"{tid}-{n}", interchange_ref=None, message_ref=None,
                        message_id=f"{tid}-{n}", payload=p, routing_key="order")
            for n, p in enumerate(orders)])
    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                     .values(received_at=at, partner_id=partner))
    return tid


def test_order_amount_uses_line_amount_else_quantity_times_price_per_basis():
    """A line's amount wins; otherwise quantity × unit price ÷ price basis; no price adds 0."""
    payload = {"lines": [{"quantity": "2", "line_amount": "10.50"},
                         {"quantity": "3", "unit_price": "4", "price_basis_quantity": "2"},
                         {"quantity": "7"}]}
    assert stats.order_amount(payload) == Decimal("16.50")


def test_bucket_start_weeks_begin_on_monday():
    """A Sunday belongs to the week of the Monday before it; a day bucket is the day."""
    sunday = MON + dt.timedelta(days=6, hours=14)
    assert stats.bucket_start(sunday, "week") == MON.date()
    assert stats.bucket_start(sunday, "day") == sunday.date()
    with pytest.raises(ValueError):
        stats.bucket_start(sunday, "month")  # type: ignore[arg-type]


def test_volume_counts_transmissions_documents_and_failures_per_day_partner_channel(store):
    """Two EDIFACT files and a failed one on Monday, an SMS on Tuesday: one row per cell."""
    line = [{"quantity": "1", "line_amount": "5"}]
    _receive(store, at=MON, partner="acme", channel="sftp", fmt="edifact",
             orders=[_order("1", "EUR", line), _order("2", "EUR", line)])
    _receive(store, at=MON + dt.timedelta(hours=1), partner="acme", channel="sftp",
             fmt="edifact", orders=[_order("3", "EUR", line)])
    _receive(store, at=MON + dt.timedelta(hours=2), partner="acme", channel="sftp",
             fmt="edifact", orders=[], fail=True)
    _receive(store, at=MON + dt.timedelta(days=1), partner="kiosk", channel="sms", fmt="sms",
             orders=[_order("4", None, [])])
    rows = stats.volume(store, MON, MON + dt.timedelta(days=7), "day")
    got = [(r.bucket.isoformat(), r.partner, r.channel, r.transmissions, r.documents, r.failures)
           for r in rows]
    assert ("2026-03-02", "acme", "sftp", 2, 3, 0) in got
    assert ("2026-03-03", "kiosk", "sms", 1, 1, 0) in got
    assert sum(r.failures for r in rows) == 1
    assert [r.partner for r in stats.volume(store, MON, None, "week", partner="kiosk")] == ["kiosk"]
    assert stats.volume(store, MON + dt.timedelta(days=7), None) == []


def test_value_sums_order_lines_per_partner_and_currency(store):
    """Orders in EUR and in CHF are summed apart; orders outside the range are left out."""
    _receive(store, at=MON, partner="acme", channel="as2", fmt="edifact", orders=[
        _order("1", "EUR", [{"quantity": "2", "unit_price": "3.25"}]),
        _order("2", "CHF", [{"quantity": "1", "line_amount": "100"}])])
    _receive(store, at=MON + dt.timedelta(days=2), partner="acme", channel="as2", fmt="edifact",
             orders=[_order("3", "EUR", [{"quantity": "1", "line_amount": "1.50"}])])
    _receive(store, at=MON - dt.timedelta(days=30), partner="acme", channel="as2", fmt="edifact",
             orders=[_order("0", "EUR", [{"quantity": "1", "line_amount": "999"}])])
    rows = {(r.currency, r.orders): r.amount for r in stats.value(store, MON, None, "week")}
    assert rows == {("EUR", 2): Decimal("8.00"), ("CHF", 1): Decimal("100")}
    assert stats.value(store, MON, None)[0].as_dict()["amount"] in {"8.00", "100"}


def test_electronic_share_compares_edi_formats_with_sms_and_pdf_per_week(store):
    """Three EDI orders and one SMS order in a week: a share of 0.75; the next week none."""
    _receive(store, at=MON, partner="acme", channel="sftp", fmt="edifact",
             orders=[_order("1", "EUR", []), _order("2", "EUR", [])])
    _receive(store, at=MON + dt.timedelta(days=1), partner="acme", channel="email", fmt="xml",
             orders=[_order("3", "EUR", [])])
    _receive(store, at=MON + dt.timedelta(days=2), partner="kiosk", channel="sms", fmt="sms",
             orders=[_order("4", None, [])])
    _receive(store, at=MON + dt.timedelta(days=8), partner="kiosk", channel="sms", fmt="sms",
             orders=[_order("5", None, [])])
    rows = stats.electronic_share(store, MON, None, "week")
    assert [(r.bucket, r.orders, r.electronic, r.manual, r.share) for r in rows] == [
        (MON.date(), 4, 3, 1, 0.75), (MON.date() + dt.timedelta(days=7), 1, 0, 1, 0.0)]
    assert rows[0].as_dict()["share"] == 0.75
