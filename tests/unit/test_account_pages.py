"""The account pages, the forgotten-password pages, the admins' users page and their API
(``/api/account``, ``/api/password-reset``, ``/api/users`` with ``invite``), over real HTTP
(uvicorn on loopback, httpx) on a SQLite store; mail is caught by a recording mailer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.channels.email.mailer import Mailer
from gateway.channels.email.settings import SmtpSettings
from gateway.config import GatewaySettings, Partner, PartnerDirectory
from gateway.http.server import HttpServer, build_app
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]
OLD = "the-old-password-42"
NEW = "a-brand-new-secret-7"
LINK = re.compile(r"(http://[^/\s]+)/password-reset/([A-Za-z0-9_-]+)")


class RecordingMailer(Mailer):
    """The real mailer's messages, kept instead of sent."""

    def __init__(self) -> None:
        super().__init__(SmtpSettings(sender="edi@wholesaler.test"))
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)

    def wait(self, n: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The first ``n`` mails, once sent (the routes send after answering)."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < n:
            assert time.monotonic() < deadline, f"{len(self.sent)} mails, not {n}"
            time.sleep(0.02)
        return self.sent[:n]


def link_of(message: EmailMessage) -> str:
    found = LINK.search(message.get_content())
    assert found, message.get_content()
    return found.group(0)


@pytest.fixture
def app(tmp_path):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=PartnerDirectory([
        Partner(id="acme", name="ACME Bakeries"), Partner(id="other", name="Other Shop")]))
    mailer = RecordingMailer()
    gw.mailer = mailer
    users = Users(gw.store)
    users.create("shop", OLD, "client", partner_id="acme", email="buyer@acme.test")
    users.create("vera", OLD, "viewer", email="vera@wholesaler.test")
    users.create("root", OLD, "admin", email="root@wholesaler.test")
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    try:
        yield gw, server.url, mailer
    finally:
        server.stop()
        gw.close()


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


def session(url: str, user: str, password: str = OLD) -> httpx.Client:
    """A client logged in as ``user`` (cookie session)."""
    c = client(url)
    r = c.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return c


@contextmanager
def login(url: str, user: str, password: str = OLD) -> Iterator[httpx.Client]:
    c = session(url, user, password)
    try:
        yield c
    finally:
        c.close()


def logs_in(url: str, user: str, password: str) -> bool:
    with client(url) as c:
        return c.post("/api/login", json={"username": user,
                                          "password": password}).status_code == 200


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found.group(1)


# -- /account ---------------------------------------------------------------------------------


def test_a_client_sees_its_account_and_changes_its_address_with_csrf(app):
    gw, url, _ = app
    with login(url, "shop") as c:
        page = c.get("/account")
        assert page.status_code == 200
        assert '<dd id="account-username">shop</dd>' in page.text
        assert '<dd id="account-role">client</dd>' in page.text
        assert "acme — ACME Bakeries" in page.text and "buyer@acme.test" in page.text
        token = csrf_of(page.text)
        forged = c.post("/account/email", data={"email": "new@acme.test",
                                                "current_password": OLD})
        assert forged.status_code == 403
        wrong = c.post("/account/email", data={"email": "new@acme.test", "csrf_token": token,
                                               "current_password": "wrong-password-1"})
        assert wrong.status_code == 400 and "current password is wrong" in wrong.text
        done = c.post("/account/email", data={"email": "new@acme.test", "csrf_token": token,
                                              "current_password": OLD})
        assert done.status_code == 303 and done.headers["location"].startswith("/account?")
        assert "new@acme.test" in c.get("/account").text
    assert Users(gw.store).by_username("shop").email == "new@acme.test"
    assert AuditLog(gw.store).list(action="user.email_change")[0].actor == "shop"


def test_changing_the_password_logs_out_and_the_new_one_works(app):
    gw, url, _ = app
    with login(url, "vera") as c:
        token = csrf_of(c.get("/account").text)
        differ = c.post("/account/password", data={
            "csrf_token": token, "current_password": OLD, "new_password": NEW,
            "new_password_again": NEW + "x"})
        assert differ.status_code == 400 and "differ" in differ.text
        weak = c.post("/account/password", data={
            "csrf_token": token, "current_password": OLD, "new_password": "password1234",
            "new_password_again": "password1234"})
        assert weak.status_code == 400 and "too common" in weak.text
        done = c.post("/account/password", data={
            "csrf_token": token, "current_password": OLD, "new_password": NEW,
            "new_password_again": NEW})
        assert done.status_code == 303
        assert done.headers["location"] == "/login?done=password-changed"
        assert c.get("/account").status_code == 303  # the session ended: to the login
        assert "logged out everywhere" in c.get("/login?done=password-changed").text
    assert logs_in(url, "vera", NEW) and not logs_in(url, "vera", OLD)


