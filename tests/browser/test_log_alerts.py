"""The transmission log and the alerts at volume, in chromium: a log of 130 transmissions
paged 50 at a time with its total and a CSV export of every matching row; 40 files from one
unknown sender make one quarantine alert counting them, which an operator resolves in bulk
after a confirmation; both pages fit a 1,280 px window without horizontal scrolling.

A console of its own (not the session's), so its counts are exact."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    GOUDEN,
    PASSWORD,
    ROOT,
    Console,
    _profile,
    build_console_app,
)

pytestmark = pytest.mark.integration

ORDER = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
STRANGER = "5499999000009"  # a UNB sender no profile lists
ORDERS = 90
STRANGER_FILES = 40
TOTAL = ORDERS + STRANGER_FILES
WIDTH = 1280


def _order(n: int, sender: str = GOUDEN) -> bytes:
    return (ORDER.replace(b"PO-2024-0107", f"PO-{n:05d}".encode())
            .replace(b"ICR0042", f"ICR{n:05d}".encode())
            .replace(b"5401234000012:14", f"{sender}:14".encode()))


@pytest.fixture(scope="module")
def volume(tmp_path_factory, browser_type_launch_args) -> Iterator[Console]:
    from gateway.app import Gateway
    from gateway.config import load_settings
    from gateway.http.server import HttpServer
    from gateway.tracker.engine import Tracker
    from gateway.web.auth import Users

    tmp = tmp_path_factory.mktemp("volume")
    partners = tmp / "partners"
    partners.mkdir()
    (partners / "gouden.toml").write_text(_profile("gouden", "De Gouden Aar", [GOUDEN], []))
    (tmp / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{partners}"\n'
        f'[store]\nurl = "sqlite:///{tmp / "edigw.sqlite3"}"\n'
        f'[archive]\npath = "{tmp / "archive"}"\nfsync = false\n'
        f'[outbound]\npath = "{tmp / "outbound"}"\n'
        '[tracker]\ntimezone = "Europe/Paris"\n')
    gw = Gateway.open(load_settings(tmp / "gateway.toml", env={}))
    c = Console(url="", gateway=gw, tmp=tmp)
    for n in range(ORDERS):
        c.ingest(_order(n), f"po-{n:05d}.edi")
    for n in range(STRANGER_FILES):
        c.ingest(_order(1000 + n, STRANGER), f"stranger-{n:03d}.edi")
    Tracker(gw.settings.tracker, gw.partners, gw.store).check()
    Users(gw.store).create("otto", PASSWORD, "operator")
    server = HttpServer(build_console_app(gw), port=0).start_in_thread()
    c.url = server.url
    yield c
    server.stop()
    gw.close()


def _login(page: Page, url: str, target: str) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(url + target)
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .user")).to_contain_text("otto")


def _fits(page: Page) -> None:
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= WIDTH, f"{page.url} is {width} px wide in a {WIDTH} px window"


def test_log_pages_through_every_row_with_its_total_and_exports_them(
        page: Page, volume: Console, shots):
    """130 transmissions: "1–50 of 130", next, then the last page "101–130 of 130"; each row
    has its order number and ERP word and one line of reason (the whole in its title); the
    CSV link gives all 130 rows, and the same filtered by the search field."""
    _login(page, volume.url, "/transmissions")
    pager = page.locator("nav.pager").first
    expect(pager.locator(".pager-total")).to_have_text("1–50 of 130")
    expect(page.locator("#log-rows tr")).to_have_count(50)
    newest = page.locator("#log-rows tr").first  # the stranger's last file: no document
    expect(newest.locator("td.numbers")).to_have_text("")
    expect(newest.locator("td.erp")).to_have_text("not applicable")
    order = page.locator("#log-rows tr", has_text="po-00089.edi")
    expect(order.locator("td.numbers")).to_have_text("PO-00089")
    reason = newest.locator("td.reason")
    assert "unknown sender id 5499999000009" in (reason.get_attribute("title") or "")
    assert reason.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    _fits(page)
    page.screenshot(path=shots / "log-page-1.png", full_page=True)
    pager.locator("a.pager-next").click()
    expect(page.locator("nav.pager .pager-total").first).to_have_text("51–100 of 130")
    pager = page.locator("nav.pager").first
    pager.locator("a.pager-last").click()
    expect(page.locator("nav.pager .pager-total").first).to_have_text("101–130 of 130")
    expect(page.locator("#log-rows tr")).to_have_count(30)
    expect(page.locator("#log-rows tr").last.locator("td.numbers")).to_have_text("PO-00000")
    page.screenshot(path=shots / "log-page-last.png", full_page=True)
    href = page.locator("a.export").first.get_attribute("href")
    exported = list(csv.DictReader(io.StringIO(page.request.get(volume.url + href).text())))
    assert len(exported) == TOTAL
    assert {r["order_numbers"] for r in exported} >= {"PO-00000", "PO-00089", ""}
    page.fill("input[name=q]", "PO-00042")
    page.click("form.log-filters button[type=submit]")
    expect(page.locator("nav.pager .pager-total").first).to_have_text("1–1 of 1")
    expect(page).to_have_url(re.compile(r"q=PO-00042"))
    href = page.locator("a.export").first.get_attribute("href")
    assert "q=PO-00042" in href
    one = list(csv.DictReader(io.StringIO(page.request.get(volume.url + href).text())))
    assert [r["filename"] for r in one] == ["po-00042.edi"]
    page.screenshot(path=shots / "log-search.png", full_page=True)


def test_one_alert_for_the_files_of_one_unknown_sender_resolved_in_bulk(
        page: Page, volume: Console, shots):
    """40 files from one unknown sender: one quarantine alert counting 40, linking to the
    quarantined files and to making a partner of the sender; ticked and resolved after a
    confirmation page, it is gone from the open alerts and listed as resolved."""
    _login(page, volume.url, "/alerts")
    rows = page.locator("table.alerts tbody tr.a-open")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator("td.count")).to_contain_text("40 file(s)")
    expect(row.locator("td.summary")).to_contain_text(f"unknown sender UNB {STRANGER}")
    expect(row.locator("a.make-partner")).to_have_attribute(
        "href", f"/quarantine?sender=unb%3A14%3A{STRANGER}")
    _fits(page)
    page.screenshot(path=shots / "alerts-grouped.png", full_page=True)
    files = row.locator("a", has_text="quarantined files")
    log_href = files.get_attribute("href") or ""
    page.locator(".bulk input[name=note]").fill("asked the sender who they are")
    row.locator("input[type=checkbox][name=ids]").check()
    page.click("button.bulk-resolve")
    expect(page.locator("h1")).to_have_text("Resolve 1 alert(s)?")
    expect(page.locator("table.alerts")).to_contain_text(STRANGER)
    _fits(page)
    page.screenshot(path=shots / "alerts-confirm.png", full_page=True)
    page.click("button.confirm-resolve")
    expect(page.locator(".message")).to_have_text("1 alert(s) resolved")
    expect(page.locator("table.alerts tbody tr.a-open")).to_have_count(0)
    page.goto(volume.url + "/alerts?status=resolved")
    resolved = page.locator("table.alerts tbody tr.a-resolved")
    expect(resolved).to_have_count(1)
    expect(resolved.first.locator(".alert-status")).to_have_text("resolved by otto")
    page.screenshot(path=shots / "alerts-resolved.png", full_page=True)
    page.goto(volume.url + log_href)
    expect(page.locator("nav.pager .pager-total").first).to_have_text("1–40 of 40")
