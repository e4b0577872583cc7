"""Password reset by an e-mailed one-time link, and a user's own account changes
(``gateway.web.account``), on a real SQLite store with a fixed clock."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.core import clock
from gateway.core.clock import FixedClock
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.store.resets import ResetRecords
from gateway.web.account import (
    Account,
    AccountError,
    PasswordResets,
    ResetMail,
    ResetRefused,
    send_mails,
)
from gateway.web.auth import LOCK_AFTER, LoginRefused, Sessions, UserError, Users

START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
OLD = "the-old-password-42"
NEW = "a-brand-new-secret-7"
BASE = "https://edi.example"


@pytest.fixture
def fixed():
    c = FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def store(tmp_path):
    st = Store.from_url(f"sqlite:///{tmp_path / 'resets.sqlite3'}")
    users = Users(st)
    users.create("shop", OLD, "client", partner_id="acme", email="Buyer@Acme.test")
    users.create("ann", OLD, "operator", email="ann@wholesaler.test")
    users.create("noaddress", OLD, "viewer")
    yield st
    st.close()


def _token(mail: ResetMail) -> str:
    found = re.search(re.escape(BASE) + r"/password-reset/([A-Za-z0-9_-]+)", mail.body)
    assert found, mail.body
    return found.group(1)


def _ask(store: Store, login: str, **kw) -> list[ResetMail]:
    return PasswordResets(store, **kw).request_reset(login, link_base=BASE, remote="10.1.2.3")


def test_a_known_user_gets_a_link_whose_token_is_stored_only_as_its_sha256(store, fixed):
    (mail,) = _ask(store, "shop")
    token = _token(mail)
    assert mail.to == "Buyer@Acme.test" and mail.username == "shop"
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    assert "within 30 minutes" in mail.body and OLD not in mail.body
    assert token not in repr(mail)  # a mail logged by accident shows no token
    (row,) = ResetRecords(store).of_user(Users(store).by_username("shop").id)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.expires_at == START + dt.timedelta(minutes=30) and row.used_at is None
    assert row.remote == "10.1.2.3"
    with store.engine.connect() as conn:
        dump = repr(conn.execute(s.password_resets.select()).all())
    assert token not in dump


def test_the_address_finds_the_user_without_case_and_staff_reset_too(store, fixed):
    (mail,) = _ask(store, "  buyer@acme.TEST ")
    assert mail.username == "shop"
    (staff,) = _ask(store, "ann")
    assert staff.to == "ann@wholesaler.test"


def test_unknown_disabled_or_addressless_users_get_nothing_and_nothing_is_stored(store, fixed):
    Users(store).disable("ann")
    for login in ("nobody", "nobody@nowhere.test", "", "ann", "ann@wholesaler.test",
                  "noaddress"):
        assert _ask(store, login) == [], login
    with store.engine.connect() as conn:
        assert conn.execute(s.password_resets.select()).all() == []


def test_at_most_three_links_per_user_in_an_hour(store, fixed):
    assert all(len(_ask(store, "shop")) == 1 for _ in range(3))
    fixed.advance(minutes=59)
    assert _ask(store, "shop") == []
    assert len(_ask(store, "ann")) == 1  # the limit is per user
    fixed.advance(minutes=1, seconds=1)
    assert len(_ask(store, "shop")) == 1
    user = Users(store).by_username("shop")
    assert len(ResetRecords(store).of_user(user.id)) == 4


def test_parallel_requests_cannot_pass_the_hourly_limit(store, fixed):
    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = sum(len(m) for m in pool.map(lambda _: _ask(store, "shop"), range(12)))
    assert sent == 3


def test_the_link_sets_the_password_ends_sessions_clears_the_lock_and_is_audited(store, fixed):
    users = Users(store)
    user = users.by_username("shop")
    Sessions(store).create(user)
    for _ in range(LOCK_AFTER):
        with pytest.raises(LoginRefused):
            users.authenticate("shop", "wrong-guess-123")
    with pytest.raises(LoginRefused) as locked:
        users.authenticate("shop", OLD)
    assert "locked" in locked.value.reason
    first, second = _ask(store, "shop"), _ask(store, "shop")
    done = PasswordResets(store).confirm_reset(_token(first[0]), NEW, remote="10.9.9.9")
    assert done.username == "shop" and done.failed_logins == 0
    with store.engine.connect() as conn:
        assert conn.execute(s.sessions.select()).all() == []
    assert users.authenticate("shop", NEW).username == "shop"
    with pytest.raises(LoginRefused):
        users.authenticate("shop", OLD)
    # The other open link is voided by the reset.
    with pytest.raises(ResetRefused):
        PasswordResets(store).confirm_reset(_token(second[0]), "yet-another-pass-99")
    (entry,) = AuditLog(store).list(action="user.password_reset")
    assert (entry.actor, entry.target, entry.remote) == ("shop", "user:shop", "10.9.9.9")
    assert entry.after == {"via": "e-mailed link", "other_links_voided": 1}
    assert _token(first[0]) not in repr(entry)


def test_a_link_works_once(store, fixed):
    token = _token(_ask(store, "shop")[0])
    PasswordResets(store).confirm_reset(token, NEW)
    with pytest.raises(ResetRefused) as refused:
        PasswordResets(store).confirm_reset(token, "yet-another-pass-99")
    assert refused.value.reason == "link already used"
    assert Users(store).authenticate("shop", NEW)


def test_parallel_uses_of_one_link_set_one_password(store, fixed):
    token = _token(_ask(store, "shop")[0])
    passwords = [f"parallel-password-{n:02d}" for n in range(8)]

    def use(password: str) -> str | None:
        try:
            PasswordResets(store).confirm_reset(token, password)
        except ResetRefused:
            return None
        return password

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = [p for p in pool.map(use, passwords) if p is not None]
    assert len(won) == 1
    assert Users(store).authenticate("shop", won[0])
    assert len(AuditLog(store).list(action="user.password_reset")) == 1


def test_an_expired_link_is_refused(store, fixed):
    token = _token(_ask(store, "shop")[0])
    fixed.advance(minutes=29, seconds=59)
    assert PasswordResets(store).check(token).username == "shop"
    fixed.advance(seconds=1)
    with pytest.raises(ResetRefused) as refused:
        PasswordResets(store).confirm_reset(token, NEW)
    assert refused.value.reason == "link expired"
    assert Users(store).authenticate("shop", OLD)


def test_the_validity_follows_the_setting(store, fixed):
    token = _token(_ask(store, "shop", validity=dt.timedelta(minutes=5))[0])
    fixed.advance(minutes=5)
    with pytest.raises(ResetRefused, match="not valid"):
        PasswordResets(store).check(token)


def test_an_unknown_link_is_refused_with_the_same_message(store, fixed):
    with pytest.raises(ResetRefused) as unknown:
        PasswordResets(store).confirm_reset("made-up-token", NEW)
    token = _token(_ask(store, "shop")[0])
    PasswordResets(store).confirm_reset(token, NEW)
    with pytest.raises(ResetRefused) as used:
        PasswordResets(store).confirm_reset(token, NEW + "x")
    assert str(unknown.value) == str(used.value) and unknown.value.reason == "unknown link"


def test_a_disabled_user_cannot_reset_with_a_link_sent_before(store, fixed):
    token = _token(_ask(store, "shop")[0])
    Users(store).disable("shop")
    with pytest.raises(ResetRefused) as refused:
        PasswordResets(store).confirm_reset(token, NEW)
    assert "disabled" in refused.value.reason
    Users(store).enable("shop")
    assert Users(store).authenticate("shop", OLD)


def test_a_password_the_policy_refuses_leaves_the_link_usable(store, fixed):
    token = _token(_ask(store, "shop")[0])
    for weak, why in (("short", "too short"), ("password1234", "too common"),
                      ("shop", "too short"), ("abababababab", "too few")):
        with pytest.raises(UserError, match=why):
            PasswordResets(store).confirm_reset(token, weak)
    assert PasswordResets(store).confirm_reset(token, NEW).username == "shop"


def test_logs_never_hold_the_token(store, fixed):
    structlog.reset_defaults()
    with capture_logs() as logs:
        token = _token(_ask(store, "shop")[0])
        PasswordResets(store).confirm_reset(token, NEW, remote="10.0.0.1")
        with pytest.raises(ResetRefused):
            PasswordResets(store).confirm_reset(token, NEW)
    events = [e["event"] for e in logs]
    assert "password_reset_requested" in events and "password_reset_done" in events
    assert token not in repr(logs) and NEW not in repr(logs)


def test_an_invitation_lasts_48_hours_and_ignores_the_hourly_limit(store, fixed):
    for _ in range(3):
        _ask(store, "shop")
    user = Users(store).by_username("shop")
    resets = PasswordResets(store)
    mail = resets.invite(user, link_base=BASE, by="admin", remote="10.0.0.2")
    assert "within 48 hours" in mail.body and f"{BASE}/login" in mail.body
    fixed.advance(hours=47, minutes=59)
    assert resets.confirm_reset(_token(mail), NEW).username == "shop"
    (entry,) = AuditLog(store).list(action="user.invite")
    assert entry.actor == "admin" and entry.after["email"] == "Buyer@Acme.test"
    with pytest.raises(AccountError, match="no e-mail"):
        resets.invite(Users(store).by_username("noaddress"), link_base=BASE, by="admin")
    Users(store).disable("ann")
    with pytest.raises(AccountError, match="disabled"):
        resets.invite(Users(store).by_username("ann"), link_base=BASE, by="admin")


def test_an_invitation_expires_after_48_hours(store, fixed):
    mail = PasswordResets(store).invite(Users(store).by_username("shop"), link_base=BASE,
                                        by="admin")
    fixed.advance(hours=48)
    with pytest.raises(ResetRefused):
        PasswordResets(store).confirm_reset(_token(mail), NEW)


# -- one's own account ---------------------------------------------------------------------


def test_changing_the_address_needs_the_current_password_and_voids_open_links(store, fixed):
    user = Users(store).by_username("shop")
    token = _token(_ask(store, "shop")[0])
    with pytest.raises(AccountError, match="current password is wrong"):
        Account(store).change_email(user, "new@acme.test", "wrong-password-1")
    assert Users(store).by_username("shop").failed_logins == 1  # counted like a login
    with pytest.raises(AccountError, match="not an e-mail"):
        Account(store).change_email(user, "not-an-address", OLD)
    done = Account(store).change_email(user, " new@acme.test ", OLD, remote="10.0.0.3")
    assert done.email == "new@acme.test" and done.failed_logins == 0
    with pytest.raises(ResetRefused):  # mailed to the old address
        PasswordResets(store).check(token)
    (entry,) = AuditLog(store).list(action="user.email_change")
    assert entry.before == {"email": "Buyer@Acme.test"} and entry.after == {
        "email": "new@acme.test"}


def test_changing_the_password_needs_the_current_one_and_ends_every_session(store, fixed):
    user = Users(store).by_username("ann")
    Sessions(store).create(user)
    with pytest.raises(UserError, match="too short"):
        Account(store).change_password(user, OLD, "short")
    with pytest.raises(AccountError):
        Account(store).change_password(user, "wrong-password-1", NEW)
    Account(store).change_password(user, OLD, NEW)
    with store.engine.connect() as conn:
        assert conn.execute(s.sessions.select()).all() == []
    assert Users(store).authenticate("ann", NEW)
    (entry,) = AuditLog(store).list(action="user.password_change")
    assert entry.actor == "ann" and NEW not in repr(entry)


def test_wrong_current_passwords_lock_the_account_like_logins(store, fixed):
    user = Users(store).by_username("shop")
    for _ in range(LOCK_AFTER):
        with pytest.raises(AccountError):
            Account(store).change_email(user, "x@acme.test", "wrong-password-1")
    with pytest.raises(AccountError):  # now even the right one
        Account(store).change_email(user, "x@acme.test", OLD)
    assert Users(store).by_username("shop").email == "Buyer@Acme.test"


# -- mailing ----------------------------------------------------------------------------------


class Outbox:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[list[str], str, str]] = []
        self.fail = fail

    def message(self, to, subject, body):
        return (list(to), subject, body)

    async def send(self, message) -> None:
        if self.fail:
            raise OSError("connection refused")
        self.sent.append(message)


def test_send_mails_counts_what_went_and_never_raises(store, fixed):
    import asyncio

    mails = _ask(store, "shop") + _ask(store, "ann")
    box = Outbox()
    assert asyncio.run(send_mails(box, mails)) == 2
    assert [m[0] for m in box.sent] == [["Buyer@Acme.test"], ["ann@wholesaler.test"]]
    structlog.reset_defaults()
    with capture_logs() as logs:
        assert asyncio.run(send_mails(Outbox(fail=True), mails)) == 0
        assert asyncio.run(send_mails(None, mails)) == 0
    assert [e["event"] for e in logs] == ["password_reset_not_mailed"] * 4
    assert not any(_token(m) in repr(logs) for m in mails)


def test_reset_later_looks_up_and_mails_after_and_a_store_fault_is_only_logged(store, fixed):
    import asyncio

    from gateway.core.errors import StoreError
    from gateway.web.account import reset_later

    box = Outbox()
    assert asyncio.run(reset_later(PasswordResets(store), box, "ann", link_base=BASE,
                                   remote=None)) == 1
    assert box.sent[0][0] == ["ann@wholesaler.test"]

    class StoreAway(PasswordResets):
        def request_reset(self, login, *, link_base, remote=None):
            raise StoreError("store unavailable")

    structlog.reset_defaults()
    with capture_logs() as logs:
        assert asyncio.run(reset_later(StoreAway(store), box, "ann", link_base=BASE,
                                       remote="10.0.0.4")) == 0
    assert [e["event"] for e in logs] == ["password_reset_failed"]
