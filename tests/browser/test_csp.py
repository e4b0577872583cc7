"""The console under its Content-Security-Policy (issue 13, "trust"): every page works with
no CSP violation (no inline script or style), and no other site can frame it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.integration


def test_pages_run_under_the_csp_without_violations(page: Page, console):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto("/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .user")).to_contain_text("ada")
    for path in ("/", "/transmissions", "/search?q=PO-1", "/partners", "/partners/gouden",
                 "/alerts", "/audit"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.goto("/transmissions")
    page.wait_for_timeout(5500)  # the live log's script fetches the rows every 5 s
    violations = [m for m in messages if "Content Security Policy" in m]
    assert not violations, violations


def test_another_site_cannot_frame_the_console(page: Page, console):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.set_content(f'<iframe id="f" src="{console.url}/login"></iframe>')
    page.wait_for_timeout(1500)
    frame = next((f for f in page.frames if f.url.startswith(console.url)), None)
    shown = frame.content() if frame is not None else ""
    assert 'name="password"' not in shown
    assert any(re.search(r"frame-ancestors|X-Frame-Options", m) for m in messages), messages