def test_nobody_is_sent_to_log_in_from_the_account_page(app):
    _, url, _ = app
    with client(url) as c:
        r = c.get("/account")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert c.post("/account/email", data={"email": "x@y.z"}).status_code == 403


# -- /password-reset --------------------------------------------------------------------------


def test_the_login_page_links_to_the_forgotten_password_page(app):
    _, url, _ = app
    with client(url) as c:
        assert 'href="/password-reset"' in c.get("/login").text


def test_reset_by_the_mailed_link_then_log_in_with_the_new_password(app):
    gw, url, mailer = app
    with client(url) as c:
        form = c.get("/password-reset")
        assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
        sent = c.post("/password-reset", data={"login": "buyer@acme.test",
                                               "csrf_token": csrf_of(form.text)})
        assert sent.status_code == 303 and sent.headers["location"] == "/password-reset?sent=1"
        (mail,) = mailer.wait(1)
        assert mail["To"] == "buyer@acme.test" and mail["From"] == "edi@wholesaler.test"
        link = link_of(mail)
        assert link.startswith(url + "/password-reset/")  # no public_url: the request's
        page = c.get(link)
        assert page.status_code == 200 and '<strong id="reset-username">shop</strong>' in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        token = csrf_of(page.text)
        differ = c.post(link, data={"password": NEW, "password_again": NEW + "x",
                                    "csrf_token": token})
        assert differ.status_code == 400 and "differ" in differ.text
        # Each form shown carries a fresh token (and cookie): the browser posts the last.
        weak = c.post(link, data={"password": "short", "password_again": "short",
                                  "csrf_token": csrf_of(differ.text)})
        assert weak.status_code == 400 and "too short" in weak.text
        done = c.post(link, data={"password": NEW, "password_again": NEW,
                                  "csrf_token": csrf_of(weak.text)})
        assert done.status_code == 303 and done.headers["location"] == "/login?done=password-reset"
        assert "Your new password is set" in c.get(done.headers["location"]).text
        again = c.get(link)
        assert again.status_code == 400 and 'id="reset-invalid"' in again.text
    assert logs_in(url, "shop", NEW) and not logs_in(url, "shop", OLD)
    assert AuditLog(gw.store).list(action="user.password_reset")[0].target == "user:shop"


def test_the_answer_is_the_same_for_an_unknown_address(app):
    _, url, mailer = app
    answers = []
    for login_ in ("nobody@nowhere.test", "buyer@acme.test", "no-such-user"):
        with client(url) as c:
            form = c.get("/password-reset")
            r = c.post("/password-reset", data={"login": login_,
                                                "csrf_token": csrf_of(form.text)})
            answers.append((r.status_code, r.headers["location"],
                            re.sub(r'value="[^"]+"', "", c.get(r.headers["location"]).text)))
    assert answers[0] == answers[1] == answers[2]
    assert "If this user name or address is known" in answers[0][2]
    time.sleep(0.3)
    assert [m["To"] for m in mailer.sent] == ["buyer@acme.test"]


def test_reset_forms_without_their_csrf_token_are_refused(app):
    gw, url, mailer = app
    with client(url) as c:
        r = c.post("/password-reset", data={"login": "shop"})
        assert r.status_code == 403 and "expired" in r.text
        c.get("/password-reset")  # the cookie, but not the form's token
        r = c.post("/password-reset", data={"login": "shop", "csrf_token": "guessed"})
        assert r.status_code == 403
    time.sleep(0.3)
    assert mailer.sent == []
    with gw.store.engine.connect() as conn:
        assert conn.execute(s.password_resets.select()).all() == []
    with client(url) as c:
        form = c.get("/password-reset")
        c.post("/password-reset", data={"login": "shop", "csrf_token": csrf_of(form.text)})
        link = link_of(mailer.wait(1)[0])
    with client(url) as other:  # no cookie of the form
        r = other.post(link, data={"password": NEW, "password_again": NEW,
                                   "csrf_token": "x"})
        assert r.status_code == 403
    with client(url) as c:  # the link is still good
        assert c.get(link).status_code == 200


def test_an_unknown_link_shows_the_invalid_page(app):
    _, url, _ = app
    with client(url) as c:
        r = c.get("/password-reset/not-a-real-token")
        assert r.status_code == 400 and "Ask for a new link" in r.text
        token = csrf_of(c.get("/password-reset").text)
        r = c.post("/password-reset/not-a-real-token",
                   data={"password": NEW, "password_again": NEW, "csrf_token": token})
        assert r.status_code == 400 and 'id="reset-invalid"' in r.text


# -- /users -----------------------------------------------------------------------------------


