"""The manager page in chromium: values per period, a forecast entered and compared, the
dropped-clients table with a small client that stopped, and a CSV export."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from playwright.sync_api import Page, expect

from gateway.store import schema as s
from gateway.store.db import NewDocument
from tests.browser.test_console import login

pytestmark = pytest.mark.integration

#: A small supplier of the seed that sent one order a week for four weeks, then nothing.
SMALL = "brouwer"


def _sunday_before(day: dt.date) -> dt.date:
    """The last Sunday strictly before ``day``: the end of the week the drops compare."""
    return day - dt.timedelta(days=day.weekday() + 1)


def _small_client_history(gw, sunday: dt.date) -> None:
    """One order a week from SMALL on the Tuesdays of the four weeks before the week that
    ends on ``sunday`` (nothing in that week)."""
    store = gw.store
    monday = sunday - dt.timedelta(days=6)
    for weeks in range(1, 5):
        at = dt.datetime.combine(monday - dt.timedelta(weeks=weeks, days=-1), dt.time(12),
                                 dt.UTC)
        tid = store.record_received(channel="folder", channel_ref=None,
                                    filename=f"brouwer-w{weeks}.edi", size=1,
                                    sha256=f"{0xB0 + weeks:064x}")
        body = {"schema": "edigw.order/1", "order_number": f"BR-{weeks}", "currency": "EUR",
                "lines": [{"quantity": "1", "line_amount": "12.50"}]}
        store.record_processed(tid, partner_id=SMALL, fmt="edifact", standard=None, docs=[
            NewDocument(doc_type="order", schema_version="edigw.order/1",
                        business_number=f"BR-{weeks}", interchange_ref=None, message_ref=None,
                        message_id=f"br-{weeks}", payload=json.dumps(body).encode(),
                        routing_key="order")])
        with store.engine.begin() as conn:
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                         .values(received_at=at))


def test_manager_reads_values_enters_a_forecast_sees_drops_and_exports(page: Page, console,
                                                                     shots):
    """The operator opens Manager from the navigation: values per week and per partner, the
    weekly electronic share, brouwer listed as dropped at 0 % of its average; enters a
    forecast for gouden and reads its gap; exports the values as CSV."""
    sunday = _sunday_before(dt.date.today())
    _small_client_history(console.gateway, sunday)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    login(page, "otto")
    page.locator("header nav a", has_text="Manager").click()
    expect(page).to_have_url(re.compile(r"/manager$"))
    expect(page.locator("header nav a.here")).to_have_text("Manager")
    expect(page.locator("h1")).to_have_text("Manager")
    expect(page.locator("figure svg.chart").first).to_be_visible()
    totals = page.locator("table.values-total tbody tr")
    expect(totals.first).not_to_contain_text("No order")
    expect(page.locator("table.values-partner tbody")).to_contain_text("gouden")
    expect(page.locator("table.share tbody tr").last).to_contain_text("%")

    month = dt.date.today().strftime("%Y-%m")
    form = page.locator("form.forecast")
    form.locator("select[name=partner_id]").select_option("gouden")
    form.locator("input[name=month]").fill(month)
    form.locator("input[name=currency]").fill("EUR")
    form.locator("input[name=amount]").fill("1000000")
    form.locator("button").click()
    expect(page.locator(".message")).to_contain_text("forecast saved: gouden")
    row = page.locator(f"#fc-gouden-{month}-EUR")
    expect(row).to_be_visible()
    expect(row.locator(".gap-percent")).to_contain_text("%")
    expect(row.locator(".gap")).to_contain_text("-")  # far below a million
    expect(row).to_have_class(re.compile("below"))

    page.select_option("select[name=period]", "month")
    page.select_option("select[name=scale]", "log")
    page.locator("form.manager-filters button").click()
    expect(page).to_have_url(re.compile(r"period=month"))
    expect(page.locator("table.values-total th").first).to_have_text("Month")
    page.screenshot(path=shots / "manager.png", full_page=True)

    with page.expect_download() as download:
        page.locator("#values a.download").click()
    text = download.value.path().read_text()
    assert text.splitlines()[0].startswith("period,start,partner_id,currency,orders,order_value")
    assert any(line.startswith(f"{month},") for line in text.splitlines()[1:]), text

    # The drops of the week ending last Sunday: brouwer's four orders before, none then.
    page.goto(f"/manager?to={sunday.isoformat()}")
    drop = page.locator(f"#drop-{SMALL}")
    expect(drop).to_be_visible()
    expect(drop).to_contain_text("0.0 %")
    expect(drop).to_contain_text("1.00/week")
    page.locator("#dropped").scroll_into_view_if_needed()
    page.screenshot(path=shots / "manager-dropped.png", full_page=True)
    with page.expect_download() as dropped:
        page.locator("#dropped a.download").click()
    assert f"\n{SMALL}," in dropped.value.path().read_text().replace("\r\n", "\n")
    assert not [m for m in messages if "Content Security Policy" in m], messages
