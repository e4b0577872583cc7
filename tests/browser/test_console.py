"""The console used in chromium as an operator, an administrator and a support person."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import FAILING_ORDER, GOUDEN, PASSWORD, failing_order

pytestmark = pytest.mark.integration


def login(page: Page, user: str, target: str = "/") -> None:
    page.goto(target)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .user")).to_contain_text(user)


def test_nobody_is_sent_to_login_and_comes_back_after(page: Page, shots):
    """A page asked for without a session leads to /login, then to the page asked for."""
    page.goto("/alerts")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Falerts"))
    page.screenshot(path=shots / "login.png", full_page=True)
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("Wrong user name or password.")
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/alerts$"))


def test_dashboard_draws_charts(page: Page, shots):
    """Volume per channel and format, failures and orders per week are pictures (SVG)."""
    login(page, "vera")
    charts = page.locator("figure svg.chart")
    expect(charts).to_have_count(4)
    expect(page.locator("figure svg.chart rect.bar").first).to_be_visible()
    expect(page.locator(".tile.st-failed").first).to_contain_text("failed")
    page.screenshot(path=shots / "dashboard.png", full_page=True)


def test_find_an_order_by_number_and_read_its_verdict(page: Page, shots):
    """Support types the order number and reads the verdict and its evidence."""
    login(page, "vera", "/search")
    page.fill("input[name=q]", FAILING_ORDER)
    page.click("form.search button")
    expect(page.locator(".verdict-code")).to_have_text("failed")
    expect(page.locator(".verdict-words")).to_have_text("received but failed")
    # The matches come first, the verdict's evidence after them.
    expect(page.locator(".matches .hits tr", has_text=FAILING_ORDER).first).to_be_visible()
    expect(page.locator(".verdict .summary")).to_contain_text(FAILING_ORDER)
    expect(page.locator(".verdict .summary")).to_contain_text("po-bad-7.edi")
    expect(page.locator(".evidence li").first).to_be_visible()
    page.screenshot(path=shots / "search.png", full_page=True)
    # Every evidence link leads to a transmission's page (a document's: its transmission).
    for href in page.locator(".evidence a.ref").evaluate_all("els => els.map(e => e.href)"):
        assert page.request.get(href).status == 200, href
    page.fill("input[name=q]", "PO-2024-0107")
    page.click("form.search button")
    expect(page.locator(".verdict-code")).not_to_have_text("failed")
    expect(page.locator(".verdict .summary")).to_contain_text("PO-2024-0107")


def test_open_a_failed_transmission_and_reprocess_it(page: Page, shots):
    """The operator filters the log on FAILED, opens the transmission (timeline, documents,
    EDIFACT one segment per line) and replays it with a reason."""
    login(page, "otto", "/transmissions?status=FAILED")
    row = page.locator("#log-rows tr", has_text="po-bad-7.edi").first
    expect(row).to_have_class(re.compile("st-failed"))
    page.screenshot(path=shots / "transmissions.png", full_page=True)
    row.locator("a").click()
    expect(page.locator("h1 .badge")).to_have_text("FAILED")
    expect(page.locator("pre.raw")).to_contain_text("UNH+")
    raw = page.locator("pre.raw").inner_text().splitlines()
    assert raw[0].startswith("UN") and all(line.endswith("'") for line in raw if line)
    expect(page.locator(".reason").first).to_contain_text("line 21")
    page.screenshot(path=shots / "transmission.png", full_page=True)
    page.fill("form.reprocess input[name=reason]", "quantity fixed by the partner's call")
    page.click("form.reprocess button")
    expect(page.locator(".message")).to_contain_text("replayed from")
    expect(page.locator("dl.facts")).to_contain_text("quantity fixed by the partner's call")
    expect(page.locator("dl.facts")).to_contain_text("otto")


def test_live_log_shows_a_new_transmission_without_reload_and_keeps_filters(
        page: Page, console):
    """A file arriving while the log is open appears by itself; the filter still holds."""
    login(page, "vera", "/transmissions?partner=gouden")
    expect(page.locator("#log-rows tr").first).to_be_visible()
    before = page.locator("#log-rows tr").count()
    data = failing_order().replace(FAILING_ORDER.encode(), b"PO-LIVE-1") \
        .replace(b"ICR0099", b"ICR0100")
    console.ingest(data, "po-live-1.edi")
    console.ingest(data.replace(GOUDEN.encode(), b"5401234000043"), "noord-live.edi")
    expect(page.locator("#log-rows tr", has_text="po-live-1.edi")).to_be_visible(timeout=15000)
    expect(page.locator("#log-rows tr", has_text="noord-live.edi")).to_have_count(0)
    assert page.locator("#log-rows tr").count() == before + 1
    expect(page).to_have_url(re.compile(r"partner=gouden"))
    expect(page.locator("#live")).to_contain_text("updated")


def test_acknowledge_an_alert(page: Page, shots):
    """The operator acknowledges the failure alert with a note; it shows who did."""
    login(page, "otto", "/alerts")
    row = page.locator("table.alerts tr.a-open", has_text="failure").first
    expect(row).to_be_visible()
    page.screenshot(path=shots / "alerts.png", full_page=True)
    alert_id = row.get_attribute("id")
    page.locator(".bulk input[name=note]").fill("calling the partner")
    row.locator("button", has_text="Acknowledge").click()
    expect(page.locator(".message")).to_contain_text("acknowledged")
    expect(page.locator(f"#{alert_id} .alert-status")).to_have_text("acknowledged by otto")


def test_change_a_partner_mail_address_and_see_it_in_the_audit_trail(page: Page, shots):
    """The admin changes gouden's mail addresses; the partner page's audit trail and /audit
    show who changed what, before and after."""
    login(page, "ada", "/partners")
    page.screenshot(path=shots / "partners.png", full_page=True)
    page.click("a[href='/partners/gouden']")
    expect(page.locator("figure svg.chart")).to_have_count(2)
    page.fill("textarea[name=emails]", "orders@gouden.example\ninkoop@gouden.example")
    page.click("form[action='/partners/gouden/contacts'] button")
    expect(page.locator(".message")).to_contain_text("contacts saved")
    trail = page.locator("table.audit tbody tr").first
    expect(trail).to_contain_text("ada")
    expect(trail).to_contain_text("partner.contacts")
    expect(trail).to_contain_text("inkoop@gouden.example")
    expect(page.locator("textarea[name=emails]")).to_contain_text("inkoop@gouden.example")
    page.screenshot(path=shots / "partner.png", full_page=True)
    page.goto("/audit?target=partner:gouden")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("inkoop@gouden.example")
    page.screenshot(path=shots / "audit.png", full_page=True)


def test_viewer_is_refused_admin_pages_and_actions(page: Page, shots):
    """Support reads partners and transmissions but gets "Refused" for the audit trail and
    for a partner change posted anyway; no admin form or reprocess button is offered."""
    login(page, "vera", "/audit")
    expect(page.locator("h1")).to_have_text("Refused")
    page.screenshot(path=shots / "refused.png", full_page=True)
    page.goto("/partners/gouden")
    expect(page.locator("form[action='/partners/gouden/contacts']")).to_have_count(0)
    csrf = page.locator("form.me input[name=csrf_token]").get_attribute("value")
    r = page.request.post("/partners/gouden/contacts",
                          form={"csrf_token": csrf, "emails": "evil@example.com"})
    assert r.status == 403 and "Refused" in r.text()
    page.goto("/transmissions?status=FAILED")
    page.locator("#log-rows tr a").first.click()
    expect(page.locator("form.reprocess")).to_have_count(0)


def test_a_post_without_the_csrf_token_is_refused(page: Page):
    """Logged in as admin, a form posted without the session's token changes nothing."""
    login(page, "ada")
    r = page.request.post("/partners/gouden/contacts", form={"emails": "x@example.com"})
    assert r.status == 403 and "CSRF" in r.text()