def test_only_an_admin_reaches_the_users_page(app):
    _, url, _ = app
    for user in ("shop", "vera"):
        with login(url, user) as c:
            assert c.get("/users").status_code == 403
            assert c.get("/users/shop/disable").status_code == 403
    with login(url, "vera") as c:
        token = csrf_of(c.get("/account").text)
        r = c.post("/users", data={"csrf_token": token, "username": "x", "email": "x@y.z",
                                   "partner_id": "acme"})
        assert r.status_code == 403


def test_an_admin_opens_a_client_account_which_sets_its_password_by_the_link(app):
    gw, url, mailer = app
    with login(url, "root") as c:
        page = c.get("/users")
        assert page.status_code == 200 and 'id="user-shop"' in page.text
        token = csrf_of(page.text)
        bad = c.post("/users", data={"csrf_token": token, "username": "new-shop",
                                     "email": "orders@other.test", "partner_id": "nope"})
        assert bad.status_code == 400 and "no partner" in bad.text
        assert c.post("/users", data={"username": "new-shop", "email": "orders@other.test",
                                      "partner_id": "other"}).status_code == 403
        done = c.post("/users", data={"csrf_token": token, "username": "new-shop",
                                      "email": "orders@other.test", "partner_id": "other",
                                      "display_name": "Other's buyer"})
        assert done.status_code == 303 and "mailed" in done.headers["location"]
    user = Users(gw.store).by_username("new-shop")
    assert (user.role, user.partner_id, user.email) == ("client", "other", "orders@other.test")
    (mail,) = mailer.wait(1)
    assert mail["To"] == "orders@other.test" and "48 hours" in mail.get_content()
    link = link_of(mail)
    with client(url) as c:
        page = c.get(link)
        c.post(link, data={"password": NEW, "password_again": NEW,
                           "csrf_token": csrf_of(page.text)})
    with login(url, "new-shop", NEW) as c:
        assert c.get("/api/account").json()["partner_name"] == "Other Shop"
    actions = [e.action for e in AuditLog(gw.store).list(target="user:new-shop")]
    assert actions == ["user.password_reset", "user.invite", "user.create"]


def test_disabling_takes_a_confirmation_and_ends_the_users_sessions(app):
    gw, url, _ = app
    shop = session(url, "shop")
    with login(url, "root") as c:
        token = csrf_of(c.get("/users").text)
        confirm = c.get("/users/shop/disable")
        assert confirm.status_code == 200 and 'name="confirmed" value="yes"' in confirm.text
        skipped = c.post("/users/shop/disable", data={"csrf_token": token})
        assert skipped.status_code == 303 and skipped.headers["location"] == "/users/shop/disable"
        assert not Users(gw.store).by_username("shop").disabled
        done = c.post("/users/shop/disable", data={"csrf_token": token, "confirmed": "yes"})
        assert done.status_code == 303
        assert Users(gw.store).by_username("shop").disabled
        assert shop.get("/api/account").status_code == 401
        assert "disabled" in c.get("/users").text
        self_ = c.post("/users/root/disable", data={"csrf_token": token, "confirmed": "yes"})
        assert "cannot" in self_.headers["location"]
        assert not Users(gw.store).by_username("root").disabled
        c.post("/users/shop/enable", data={"csrf_token": token, "confirmed": "yes"})
    assert not Users(gw.store).by_username("shop").disabled
    actions = [e.action for e in AuditLog(gw.store).list(target="user:shop")]
    assert actions == ["user.enable", "user.disable"]
    shop.close()


def test_a_disabled_user_asking_for_a_link_gets_the_same_answer_and_no_mail(app):
    gw, url, mailer = app
    Users(gw.store).disable("shop")
    with client(url) as c:
        form = c.get("/password-reset")
        r = c.post("/password-reset", data={"login": "shop", "csrf_token": csrf_of(form.text)})
        assert r.headers["location"] == "/password-reset?sent=1"
    time.sleep(0.3)
    assert mailer.sent == []


def test_opening_an_account_without_smtp_is_refused_before_it_exists(app):
    gw, url, _ = app
    gw.mailer = None  # and no [smtp] section
    with login(url, "root") as c:
        page = c.get("/users")
        assert "No [smtp] server is configured" in page.text
        r = c.post("/users", data={"csrf_token": csrf_of(page.text), "username": "x-shop",
                                   "email": "x@acme.test", "partner_id": "acme"})
        assert r.status_code == 400 and "[smtp]" in r.text
    assert Users(gw.store).by_username("x-shop") is None


# -- the API ----------------------------------------------------------------------------------


