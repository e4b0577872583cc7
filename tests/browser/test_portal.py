"""The client portal in chromium: a client of gouden logs in, lands on its portal, finds an
order, sends a file and sees it in its list, downloads its price list, opens the
demonstration space, and cannot open another partner's file by its URL."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import FAILING_ORDER, PASSWORD
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"  # gouden's order


def client_login(page: Page, user: str = "gina") -> None:
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/portal$"))
    expect(page.locator("header .user")).to_contain_text(user)


def test_a_client_lands_on_its_portal_and_finds_its_order(page: Page, shots):
    """Only the portal's links; its partner and state; "where is my order" in plain words."""
    client_login(page)
    expect(page.locator("h1")).to_have_text("De Gouden Aar")
    expect(page.locator(".state")).to_contain_text("live")
    expect(page.locator("header nav a")).to_contain_text(["Home", "My files"])
    expect(page.locator("header nav a[href='/transmissions']")).to_have_count(0)
    expect(page.locator("table.portal-files tbody tr").first).to_be_visible()
    page.screenshot(path=shots / "portal-home.png", full_page=True)
    page.fill("form.where input[name=number]", "PO-2024-0107")
    page.click("form.where button")
    expect(page).to_have_url(re.compile(r"/portal/search\?number=PO-2024-0107"))
    expect(page.locator(".verdict-sentence")).to_contain_text("We received order PO-2024-0107")
    page.fill("input[name=number]", FAILING_ORDER)
    page.click("form.search button")
    expect(page.locator(".verdict-sentence")).to_contain_text("could not read it")
    page.screenshot(path=shots / "portal-search.png", full_page=True)
    page.fill("input[name=number]", "PO-NEVER-SENT")
    page.click("form.search button")
    expect(page.locator(".verdict-sentence")).to_contain_text("We have not received")


def test_a_client_sends_a_file_and_sees_it_in_its_list(page: Page, shots, tmp_path):
    order = tmp_path / "portal-order.edi"
    order.write_bytes(SAMPLE.read_bytes().replace(b"PO-2024-0107", b"PO-PORTAL-1")
                      .replace(b"ICR0042", b"ICR0777"))
    client_login(page)
    page.click("header nav a[href='/portal/upload']")
    page.set_input_files("input[type=file]", str(order))
    page.screenshot(path=shots / "portal-upload.png", full_page=True)
    page.click("form.upload button")
    expect(page).to_have_url(re.compile(r"/portal/transmissions/\w+"))
    expect(page.locator(".message")).to_contain_text("portal-order.edi received")
    expect(page.locator("section.document h3")).to_contain_text("PO-PORTAL-1")
    expect(page.locator("table.lines tbody tr").first).to_contain_text("4020000012342")
    page.click("header nav a[href='/portal/transmissions']")
    expect(page.locator("table.portal-files")).to_contain_text("portal-order.edi")
    page.screenshot(path=shots / "portal-files.png", full_page=True)
    # An empty file is refused with a clear error.
    empty = tmp_path / "empty.edi"
    empty.write_bytes(b"")
    page.goto("/portal/upload")
    page.set_input_files("input[type=file]", str(empty))
    page.click("form.upload button")
    expect(page.locator(".error")).to_contain_text("empty.edi is empty")


def test_a_client_downloads_its_price_list(page: Page):
    client_login(page)
    with page.expect_download() as got:
        page.click("header nav a[href='/portal/price-list']")
    download = got.value
    assert download.suggested_filename.endswith(".csv")
    assert download.path().read_bytes()  # the copy rendered for gouden, as sent


def test_a_client_without_a_price_list_reads_so(page: Page):
    client_login(page, "nils")
    response = page.goto("/portal/price-list")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("No price list yet")


def test_a_client_opens_the_demonstration_space(page: Page, shots):
    client_login(page)
    page.click("header nav a[href='/portal/demo']")
    expect(page.locator("table.samples")).to_contain_text("eancom-orders-d96a.sample.edi")
    expect(page.locator("section.result").first).to_be_visible()
    page.screenshot(path=shots / "portal-demo.png", full_page=True)
    with page.expect_download() as got:
        page.click("table.samples a[href='/portal/demo/samples/eancom-orders-d96a']")
    assert b"UNB+UNOC:3+5401234000012:14+" in got.value.path().read_bytes()


def test_a_client_cannot_open_another_partners_file_by_url(page: Page, console):
    from gateway.core.scope import Scope
    from gateway.store.read.transmissions import LogQuery, transmission_page

    noord = transmission_page(console.gateway.store, LogQuery(), limit=1,
                              scope=Scope("noord")).rows[0].id
    client_login(page)
    response = page.goto(f"/portal/transmissions/{noord}")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    response = page.goto(f"/transmissions/{noord}")
    assert response is not None and response.status == 403
    response = page.goto(f"/api/transmissions/{noord}")
    assert response is not None and response.status == 404


def test_portal_pages_run_under_the_csp_without_violations(page: Page):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    client_login(page)
    for path in ("/portal", "/portal/transmissions", "/portal/search?number=PO-1",
                 "/portal/upload", "/portal/documents", "/portal/demo"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
    assert not [m for m in messages if "Content Security Policy" in m]
