"""Users, passwords, sessions, CSRF and API tokens of the operator console."""

from __future__ import annotations

import datetime as dt

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.core import clock
from gateway.core.clock import FixedClock
from gateway.store.db import Store
from gateway.web import auth
from gateway.web.auth import (
    ApiTokens,
    Authenticator,
    Forbidden,
    LoginRefused,
    NotAuthenticated,
    Sessions,
    UserError,
    Users,
)

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def fixed():
    c = FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def store(tmp_path):
    st = Store.from_url(f"sqlite:///{tmp_path / 'auth.sqlite3'}")
    yield st
    st.close()


def _request(method: str = "GET", headers: dict[str, str] | None = None,
             scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": method, "path": "/api/x", "headers": raw,
                    "scheme": scheme, "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5),
                    "query_string": b""})


def test_passwords_are_argon2id_and_verify_only_the_right_one():
    """The hash names argon2id; the right password verifies, a wrong or malformed one not."""
    h = auth.hash_password("s3cret!")
    assert h.startswith("$argon2id$")
    assert auth.verify_password(h, "s3cret!")
    assert not auth.verify_password(h, "s3cret")
    assert not auth.verify_password("not-a-hash", "s3cret!")
    with pytest.raises(UserError):
        auth.hash_password("")


def test_login_refuses_unknown_wrong_disabled_and_counts_failures(store, fixed):
    """Unknown user, wrong password and disabled user are refused; a good login resets."""
    users = Users(store)
    users.create("marie", "pw-marie-long-enough", "operator", email="m@example.com")
    with pytest.raises(LoginRefused) as refused:
        users.authenticate("nobody", "x")
    assert "unknown" in refused.value.reason
    with pytest.raises(LoginRefused) as refused:
        users.authenticate("marie", "nope")
    assert "wrong" in refused.value.reason
    assert users.by_username("marie").failed_logins == 1
    ok = users.authenticate("marie", "pw-marie-long-enough")
    assert ok.failed_logins == 0 and ok.last_login_at == START
    users.disable("marie")
    with pytest.raises(LoginRefused) as refused:
        users.authenticate("marie", "pw-marie-long-enough")
    assert "disabled" in refused.value.reason
    users.enable("marie")
    assert users.authenticate("marie", "pw-marie-long-enough").username == "marie"
    with pytest.raises(UserError):
        users.create("marie", "x", "viewer")
    with pytest.raises(UserError):
        users.set_role("marie", "root")


def test_a_user_is_locked_after_five_failures_for_fifteen_minutes(store, fixed):
    """Five wrong passwords lock the user even for the right one, until the lock expires."""
    users = Users(store)
    users.create("paul", "right-password-42", "viewer")
    for _ in range(auth.LOCK_AFTER):
        with pytest.raises(LoginRefused):
            users.authenticate("paul", "wrong")
    with pytest.raises(LoginRefused) as refused:
        users.authenticate("paul", "right-password-42")
    assert "locked" in refused.value.reason
    fixed.advance(minutes=16)
    assert users.authenticate("paul", "right-password-42").failed_logins == 0


def test_sessions_end_after_idle_time_and_absolute_lifetime(store, fixed):
    """A session lives while used, dies after idle time, and dies at its absolute end."""
    user = Users(store).create("ann", "a-long-enough-password", "viewer")
    sessions = Sessions(store, idle=dt.timedelta(hours=1), absolute=dt.timedelta(hours=3))
    token, session = sessions.create(user)
    assert session.token_hash != token and len(token) >= 40
    for _ in range(5):  # used every 50 minutes: alive until the absolute end
        fixed.advance(minutes=50)
        if fixed.current - START < dt.timedelta(hours=3):
            assert sessions.resolve(token) is not None
    assert sessions.resolve(token) is None  # 4 h 10 after login
    token2, _ = sessions.create(user)
    fixed.advance(minutes=61)
    assert sessions.resolve(token2) is None
    token3, _ = sessions.create(user)
    sessions.end(token3)
    assert sessions.resolve(token3) is None


