"""The client role: a partner's own user, bound to that partner, below every staff role."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.core.scope import EVERYTHING, OutOfScope, Scope, of_partner
from gateway.store.db import Store
from gateway.web.auth import Authenticator, Forbidden, UserError, role_at_least


@pytest.fixture
def store(tmp_path):
    st = Store.from_url(f"sqlite:///{tmp_path / 'clients.sqlite3'}")
    yield st
    st.close()


def _bearer(token: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/api/x", "scheme": "http",
                    "headers": [(b"authorization", f"Bearer {token}".encode())],
                    "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5),
                    "query_string": b""})


def test_a_client_ranks_below_every_staff_role():
    assert not role_at_least("client", "viewer")
    assert role_at_least("client", "client")
    assert role_at_least("viewer", "client") and role_at_least("admin", "client")


def test_a_client_needs_its_partner_and_staff_have_none(store):
    a = Authenticator(store)
    with pytest.raises(UserError, match="needs its partner"):
        a.users.create("shop", "a-long-enough-password", "client")
    with pytest.raises(UserError, match="only a client"):
        a.users.create("ann", "a-long-enough-password", "viewer", partner_id="acme")
    shop = a.users.create("shop", "a-long-enough-password", "client", partner_id="acme")
    assert shop.partner_id == "acme" and shop.as_dict()["partner_id"] == "acme"
    assert [u.username for u in a.users.list(partner_id="acme")] == ["shop"]
    with pytest.raises(UserError, match="needs its partner"):
        a.users.set_role("shop", "client")
    moved = a.users.set_role("shop", "viewer")
    assert moved.role == "viewer" and moved.partner_id is None


def test_a_client_passes_only_client_guards_and_reads_through_its_scope(store):
    a = Authenticator(store)
    shop = a.users.create("shop", "a-long-enough-password", "client", partner_id="acme")
    token, _ = a.tokens.create(shop, "erp")
    who = a.require("client")(_bearer(token))
    assert who.is_client and who.partner == "acme" and who.scope == Scope("acme")
    with pytest.raises(Forbidden):
        a.require("viewer")(_bearer(token))
    staff = a.users.create("ann", "a-long-enough-password", "viewer")
    staff_token, _ = a.tokens.create(staff, "t")
    seen = a.require("client")(_bearer(staff_token))
    assert seen.partner is None and seen.scope is EVERYTHING


def test_a_scope_narrows_a_filter_and_refuses_another_partner():
    mine = of_partner("acme")
    assert mine.narrow(None) == "acme" and mine.narrow("acme") == "acme"
    with pytest.raises(OutOfScope):
        mine.narrow("other")
    assert EVERYTHING.narrow("other") == "other" and EVERYTHING.narrow(None) is None
    assert mine.allows("acme") and not mine.allows("other") and not mine.allows(None)
    with pytest.raises(ValueError):
        of_partner("")


def test_login_throttling_and_the_password_policy_apply_to_clients(store):
    """A client's weak password is refused; five wrong passwords lock it like staff."""
    from gateway.web.auth import LOCK_AFTER, LoginRefused

    a = Authenticator(store)
    with pytest.raises(UserError, match="too short"):
        a.users.create("shop", "short", "client", partner_id="acme")
    with pytest.raises(UserError, match="user name"):
        a.users.create("shop-acme-01", "shop-acme-01", "client", partner_id="acme")
    a.users.create("shop", "a-long-enough-password", "client", partner_id="acme")
    for _ in range(LOCK_AFTER):
        with pytest.raises(LoginRefused):
            a.users.authenticate("shop", "wrong")
    with pytest.raises(LoginRefused) as locked:
        a.users.authenticate("shop", "a-long-enough-password")
    assert "locked" in locked.value.reason
