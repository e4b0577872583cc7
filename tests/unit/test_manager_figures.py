"""The manager page's figures over a store filled with documents: values per currency and
period, credit notes, forecasts against actual, the electronic share and dropped clients."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gateway.core.status import DocumentStatus
from gateway.store import quarantine
from gateway.store import schema as s
from gateway.store import values as rollup
from gateway.store.db import NewDocument, Store
from gateway.store.forecasts import ForecastBook, ForecastError, check_forecast, parse_csv
from gateway.store.read import manager

PARIS = ZoneInfo("Europe/Paris")
MON = dt.date(2026, 3, 2)  # a Monday
MANUAL = frozenset({"sms", "pdf"})


@pytest.fixture
def store(store_url):
    """A new store on SQLite, then on PostgreSQL."""
    st = Store.from_url(store_url)
    yield st
    st.close()


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), PARIS).astimezone(dt.UTC)


def _order(currency: str | None, amount: str) -> tuple[str, bytes]:
    return "order", json.dumps({"schema": "edigw.order/1", "order_number": "1",
                                "currency": currency,
                                "lines": [{"quantity": "1", "line_amount": amount}]}).encode()


def _invoice(currency: str, net: str, invoice_type: str = "380",
             function: str | None = None) -> tuple[str, bytes]:
    doc: dict = {"schema": "edigw.invoice/1", "invoice_number": "I", "currency": currency,
                 "invoice_type": invoice_type,
                 "totals": {"tax_exclusive": net, "tax_inclusive": str(Decimal(net) * 2)}}
    if function:
        doc["function"] = function
    return "invoice", json.dumps(doc).encode()


def _receive(store: Store, *, at: dt.datetime, partner: str, docs: list[tuple[str, bytes]],
             fmt: str = "edifact", direction: str = "in") -> str:
    tid = store.record_received(channel="folder", channel_ref=None, filename="f", size=1,
                                sha256=f"{hash((at, partner, len(docs), fmt)) & 0xFFFFFF:064x}")
    store.record_processed(tid, partner_id=partner, fmt=fmt, standard=None, docs=[
        NewDocument(doc_type=kind, schema_version="1", business_number=f"{tid}-{n}",
                    interchange_ref=None, message_ref=None, message_id=f"{tid}-{n}",
                    payload=payload, routing_key=kind)
        for n, (kind, payload) in enumerate(docs)])
    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                     .values(received_at=at, partner_id=partner, direction=direction))
    return tid


def test_values_per_week_and_month_per_currency_partner_and_in_total(store):
    """Orders in EUR and CHF are summed apart, per partner and in total; a month holds
    both weeks; days outside the range are left out."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "100"),
                                                        _order("CHF", "40")])
    _receive(store, at=_at(MON + dt.timedelta(days=7)), partner="acme",
             docs=[_order("EUR", "10.50")])
    _receive(store, at=_at(MON + dt.timedelta(days=8)), partner="kiosk",
             docs=[_order("EUR", "5")])
    _receive(store, at=_at(MON - dt.timedelta(days=40)), partner="acme",
             docs=[_order("EUR", "999")])
    last = MON + dt.timedelta(days=13)
    weekly = {(r.label, r.partner_id, r.currency): (r.orders, r.order_value)
              for r in manager.values(store, PARIS, MON, last, "week")}
    assert weekly == {("2026-W10", "acme", "CHF"): (1, Decimal("40.00")),
                      ("2026-W10", "acme", "EUR"): (1, Decimal("100.00")),
                      ("2026-W11", "acme", "EUR"): (1, Decimal("10.50")),
                      ("2026-W11", "kiosk", "EUR"): (1, Decimal("5.00"))}
    total = {(r.label, r.currency): r.order_value for r in manager.values(
        store, PARIS, MON, last, "month", by_partner=False)}
    assert total == {("2026-03", "CHF"): Decimal("40.00"), ("2026-03", "EUR"): Decimal("115.50")}
    only = manager.values(store, PARIS, MON, last, "month", "kiosk")
    assert [(r.partner_id, r.order_value) for r in only] == [("kiosk", Decimal("5.00"))]


