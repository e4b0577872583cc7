"""The administrator's console in chromium, over a gateway of its own (the adoption changes
partners and transmissions, which the shared console's tests must not see): three files of
an unknown sender made a partner's in one step, the users page (roles, deactivation, the
set-password link) and a new partner with its identifiers, each destructive step behind a
confirmation page; no Content-Security-Policy violation anywhere. Screenshots are kept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, build_console_app
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SENDER = "unb:14:5401234000012"


@dataclass
class AdminConsole:
    url: str
    gateway: object
    tmp: Path


def _orders() -> list[tuple[bytes, str]]:
    """Three orders of sender 5401234000012 (qualifier 14), no profile lists it."""
    d96a = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
    return [(d96a.replace(b"PO-2024-0107", f"PO-2024-020{n}".encode())
             .replace(b"ICR0042", f"ICR020{n}".encode()), f"unknown-{n}.edi") for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def admin_console(tmp_path_factory, browser_type_launch_args) -> Iterator[AdminConsole]:
    from gateway.app import Gateway
    from gateway.config import load_settings
    from gateway.core.ports import Incoming
    from gateway.http.server import HttpServer
    from gateway.web.auth import Users

    tmp = tmp_path_factory.mktemp("admin-console")
    partners = tmp / "partners"
    partners.mkdir()
    (partners / "brouwer.toml").write_text(
        'id = "brouwer"\nname = "Brouwer Supplies"\n[identifiers]\n'
        'unb = [{ id = "4012345000009", qualifier = "14" }]\n')
    (tmp / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{partners}"\n'
        f'certs_dir = "{tmp / "certs"}"\nsecrets_dir = "{tmp / "secrets"}"\n'
        f'[store]\nurl = "sqlite:///{tmp / "edigw.sqlite3"}"\n'
        f'[archive]\npath = "{tmp / "archive"}"\nfsync = false\n'
        f'[outbound]\npath = "{tmp / "outbound"}"\n'
        '[tracker]\ntimezone = "Europe/Paris"\n')
    gw = Gateway.open(load_settings(tmp / "gateway.toml", env={}))
    for data, name in _orders():
        receipt = gw.pipeline.receive(Incoming(data=data, channel="folder",
                                               channel_ref=f"/in/{name}", filename=name))
        gw.pipeline.acknowledged([receipt], "moved")
        gw.pipeline.process(receipt.transmission_id)
    users = Users(gw.store)
    users.create("ada", PASSWORD, "admin")
    users.create("vera", PASSWORD, "viewer", email="vera@example.test")
    users.create("otto", PASSWORD, "operator")
    server = HttpServer(build_console_app(gw), port=0).start_in_thread()
    yield AdminConsole(url=server.url, gateway=gw, tmp=tmp)
    server.stop()
    gw.close()


def _login(page: Page, c: AdminConsole, user: str) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(f"{c.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .user")).to_contain_text(user)
    return messages


def test_quarantined_files_of_an_unknown_sender_become_a_new_partners(page: Page,
                                                                     admin_console, shots):
    """The quarantine page lists the sender with its three files; the admin creates
    partner newco for it, confirms, and reads that the three were processed again for
    newco; the store agrees and the sender is gone from the page."""
    c = admin_console
    messages = _login(page, c, "ada")
    page.goto(f"{c.url}/quarantine")
    row = page.locator("#senders tr", has_text=SENDER)
    expect(row.locator(".count")).to_have_text("3")
    expect(row).to_contain_text("unknown-1.edi")
    page.screenshot(path=shots / "quarantine.png", full_page=True)
    row.locator("a", has_text="Make a partner").click()
    expect(page).to_have_url(re.compile(r"/quarantine\?sender=unb%3A14%3A5401234000012"))
    form = page.locator("#adopt-form")
    form.locator("input[name=mode][value=new]").check()
    form.locator("input[name=id]").fill("newco")
    form.locator("input[name=name]").fill("Newco Retail")
    form.locator("button[type=submit]").click()
    expect(page.locator("#adopt-confirm h1")).to_contain_text("Create partner newco")
    expect(page.locator("#adopt-confirm")).to_contain_text("3")
    page.screenshot(path=shots / "quarantine-confirm.png", full_page=True)
    page.locator("#adopt-confirm button[type=submit]").click()
    expect(page.locator("#adopt-result")).to_contain_text("3 file(s) processed again: 3 PROCESSED")
    expect(page.locator("#attempts tbody tr")).to_have_count(3)
    page.screenshot(path=shots / "quarantine-done.png", full_page=True)
    gw = c.gateway
    attempts = [gw.store.get_transmission(a) for a in page.locator(
        "#attempts tbody tr td:nth-child(2) a").all_inner_texts()]
    assert {(t.partner_id, t.status) for t in attempts} == {("newco", "PROCESSED")}
    # What the publisher does once the broker confirms (no broker here): published.
    gw.store.mark_published([i.outbox_id for i in gw.store.pending_outbox(1000)])
    assert {gw.store.get_transmission(t.id).status for t in attempts} == {"PUBLISHED"}
    page.goto(f"{c.url}/quarantine")
    expect(page.locator("#senders")).to_contain_text("No quarantined file")
    page.goto(f"{c.url}/partners/newco")
    expect(page.locator("#identifiers textarea[name=ids_unb]")).to_have_value(
        "5401234000012:14")
    assert not [m for m in messages if "Content Security Policy" in m]


def test_users_page_changes_roles_and_deactivates_after_confirmation(page: Page,
                                                                    admin_console, shots):
    """vera becomes operator, otto is disabled then enabled again, each after its
    confirmation page; without [smtp] the set-password link says it cannot be mailed."""
    c = admin_console
    messages = _login(page, c, "ada")
    page.goto(f"{c.url}/users")
    expect(page.locator("#user-ada .role-form")).to_have_count(0)  # not one's own
    vera = page.locator("#user-vera")
    vera.locator("select[name=role]").select_option("operator")
    vera.locator("button", has_text="Change role").click()
    expect(page.locator("#user-confirm #new-role")).to_have_text("operator")
    page.screenshot(path=shots / "users-role-confirm.png", full_page=True)
    page.click("#user-confirm button[type=submit]")
    expect(page.locator("#user-vera .user-role")).to_have_text("operator")
    page.click("#user-otto >> text=Disable…")
    expect(page.locator("#user-confirm h1")).to_contain_text("Disable the user otto?")
    page.click("#user-confirm button[type=submit]")
    expect(page.locator("#user-otto .state")).to_have_text("disabled")
    page.screenshot(path=shots / "users-admin.png", full_page=True)
    page.click("#user-otto >> text=Enable…")
    page.click("#user-confirm button[type=submit]")
    expect(page.locator("#user-otto .state")).to_have_text("active")
    page.click("#user-vera >> text=Mail a set-password link")
    expect(page.locator("p.message")).to_contain_text("no [smtp] server")
    assert not [m for m in messages if "Content Security Policy" in m]


def test_a_new_partner_its_identifiers_and_disabling_it_behind_a_confirmation(
        page: Page, admin_console, shots):
    """The new-partner form creates a profile; a GLN that is not 13 digits is refused with
    the reason and nothing changes; Disable asks first."""
    c = admin_console
    messages = _login(page, c, "ada")
    page.goto(f"{c.url}/partners")
    page.click("#new-partner")
    page.fill("#partner-new input[name=id]", "zuid")
    page.fill("#partner-new input[name=name]", "Zuid Groothandel")
    page.fill("#partner-new textarea[name=ids_unb]", "8712345000011:14")
    page.fill("#partner-new textarea[name=documents]", "invoice edifact")
    page.screenshot(path=shots / "partner-new.png", full_page=True)
    page.click("#partner-new button[type=submit]")
    expect(page.locator("p.message")).to_contain_text("partner zuid created")
    page.fill("#identifiers textarea[name=ids_gln]", "12345")
    page.click("#identifiers button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("identifiers.gln")
    page.fill("#identifiers textarea[name=ids_gln]", "8712345000011")
    page.click("#identifiers button[type=submit]")
    expect(page.locator("p.message")).to_contain_text("identifiers saved")
    import tomllib

    profile = tomllib.loads((c.tmp / "partners" / "zuid.toml").read_text())
    assert profile["identifiers"]["gln"] == ["8712345000011"]
    assert profile["identifiers"]["unb"] == [{"id": "8712345000011", "qualifier": "14"}]
    page.click("#account a.button")
    expect(page.locator("#partner-confirm h1")).to_have_text("Disable the partner zuid?")
    page.screenshot(path=shots / "partner-disable-confirm.png", full_page=True)
    page.click("#partner-confirm button[type=submit]")
    expect(page.locator("h1 .badge.st-failed")).to_have_text("disabled")
    assert not [m for m in messages if "Content Security Policy" in m]
