"""The account, forgotten-password and users pages in Chromium under the console's CSP: an
admin's pages, then a client who forgot its password follows a set-password link and logs
in with the new password; no Content-Security-Policy violation anywhere."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.integration

NEW = "a-brand-new-secret-7"


def test_account_and_reset_pages_work_in_the_browser_under_the_csp(page: Page, console, shots):
    from gateway.web.account import PasswordResets
    from gateway.web.auth import Users

    store = console.gateway.store
    client = Users(store).create("gouden-buyer", PASSWORD, "client", partner_id="gouden",
                                 email="buyer@gouden.example")
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))

    page.goto("/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .user")).to_contain_text("ada")
    page.goto("/account")
    expect(page.locator("#account-role")).to_have_text("admin")
    page.screenshot(path=str(shots / "account.png"), full_page=True)
    page.goto("/users")
    expect(page.locator("#user-gouden-buyer .state")).to_have_text("active")
    page.screenshot(path=str(shots / "users.png"), full_page=True)
    page.click("#user-gouden-buyer >> text=Disable…")
    expect(page.locator("#user-confirm h1")).to_contain_text("Disable the user gouden-buyer?")
    page.screenshot(path=str(shots / "users-confirm.png"), full_page=True)
    page.click("#user-confirm button[type=submit]")
    expect(page.locator("#user-gouden-buyer .state")).to_have_text("disabled")
    page.click("#user-gouden-buyer >> text=Enable…")
    page.click("#user-confirm button[type=submit]")
    expect(page.locator("#user-gouden-buyer .state")).to_have_text("active")
    page.click("header form.me button[type=submit]")

    # A forgotten password: the request page answers the same for anyone.
    page.goto("/login")
    page.click("#forgot-password")
    page.fill("input[name=login]", "buyer@gouden.example")
    page.click("#password-reset-request button[type=submit]")
    expect(page.locator("#reset-sent")).to_be_visible()
    page.screenshot(path=str(shots / "password-reset-sent.png"), full_page=True)

    # No [smtp] in this console: the link an admin's invitation would mail, made here.
    mail = PasswordResets(store).invite(client, link_base=console.url, by="test")
    link = re.search(r"http://\S+/password-reset/\S+", mail.body).group(0)
    page.goto(link)
    expect(page.locator("#reset-username")).to_have_text("gouden-buyer")
    page.fill("input[name=password]", NEW)
    page.fill("input[name=password_again]", NEW)
    page.screenshot(path=str(shots / "password-reset-form.png"), full_page=True)
    page.click("#password-reset-set button[type=submit]")
    expect(page.locator("p.message")).to_contain_text("Your new password is set")
    page.fill("input[name=username]", "gouden-buyer")
    page.fill("input[name=password]", NEW)
    page.click("button[type=submit]")
    page.goto("/account")
    expect(page.locator("#account-partner")).to_contain_text("gouden — De Gouden Aar")
    page.goto(link)
    expect(page.locator("#reset-invalid")).to_be_visible()

    violations = [m for m in messages if "Content Security Policy" in m]
    assert not violations, violations