def test_a_day_is_cut_in_the_console_zone(store):
    """An order at 23:30 UTC on Sunday is Monday in Paris: it counts in Monday's week."""
    sunday_late = dt.datetime.combine(MON - dt.timedelta(days=1), dt.time(23, 30), dt.UTC)
    _receive(store, at=sunday_late, partner="acme", docs=[_order("EUR", "7")])
    rows = manager.values(store, PARIS, MON - dt.timedelta(days=7), MON + dt.timedelta(days=6),
                          "week")
    assert [(r.label, r.order_value) for r in rows] == [("2026-W10", Decimal("7.00"))]


def test_credit_notes_count_negative_and_copies_not_at_all(store):
    """An invoice of 200 sent, a credit note of 50 sent, a copy of the invoice: 150
    invoiced; an invoice the partner sent us counts apart."""
    _receive(store, at=_at(MON), partner="acme", direction="out",
             docs=[_invoice("EUR", "200.00"), _invoice("EUR", "50.00", "381"),
                   _invoice("EUR", "200.00", function="copy")])
    _receive(store, at=_at(MON), partner="acme", docs=[_invoice("EUR", "30")])
    [row] = manager.values(store, PARIS, MON, MON, "week")
    assert (row.invoices_sent, row.invoiced_sent) == (2, Decimal("150.00"))
    assert (row.invoices_received, row.invoiced_received) == (1, Decimal("30.00"))
    assert row.orders == 0


def test_invoice_amount_takes_net_total_then_lines():
    """tax_exclusive first; else line total + charges − allowances; else the lines."""
    assert rollup.invoice_amount({"totals": {"tax_exclusive": "10", "line_total": "99"}}) == 10
    assert rollup.invoice_amount({"totals": {"line_total": "100", "charge_total": "5",
                                             "allowance_total": "15"}}) == 90
    assert rollup.invoice_amount({"lines": [{"line_net_amount": "2.5"},
                                            {"line_net_amount": "4"}]}) == Decimal("6.5")
    assert rollup.invoice_amount({"invoice_type": "381", "totals": {"tax_exclusive": "-8"}}) == -8
    assert rollup.invoice_amount({"function": "cancel", "totals": {"tax_exclusive": "8"}}) == -8


def test_a_document_released_later_counts_once_it_is_released(store):
    """A CONFLICT order does not count; released (PENDING), it does on the next read."""
    tid = _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "20")])
    with store.engine.begin() as conn:
        conn.execute(s.documents.update().where(s.documents.c.transmission_id == tid)
                     .values(status=DocumentStatus.CONFLICT))
    assert manager.values(store, PARIS, MON, MON, "week") == []
    with store.engine.begin() as conn:
        conn.execute(s.documents.update().where(s.documents.c.transmission_id == tid)
                     .values(status=DocumentStatus.PENDING))
    [row] = manager.values(store, PARIS, MON, MON, "week")
    assert row.order_value == Decimal("20.00")


def test_documents_arriving_after_a_read_are_added_and_not_counted_twice(store):
    """The rollup fills what came since the last read, and an older range on request."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "1")])
    assert manager.values(store, PARIS, MON, MON, "week")[0].order_value == Decimal("1.00")
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "2")])
    assert manager.values(store, PARIS, MON, MON, "week")[0].order_value == Decimal("3.00")
    assert manager.values(store, PARIS, MON, MON, "week")[0].orders == 2
    with store.engine.connect() as conn:
        assert len(conn.execute(s.document_values.select()).all()) == 2


def test_a_change_of_zone_cuts_the_days_again(store):
    """The same order late on Sunday UTC is Sunday in UTC and Monday in Paris."""
    sunday_late = dt.datetime.combine(MON - dt.timedelta(days=1), dt.time(23, 30), dt.UTC)
    _receive(store, at=sunday_late, partner="acme", docs=[_order("EUR", "7")])
    week = (MON - dt.timedelta(days=7), MON + dt.timedelta(days=6))
    assert manager.values(store, PARIS, *week, "week")[0].label == "2026-W10"
    assert manager.values(store, ZoneInfo("UTC"), *week, "week")[0].label == "2026-W09"


def test_electronic_share_per_week_counts_sms_and_pdf_as_manual(store):
    """Two EDIFACT orders and one SMS order: 66.7 %; an empty week shows with no share."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "1"), _order("EUR", "1")])
    _receive(store, at=_at(MON), partner="kiosk", fmt="sms", docs=[_order(None, "1")])
    rows = manager.electronic_share(store, PARIS, MON, MON + dt.timedelta(days=13),
                                    manual=MANUAL)
    assert [(r.label, r.orders, r.electronic, r.manual, r.share) for r in rows] == [
        ("2026-W10", 3, 2, 1, 66.7), ("2026-W11", 0, 0, 0, None)]


