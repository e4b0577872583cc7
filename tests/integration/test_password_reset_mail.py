"""Password reset through the real mail servers: the gateway mails the link through a private
Postfix (its ``[smtp]``) into a real Dovecot; the test reads it over IMAP
(``tests/reset_mail.py``), follows it with an HTTP client against the running console, sets
the password and logs in with it through the login form, while the old password fails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import GatewaySettings, Partner, PartnerDirectory
from gateway.http.server import HttpServer, build_app
from gateway.store.audit import AuditLog
from gateway.web.auth import ApiTokens, Users
from tests.reset_mail import ResetMailServer, reset_mail_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OLD = "the-old-password-42"
NEW = "a-brand-new-secret-7"


@pytest.fixture(scope="module")
def mail() -> Iterator[ResetMailServer]:
    with reset_mail_server() as server:
        yield server


@pytest.fixture
def console(tmp_path, mail):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"}, smtp=mail.smtp)
    gw = Gateway.open(settings, partners=PartnerDirectory([Partner(id="acme",
                                                                   name="ACME Bakeries")]))
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    try:
        yield gw, server.url
    finally:
        server.stop()
        gw.close()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found.group(1)


def _form_login(url: str, user: str, password: str) -> httpx.Response:
    """Log in through the login page (its CSRF cookie and field), as a browser does."""
    with httpx.Client(base_url=url, timeout=30) as c:
        page = c.get("/login")
        return c.post("/login", data={"username": user, "password": password,
                                      "csrf_token": _csrf(page.text), "next": "/"})


def test_reset_link_read_from_the_mailbox_sets_the_password(console, mail):
    gw, url = console
    Users(gw.store).create("shop", OLD, "client", partner_id="acme", email=mail.address)
    seen = mail.mark()
    with httpx.Client(base_url=url, timeout=30) as c:
        form = c.get("/password-reset")
        r = c.post("/password-reset", data={"login": mail.address,
                                            "csrf_token": _csrf(form.text)})
        assert r.status_code == 303 and r.headers["location"] == "/password-reset?sent=1"
    message = mail.wait_for_mail(after=seen)
    assert message["To"] == mail.address and message["From"] == "edigw@wholesaler.test"
    text = message.get_body(("plain",)).get_content()
    assert OLD not in text and "within 30 minutes" in text
    link = mail.wait_for_link(after=seen)
    assert link.startswith(url + "/password-reset/")
    with httpx.Client(timeout=30) as browser:
        page = browser.get(link)
        assert page.status_code == 200 and "shop" in page.text
        done = browser.post(link, data={"password": NEW, "password_again": NEW,
                                        "csrf_token": _csrf(page.text)})
        assert done.status_code == 303 and done.headers["location"] == "/login?done=password-reset"
        assert browser.get(link).status_code == 400  # once only
    in_ = _form_login(url, "shop", NEW)
    assert in_.status_code == 303 and in_.headers["location"] == "/portal"
    old = _form_login(url, "shop", OLD)
    assert old.status_code == 401 and "Wrong user name or password" in old.text
    assert [e.action for e in AuditLog(gw.store).list(target="user:shop")] == [
        "user.password_reset"]


def test_an_invited_staff_member_sets_a_password_from_the_mailed_link(console, mail):
    """The API's invitation (``POST /api/users`` with ``invite``): no password chosen by the
    admin, the link read from the mailbox sets it; the API confirms it with the token."""
    gw, url = console
    admin = Users(gw.store).create("root", OLD, "admin")
    bearer, _ = ApiTokens(gw.store).create(admin, "admin")
    seen = mail.mark()
    with httpx.Client(base_url=url + "/api", timeout=30,
                      headers={"Authorization": f"Bearer {bearer}"}) as api:
        r = api.post("/users", json={"username": "otto", "role": "operator",
                                     "email": mail.address, "invite": True})
        assert r.status_code == 201, r.text
    link = mail.wait_for_link(after=seen)
    assert "48 hours" in mail.wait_for_mail(after=seen).get_body(("plain",)).get_content()
    token = link.rsplit("/", 1)[1]
    with httpx.Client(base_url=url + "/api", timeout=30) as anon:
        assert anon.post("/password-reset/confirm",
                         json={"token": token, "password": NEW}).status_code == 204
        assert anon.post("/login", json={"username": "otto",
                                         "password": NEW}).status_code == 200
