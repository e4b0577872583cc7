"""A client who forgot its password, in chromium, with the real mail servers: it asks on the
login page, the link is mailed through a real Postfix into a real Dovecot mailbox and read
back over IMAP, the client follows it, sets a new password and lands on its portal; the old
password and the used link no longer work."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD
from tests.reset_mail import reset_mail_server

pytestmark = pytest.mark.integration

NEW = "a-fresh-portal-secret-42"


def test_a_client_resets_its_password_through_the_mailed_link(page: Page, console, shots):
    from gateway.channels.email.mailer import Mailer
    from gateway.store.channels import ChannelRecords
    from gateway.web.auth import Users

    gw = console.gateway
    with reset_mail_server() as mail:
        Users(gw.store).create("gouden-forgot", PASSWORD, "client", partner_id="gouden",
                               email=mail.address)
        kept = gw.mailer
        gw.mailer = Mailer(mail.smtp, records=ChannelRecords(gw.store))  # [smtp]
        try:
            seen = mail.mark()
            page.goto("/login")
            page.click("#forgot-password")
            page.fill("input[name=login]", "gouden-forgot")
            page.click("#password-reset-request button[type=submit]")
            expect(page.locator("#reset-sent")).to_be_visible()
            link = mail.wait_for_link(after=seen)
        finally:
            gw.mailer = kept
    assert link.startswith(console.url + "/password-reset/"), link
    page.goto(link)
    expect(page.locator("#reset-username")).to_have_text("gouden-forgot")
    page.fill("input[name=password]", NEW)
    page.fill("input[name=password_again]", NEW)
    page.click("#password-reset-set button[type=submit]")
    expect(page.locator("p.message")).to_contain_text("Your new password is set")
    page.screenshot(path=str(shots / "portal-reset-done.png"), full_page=True)

    page.fill("input[name=username]", "gouden-forgot")
    page.fill("input[name=password]", PASSWORD)  # the old one
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("Wrong user name or password")
    page.fill("input[name=username]", "gouden-forgot")
    page.fill("input[name=password]", NEW)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/portal$"))
    expect(page.locator("h1")).to_have_text("De Gouden Aar")

    page.goto(link)  # once only
    expect(page.locator("#reset-invalid")).to_be_visible()