def test_a_new_password_or_disabling_ends_the_users_sessions(store, fixed):
    """Sessions do not outlive a password change or a disabled account."""
    users = Users(store)
    user = users.create("bob", "a-long-enough-password", "admin")
    sessions = Sessions(store)
    token, _ = sessions.create(user)
    users.set_password("bob", "new-password-42")
    assert sessions.resolve(token) is None
    token, _ = sessions.create(user)
    users.disable("bob")
    assert sessions.resolve(token) is None


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(store, fixed):
    """The token works as Bearer until revoked or expired; the store holds a hash and prefix."""
    user = Users(store).create("erp", "a-long-enough-password", "operator")
    tokens = ApiTokens(store)
    token, record = tokens.create(user, "erp integration")
    assert token.startswith("edigw_") and record.prefix == token[:12]
    assert tokens.resolve(token)[1].username == "erp"
    assert tokens.get(record.id).last_used_at == START
    assert tokens.resolve("edigw_wrong") is None
    tokens.revoke(record.id)
    assert tokens.resolve(token) is None
    token2, _ = tokens.create(user, "short", expires_at=START + dt.timedelta(hours=1))
    fixed.advance(hours=2)
    assert tokens.resolve(token2) is None


def test_require_refuses_nobody_401_and_lower_roles_403(store, fixed):
    """Nobody: NotAuthenticated; a viewer asking for operator: Forbidden; admin passes all."""
    a = Authenticator(store)
    a.users.create("v", "a-long-enough-password", "viewer")
    a.users.create("adm", "a-long-enough-password", "admin")
    with pytest.raises(NotAuthenticated):
        a.require("viewer")(_request())
    v_token, _ = a.tokens.create(a.users.by_username("v"), "t")
    adm_token, _ = a.tokens.create(a.users.by_username("adm"), "t")
    req = _request(headers={"Authorization": f"Bearer {v_token}"})
    assert a.require("viewer")(req).via == "token"
    with pytest.raises(Forbidden):
        a.require("operator")(_request(headers={"Authorization": f"Bearer {v_token}"}))
    admin = a.require("operator")(_request("POST", {"Authorization": f"Bearer {adm_token}"}))
    assert admin.role == "admin"  # a token needs no CSRF token


def test_cookie_requests_need_the_csrf_token_on_unsafe_methods(store, fixed):
    """A session cookie alone passes a GET but not a POST; with the header the POST passes."""
    a = Authenticator(store)
    a.users.create("op", "a-long-enough-password", "operator")
    response = Response()
    principal = a.login(_request("POST"), response, "op", "a-long-enough-password")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    jar = {"Cookie": f"{auth.COOKIE}={token}"}
    assert a.require("operator")(_request("GET", jar)).via == "session"
    with pytest.raises(Forbidden, match="CSRF"):
        a.require("operator")(_request("POST", jar))
    with pytest.raises(Forbidden, match="CSRF"):
        a.require("operator")(_request("POST", {**jar, "X-CSRF-Token": "guess"}))
    ok = a.require("operator")(_request("POST", {**jar, "X-CSRF-Token": principal.csrf_token}))
    assert ok.username == "op"
    assert a.authorize(_request("POST", jar), "operator",
                       form_token=principal.csrf_token).username == "op"
    https = Response()
    a.login(_request("POST", scheme="https"), https, "op", "a-long-enough-password")
    assert "Secure" in https.headers["set-cookie"]
    out = Response()
    a.logout(_request("POST", jar), out)
    with pytest.raises(NotAuthenticated):
        a.require("viewer")(_request("GET", jar))


# -- edigw users / edigw tokens ---------------------------------------------------------------


def _cli(tmp_path, *args: str, env: dict[str, str] | None = None, input: str | None = None):
    import click
    from click.testing import CliRunner

    from gateway.cli.common import CliContext as _Ctx
    from gateway.cli.users import tokens, users

    (tmp_path / "gateway.toml").write_text(
        f'partners = "{tmp_path}"\n[store]\nurl = "sqlite:///{tmp_path / "cli.sqlite3"}"\n')
    group = click.Group(commands={"users": users, "tokens": tokens})
    return CliRunner().invoke(group, list(args), obj=_Ctx(str(tmp_path / "gateway.toml")),
                              env=env, input=input)