def test_forecast_gap_against_the_whole_month(store):
    """A forecast of 1000 EUR for March against 800 ordered: −200, −20 %; a forecast in
    CHF with nothing ordered: −100 %."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "500")])
    _receive(store, at=_at(dt.date(2026, 3, 30)), partner="acme", docs=[_order("EUR", "300")])
    book = ForecastBook(store)
    book.put([check_forecast("acme", "2026-03", "EUR", "1000"),
              check_forecast("acme", "2026-03", "chf", "100")], by="test")
    gaps = {(g.currency): g for g in manager.forecast_gaps(
        store, PARIS, "2026-03", "2026-03", today=dt.date(2026, 4, 2))}
    assert (gaps["EUR"].actual, gaps["EUR"].gap, gaps["EUR"].gap_percent) == (
        Decimal("800.00"), Decimal("-200.00"), -20.0)
    assert gaps["EUR"].complete
    assert (gaps["CHF"].actual, gaps["CHF"].gap_percent) == (Decimal("0.00"), -100.0)
    book.put([check_forecast("acme", "2026-03", "EUR", "700")], by="test")
    [eur] = [g for g in manager.forecast_gaps(store, PARIS, "2026-03", "2026-03",
                                              today=dt.date(2026, 3, 15)) if g.currency == "EUR"]
    assert (eur.forecast, eur.gap_percent, eur.complete) == (Decimal("700"), 14.3, False)


def test_forecast_csv_names_the_bad_line_and_writes_nothing_of_it():
    """A month 2026-13 on line 3 is refused with its line, field and value."""
    good = "partner_id,month,currency,amount\nacme,2026-03,EUR,1000\n"
    assert parse_csv(good, known={"acme"})[0].amount == Decimal("1000")
    assert parse_csv("partner_id;month;currency;amount\nacme;2026-03;eur;12.5\n")[0].currency \
        == "EUR"
    with pytest.raises(ForecastError) as bad:
        parse_csv(good + "acme,2026-13,EUR,5\n", known={"acme"})
    assert (bad.value.line, bad.value.field, bad.value.value) == (3, "month", "2026-13")
    with pytest.raises(ForecastError, match="no such partner"):
        parse_csv("partner_id,month,currency,amount\nnope,2026-03,EUR,1\n", known={"acme"})
    with pytest.raises(ForecastError, match="missing amount"):
        parse_csv("partner_id,month,currency\nacme,2026-03,EUR\n")
    with pytest.raises(ForecastError, match="given twice"):
        parse_csv(good + "acme,2026-03,EUR,5\n")


def test_a_small_client_that_stopped_is_listed_with_its_figures(store):
    """kiosk sent one document a week for four weeks and none last week: listed at 0 %; acme
    kept its 10 a week: not listed; a partner new last week is not listed."""
    last = MON + dt.timedelta(days=34)  # the Sunday ending the fifth week
    for w in range(4):
        day = MON + dt.timedelta(days=7 * w + 1)
        _receive(store, at=_at(day), partner="kiosk", docs=[_order("EUR", "1")])
        _receive(store, at=_at(day), partner="acme", docs=[_order("EUR", "1")] * 10)
    _receive(store, at=_at(MON + dt.timedelta(days=29)), partner="acme",
             docs=[_order("EUR", "1")] * 9)
    _receive(store, at=_at(MON + dt.timedelta(days=29)), partner="newbie",
             docs=[_order("EUR", "1")])
    rows = manager.dropped_clients(store, PARIS, last, threshold=50)
    assert [(r.partner_id, r.week, r.documents, r.average, r.percent) for r in rows] == [
        ("kiosk", "2026-W14", 0, 1.0, 0.0)]
    assert rows[0].last_received_at is not None
    strict = manager.dropped_clients(store, PARIS, last, threshold=95)
    assert [r.partner_id for r in strict] == ["kiosk", "acme"]
    # Asked on the Saturday, the week compared is the one before.
    assert manager.dropped_clients(store, PARIS, last - dt.timedelta(days=1)) == []


def test_a_range_backwards_or_too_long_is_refused(store):
    with pytest.raises(manager.RangeError, match="before from"):
        manager.values(store, PARIS, MON, MON - dt.timedelta(days=1), "week")
    with pytest.raises(manager.RangeError, match="at most"):
        manager.values(store, PARIS, MON - dt.timedelta(days=5000), MON, "week")


def test_two_fills_of_the_same_documents_count_them_once(store):
    """Two requests filling the same window at once (their reads before either wrote): the
    second insert writes nothing, and the day's sums count each order once."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "4"), _order("EUR", "6")])
    d, t = s.documents, s.transmissions
    q = (sa.select(d.c.id, d.c.partner_id, d.c.doc_type, d.c.status, d.c.payload,
                   t.c.received_at, t.c.format, t.c.direction)
         .select_from(d.join(t, d.c.transmission_id == t.c.id)))
    with store.engine.connect() as conn:
        rows = rollup._rows(list(conn.execute(q)), PARIS)
    for _ in range(2):
        with store._begin() as conn:
            rollup._insert_new(conn, [dict(r) for r in rows])
    [row] = manager.values(store, PARIS, MON, MON, "week")
    assert (row.orders, row.order_value) == (2, Decimal("10.00"))