def test_api_account_for_a_client_and_its_changes(app):
    gw, url, _ = app
    auth_user = Users(gw.store).by_username("shop")
    from gateway.web.auth import ApiTokens

    bearer, _ = ApiTokens(gw.store).create(auth_user, "erp")
    with httpx.Client(base_url=url + "/api", headers={"Authorization": f"Bearer {bearer}"},
                      timeout=30) as c:
        me = c.get("/account").json()
        assert (me["username"], me["role"], me["partner_id"], me["partner_name"]) == (
            "shop", "client", "acme", "ACME Bakeries")
        assert c.patch("/account", json={"email": "x@acme.test"}).status_code == 422
        assert c.patch("/account", json={"current_password": OLD}).status_code == 422
        r = c.patch("/account", json={"email": "x@acme.test", "current_password": "nope"})
        assert r.status_code == 400 and "current password" in r.json()["detail"]
        r = c.patch("/account", json={"email": "x@acme.test", "password": "short",
                                      "current_password": OLD})
        assert r.status_code == 400 and "too short" in r.json()["detail"]
        assert Users(gw.store).by_username("shop").email == "buyer@acme.test"  # nothing
        r = c.patch("/account", json={"email": "x@acme.test", "password": NEW,
                                      "current_password": OLD})
        assert r.status_code == 200 and r.json()["email"] == "x@acme.test"
    with client(url) as anon:
        assert anon.get("/api/account").status_code == 401
    assert logs_in(url, "shop", NEW)


def test_api_cookie_session_needs_csrf_to_patch_the_account(app):
    _, url, _ = app
    with client(url) as c:
        r = c.post("/api/login", json={"username": "shop", "password": OLD})
        csrf = r.json()["csrf_token"]
        body = {"email": "y@acme.test", "current_password": OLD}
        assert c.patch("/api/account", json=body).status_code == 403
        assert c.patch("/api/account", json=body, headers={"X-CSRF-Token": csrf}).json()[
            "email"] == "y@acme.test"


def test_api_reset_answers_202_alike_and_the_token_confirms_once(app):
    gw, url, mailer = app
    with client(url) as c:
        known = c.post("/api/password-reset", json={"login": "vera"})
        unknown = c.post("/api/password-reset", json={"login": "nobody@nowhere.test"})
        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        (mail,) = mailer.wait(1)
        token = LINK.search(mail.get_content()).group(2)
        weak = c.post("/api/password-reset/confirm", json={"token": token, "password": "x"})
        assert weak.status_code == 400 and "too short" in weak.json()["detail"]
        ok = c.post("/api/password-reset/confirm", json={"token": token, "password": NEW})
        assert ok.status_code == 204
        again = c.post("/api/password-reset/confirm", json={"token": token, "password": NEW})
        assert again.status_code == 400 and "not valid" in again.json()["detail"]
    assert logs_in(url, "vera", NEW)


def test_api_reset_link_uses_the_public_url_when_set(app):
    gw, url, mailer = app
    http = gw.settings.http.model_copy(update={"public_url": "https://edi.wholesaler.example"})
    gw.settings = gw.settings.model_copy(update={"http": http})
    with client(url) as c:
        c.post("/api/password-reset", json={"login": "vera"})
    assert mailer.wait(1)[0].get_content().count(
        "https://edi.wholesaler.example/password-reset/") == 1


def test_api_users_invite_mails_a_link_instead_of_a_password(app):
    gw, url, mailer = app
    admin = Users(gw.store).by_username("root")
    from gateway.web.auth import ApiTokens

    bearer, _ = ApiTokens(gw.store).create(admin, "admin")
    with httpx.Client(base_url=url + "/api", headers={"Authorization": f"Bearer {bearer}"},
                      timeout=30) as c:
        assert c.post("/users", json={"username": "p", "role": "client",
                                      "partner_id": "acme"}).status_code == 422
        r = c.post("/users", json={"username": "p", "role": "client", "partner_id": "acme",
                                   "invite": True})
        assert r.status_code == 422 and "e-mail" in r.json()["detail"]
        r = c.post("/users", json={"username": "p", "role": "client", "partner_id": "acme",
                                   "email": "p@acme.test", "invite": True})
        assert r.status_code == 201, r.text
        (mail,) = mailer.wait(1)
        assert mail["To"] == "p@acme.test" and "set your password" in mail["Subject"]
        r = c.patch("/users/p", json={"invite": True})
        assert r.status_code == 200
        assert len(mailer.wait(2)) == 2
        gw.mailer = None
        r = c.patch("/users/p", json={"invite": True})
        assert r.status_code == 422 and "[smtp]" in r.json()["detail"]
    (create,) = AuditLog(gw.store).list(action="user.create")
    assert create.after["invite"] is True
    assert len(AuditLog(gw.store).list(action="user.invite")) == 2