def test_cli_manages_users_and_tokens_and_audits_as_the_os_user(tmp_path, monkeypatch):
    """add (password from the environment, or prompted), set-role, disable, enable, password;
    a token printed once works and is revoked; each change is audited as cli:<os user>."""
    import getpass

    from gateway.store.audit import AuditLog

    for var in ("EDIGW_STORE_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    r = _cli(tmp_path, "users", "add", "root", "--role", "admin", "--password-env", "PW",
             env={"PW": "first-password-1"})
    assert r.exit_code == 0, r.output
    r = _cli(tmp_path, "users", "add", "ann", "--role", "viewer", input="pw-ann-long-enough\npw-ann-long-enough\n")
    assert r.exit_code == 0, r.output
    assert _cli(tmp_path, "users", "add", "ann", "--role", "viewer", "--password-env", "PW",
                env={"PW": "x"}).exit_code == 1
    assert _cli(tmp_path, "users", "set-role", "ann", "operator").exit_code == 0
    assert _cli(tmp_path, "users", "set-role", "ghost", "operator").exit_code == 1
    assert _cli(tmp_path, "users", "disable", "ann").exit_code == 0
    listing = _cli(tmp_path, "users", "list").output
    assert "ann" in listing and "operator" in listing and "disabled" in listing
    assert _cli(tmp_path, "users", "enable", "ann").exit_code == 0
    assert _cli(tmp_path, "users", "password", "root", "--password-env", "PW",
                env={"PW": "second-password-2"}).exit_code == 0
    store = Store.from_url(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    try:
        assert Users(store).authenticate("root", "second-password-2").role == "admin"
        assert Users(store).authenticate("ann", "pw-ann-long-enough").role == "operator"
        r = _cli(tmp_path, "tokens", "create", "--user", "ann", "--name", "erp")
        token = r.stdout.strip().splitlines()[-1]
        assert r.exit_code == 0 and ApiTokens(store).resolve(token)[1].username == "ann"
        assert token not in _cli(tmp_path, "tokens", "list").output
        token_id = ApiTokens(store).list()[0].id
        assert _cli(tmp_path, "tokens", "revoke", str(token_id)).exit_code == 0
        assert ApiTokens(store).resolve(token) is None
        entries = AuditLog(store).list()
        assert {e.actor for e in entries} == {f"cli:{getpass.getuser()}"}
        assert [e.action for e in reversed(entries)] == [
            "user.create", "user.create", "user.update", "user.disable", "user.enable",
            "user.password", "token.create", "token.revoke"]
        assert all("first-password-1" not in str(e.after) for e in entries)
    finally:
        store.close()


def test_parallel_wrong_passwords_cannot_outrun_the_lock(store, fixed):
    """40 guesses at once: at most LOCK_AFTER of them get their password checked (each
    attempt is counted before the check, and only one per count), the rest are refused
    unchecked; the right password is then refused too, as the user is locked (the
    reviewer's finding: all 40 were checked)."""
    from concurrent.futures import ThreadPoolExecutor

    users = Users(store)
    users.create("paula", "right-password-42", "viewer")
    checked = []
    real = auth.verify_password

    def counting(stored: str, password: str) -> bool:
        checked.append(password)
        return real(stored, password)

    auth.verify_password = counting
    try:
        def guess(n: int) -> str:
            try:
                users.authenticate("paula", f"guess-{n}")
            except LoginRefused as exc:
                return exc.reason
            return "accepted"

        with ThreadPoolExecutor(max_workers=8) as pool:
            reasons = list(pool.map(guess, range(40)))
    finally:
        auth.verify_password = real
    assert "accepted" not in reasons
    assert len(checked) <= auth.LOCK_AFTER
    # Whatever the burst left, the lock comes after LOCK_AFTER checked guesses in all.
    for n in range(auth.LOCK_AFTER - len(checked)):
        with pytest.raises(LoginRefused):
            users.authenticate("paula", f"late-{n}")
    with pytest.raises(LoginRefused) as refused:
        users.authenticate("paula", "right-password-42")
    assert "locked" in refused.value.reason
