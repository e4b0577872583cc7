"""Reset links on SQLite and PostgreSQL: the hourly limit and the single use hold when
requests and uses come in parallel (the user's row is locked while counting; taking a link
is one conditional update)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.store.resets import ResetRecords
from gateway.web.account import PasswordResets, ResetRefused
from gateway.web.auth import Users

pytestmark = pytest.mark.integration

OLD = "the-old-password-42"


@pytest.fixture
def store(store_url):
    st = Store.from_url(store_url)
    Users(st).create("shop", OLD, "client", partner_id="acme", email="buyer@acme.test")
    yield st
    st.close()


def test_parallel_requests_get_three_links_at_most(store):
    def ask(_: int) -> int:
        return len(PasswordResets(store).request_reset("shop", link_base="http://x"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(ask, range(16))) == 3
    assert len(ResetRecords(store).of_user(Users(store).by_username("shop").id)) == 3


def test_parallel_uses_of_one_link_set_one_password(store):
    (mail,) = PasswordResets(store).request_reset("shop", link_base="http://x")
    token = re.search(r"/password-reset/(\S+)", mail.body).group(1)

    def use(n: int) -> bool:
        try:
            PasswordResets(store).confirm_reset(token, f"parallel-password-{n:02d}")
        except ResetRefused:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(use, range(8))) == 1
    assert len(AuditLog(store).list(action="user.password_reset")) == 1