def test_every_query_reads_an_index_range_not_a_whole_table(tmp_path):
    """SQLite's plans: the fill searches documents by (doc_type, created_at), the sums
    search the week table by week and the day table by day (a range starting on a
    Wednesday), the drops' rollup transmissions by (direction, received_at) and the day
    table by day; no SCAN of a table."""
    st = Store.from_url(f"sqlite:///{tmp_path / 'plans.sqlite3'}")
    seen: list[tuple[str, object]] = []

    @sa.event.listens_for(st.engine, "before_cursor_execute")
    def keep(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            seen.append((statement, params))

    manager.values(st, PARIS, MON + dt.timedelta(days=2), MON + dt.timedelta(days=90), "week")
    manager.dropped_clients(st, PARIS, MON)
    manager.dropped_clients(st, PARIS, MON)  # again: what changed since, from the rollup
    plans: dict[str, list[str]] = {}
    with st.engine.connect() as conn:
        for statement, params in seen:
            plans[statement] = [r[-1] for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params)]  # type: ignore[arg-type]
    st.close()
    text = "\n".join(line for lines in plans.values() for line in lines)
    assert "USING INDEX ix_documents_type_created (doc_type=? AND created_at>? AND" in text
    assert "SEARCH document_value_days USING INDEX" in text
    assert "SEARCH document_value_weeks USING INDEX" in text
    assert "USING INDEX ix_transmissions_direction (direction=? AND received_at>? AND" in text
    assert "SEARCH traffic_days USING INDEX" in text
    scans = [line for line in text.splitlines() if line.startswith("SCAN ")
             and "document_values_coverage" not in line
             and not line.endswith("_unsettled")]  # the partial indexes of the few unsettled
    assert not scans, plans


def _traffic(store, last):
    return {r.partner_id: (r.documents, r.transmissions, r.before)
            for r in manager.dropped_clients(store, PARIS, last, threshold=10_000)}


def test_drops_cut_weeks_at_local_midnight(store):
    """Sunday 23:30 in Paris (21:30 UTC) counts in the weeks before, Monday 00:30 in Paris
    (Sunday 22:30 UTC) in the week compared: the rollup's days are Paris days."""
    week = MON + dt.timedelta(days=28)  # the Monday of the week compared
    sunday = week - dt.timedelta(days=1)
    late = dt.datetime.combine(sunday, dt.time(23, 30), PARIS).astimezone(dt.UTC)
    early = dt.datetime.combine(week, dt.time(0, 30), PARIS).astimezone(dt.UTC)
    assert late.date() == early.date() == sunday  # the same day in UTC
    _receive(store, at=late, partner="kiosk", docs=[_order("EUR", "1")] * 8)
    _receive(store, at=early, partner="kiosk", docs=[_order("EUR", "1")])
    last = week + dt.timedelta(days=6)
    [row] = manager.dropped_clients(store, PARIS, last, threshold=100)
    assert (row.week, row.documents, row.transmissions, row.before) == ("2026-W14", 1, 1, 8)
    assert row.last_received_at == early
    assert _traffic(store, last) == {"kiosk": (1, 1, 8)}  # read again from the rollup


def test_drops_leave_out_duplicates_and_keep_one_document_a_month(store):
    """A duplicate file of kiosk's, however many documents it names, is not counted; a
    partner sending one document a month is listed when its month ends silent."""
    last = MON + dt.timedelta(days=34)
    _receive(store, at=_at(MON + dt.timedelta(days=2)), partner="monthly",
             docs=[_order("EUR", "1")])
    _receive(store, at=_at(MON + dt.timedelta(days=3)), partner="kiosk",
             docs=[_order("EUR", "1")] * 2)
    dup = _receive(store, at=_at(MON + dt.timedelta(days=30)), partner="kiosk",
                   docs=[_order("EUR", "1")] * 3)
    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == dup)
                     .values(status="DUPLICATE", document_count=3))
    rows = manager.dropped_clients(store, PARIS, last)
    assert [(r.partner_id, r.documents, r.transmissions, r.before, r.average)
            for r in rows] == [("kiosk", 0, 0, 2, 0.5), ("monthly", 0, 0, 1, 0.25)]


def test_drops_see_transmissions_that_came_or_changed_after_a_read(store):
    """The rollup of a day already read is counted again when a transmission of that day
    arrives, changes status or is given its partner (a quarantined file attributed)."""
    last = MON + dt.timedelta(days=34)
    day = MON + dt.timedelta(days=30)
    _receive(store, at=_at(MON + dt.timedelta(days=1)), partner="kiosk",
             docs=[_order("EUR", "1")] * 4)
    assert _traffic(store, last) == {"kiosk": (0, 0, 4)}
    tid = _receive(store, at=_at(day), partner="kiosk", docs=[_order("EUR", "1")] * 2)
    assert _traffic(store, last) == {"kiosk": (2, 1, 4)}
    with store.engine.begin() as conn:  # as the store marks one: with updated_at
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                     .values(status="DUPLICATE", updated_at=dt.datetime.now(dt.UTC)))
    assert _traffic(store, last) == {"kiosk": (0, 0, 4)}
    held = store.record_received(channel="folder", channel_ref=None, filename="q", size=1,
                                 sha256="ab" * 32)
    with store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == held).values(
            status="QUARANTINED", stage="identify", reason="unknown sender",
            received_at=_at(day, 11)))
    assert _traffic(store, last) == {"kiosk": (0, 0, 4)}
    assert quarantine.attribute(store, [held], "kiosk") == 1
    assert _traffic(store, last) == {"kiosk": (0, 1, 4)}


def test_drops_cut_the_days_again_in_another_zone(store):
    """A transmission at 23:30 UTC on the Sunday ending the weeks before is Monday in
    Paris: read in UTC, then in Paris, it moves to the week compared."""
    sunday = MON + dt.timedelta(days=27)
    _receive(store, at=dt.datetime.combine(sunday, dt.time(23, 30), dt.UTC),
             partner="kiosk", docs=[_order("EUR", "1")])
    last = MON + dt.timedelta(days=34)
    [utc] = manager.dropped_clients(store, ZoneInfo("UTC"), last, threshold=100)
    assert (utc.documents, utc.before) == (0, 1)
    assert manager.dropped_clients(store, PARIS, last, threshold=100) == []  # 1 of 0 before


def test_a_page_refreshes_the_value_rollup_once(store, monkeypatch):
    """With ``refresh=False`` the figures read the rollup as the caller left it."""
    _receive(store, at=_at(MON), partner="acme", docs=[_order("EUR", "7")])
    calls: list[dt.datetime] = []
    real = rollup.refresh
    monkeypatch.setattr(rollup, "refresh", lambda st, z, since: (calls.append(since),
                                                                  real(st, z, since)))
    manager.refresh(store, PARIS, MON)
    [row] = manager.values(store, PARIS, MON, MON, "week", refresh=False)
    manager.range_values(store, PARIS, MON, MON, refresh=False)
    manager.electronic_share(store, PARIS, MON, MON, manual=MANUAL, refresh=False)
    assert len(calls) == 1 and row.order_value == Decimal("7.00")


def test_whole_weeks_and_other_days_add_up_to_every_day_of_any_range(store):
    """An order every day over ten weeks across a month's end, one more on each Sunday at
    23:30 and Monday at 00:30 in Paris: for ranges starting and ending on any weekday, per
    week, month and over the range, the figures equal the documents of those days counted
    one by one."""
    start = dt.date(2026, 3, 23)  # a Monday; March ends on a Tuesday
    for n in range(70):
        day = start + dt.timedelta(days=n)
        _receive(store, at=_at(day), partner="acme" if n % 3 else "kiosk",
                 docs=[_order("EUR", str(n + 1))])
        if day.weekday() in (0, 6):
            at = dt.datetime.combine(day, dt.time(23, 30) if day.weekday() == 6
                                     else dt.time(0, 30), PARIS).astimezone(dt.UTC)
            _receive(store, at=at, partner="acme", docs=[_order("EUR", "1000")])
    manager.values(store, PARIS, start, start + dt.timedelta(days=69), "week")  # fills
    with store.engine.connect() as conn:
        each = [(r.day, r.partner_id, r.amount_e4) for r in conn.execute(
            sa.select(s.document_values).where(s.document_values.c.counted.is_(True)))]
    for first_off, last_off in ((0, 69), (2, 40), (5, 11), (8, 8), (9, 37), (13, 66)):
        first = start + dt.timedelta(days=first_off)
        last = start + dt.timedelta(days=last_off)
        inside = [e for e in each if first <= e[0] <= last]
        for period in ("week", "month"):
            got = {(r.period, r.partner_id): (r.orders, r.order_value)
                   for r in manager.values(store, PARIS, first, last, period)}
            want: dict = {}
            for day, partner, e4 in inside:
                key = (manager.period_start(day, period), partner)
                n, total = want.get(key, (0, Decimal(0)))
                want[key] = (n + 1, total + Decimal(e4) / 10000)
            assert got == want, (first, last, period)
        got_range = {r.partner_id: r.orders for r in manager.range_values(store, PARIS, first,
                                                                           last)}
        assert got_range == {p: sum(1 for e in inside if e[1] == p)
                             for p in {e[1] for e in inside}}
        share = manager.electronic_share(store, PARIS, first, last, manual=MANUAL)
        assert sum(r.orders for r in share) == len(inside)


def test_the_partial_index_of_unsettled_documents_names_the_unsettled_statuses():
    """The SQL the settle reads the still-held ids with says the statuses ``UNSETTLED``
    holds, as the index ``ix_documents_unsettled`` is defined."""
    named = set(rollup.STILL_HELD.split("(")[1].rstrip(")").replace("'", "").split(", "))
    assert named == {str(x) for x in rollup.UNSETTLED}
    [index] = [i for i in s.documents.indexes if i.name == "ix_documents_unsettled"]
    assert str(index.dialect_options["sqlite"]["where"]) == rollup.STILL_HELD
