"""The audit trail: entries with who, when, what, before and after, secrets masked, filters."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.core.clock import FixedClock, set_clock
from gateway.store.audit import MASK, AuditLog, mask_secrets
from gateway.store.db import Store

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock():
    c = FixedClock(T0)
    set_clock(c)
    yield c
    set_clock(None)


@pytest.fixture
def audit(store_url):
    store = Store.from_url(store_url)
    yield AuditLog(store)
    store.close()


def test_record_keeps_who_when_what_before_and_after(audit, clock):
    """An entry comes back with its actor, time, action, target, remote and JSON parts."""
    audit.record("marie", "partner.contacts", "partner:acme", remote="10.0.0.7",
                 before={"email": ["old@acme.example"]}, after={"email": ["new@acme.example"]})
    [entry] = audit.list()
    assert (entry.actor, entry.action, entry.target, entry.remote) == (
        "marie", "partner.contacts", "partner:acme", "10.0.0.7")
    assert entry.at == T0
    assert entry.before == {"email": ["old@acme.example"]}
    assert entry.after == {"email": ["new@acme.example"]}
    assert entry.as_dict()["at"] == T0.isoformat()


def test_secrets_are_masked_by_key_name_and_private_keys_by_content(audit, clock):
    """Passwords, passphrases, tokens and PEM private keys never reach the table."""
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
    audit.record("admin", "partner.sftp-password", "partner:acme",
                 before={"sftp": {"password": None, "password_file": None}},
                 after={"sftp": {"password": "s3cret!", "password_file": "var/secrets/acme/p",
                                 "key_passphrase": "pp", "note": pem},
                        "api_token": "tok", "host_key": "ssh-ed25519 AAAAC3Nz"})
    with audit.store.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT before, after FROM audit_log").one()
    assert "s3cret" not in raw.after and "b3Blbn" not in raw.after and "tok\"" not in raw.after
    [entry] = audit.list()
    assert entry.before == {"sftp": {"password": None, "password_file": None}}
    assert entry.after == {"sftp": {"password": MASK, "password_file": "var/secrets/acme/p",
                                    "key_passphrase": MASK, "note": MASK},
                           "api_token": MASK, "host_key": "ssh-ed25519 AAAAC3Nz"}


def test_mask_secrets_leaves_lists_and_plain_values():
    """Masking walks lists and keeps values that are not secrets."""
    assert mask_secrets({"users": [{"name": "a", "password_hash": "x"}], "n": 3}) == {
        "users": [{"name": "a", "password_hash": MASK}], "n": 3}


def test_list_filters_by_target_actor_action_family_and_time(audit, clock):
    """Filters narrow the trail; newest first; since inclusive, until exclusive; paging."""
    audit.record("marie", "partner.create", "partner:acme")
    clock.advance(hours=1)
    audit.record("paul", "partner.disable", "partner:acme")
    clock.advance(hours=1)
    audit.record("marie", "user.create", "user:paul")
    assert [e.action for e in audit.list()] == ["user.create", "partner.disable",
                                                "partner.create"]
    assert [e.action for e in audit.list(target="partner:acme")] == ["partner.disable",
                                                                     "partner.create"]
    assert [e.action for e in audit.list(actor="marie")] == ["user.create", "partner.create"]
    assert [e.action for e in audit.list(action="partner.*")] == ["partner.disable",
                                                                  "partner.create"]
    assert [e.action for e in audit.list(action="user.create")] == ["user.create"]
    paris = dt.timezone(dt.timedelta(hours=1))
    window = audit.list(since=(T0 + dt.timedelta(hours=1)).astimezone(paris),
                        until=T0 + dt.timedelta(hours=2))
    assert [e.action for e in window] == ["partner.disable"]
    assert [e.action for e in audit.list(limit=1, offset=1)] == ["partner.disable"]


def test_naive_bounds_are_refused(audit):
    """A time without a zone is ambiguous: refused rather than guessed."""
    with pytest.raises(ValueError):
        audit.list(since=dt.datetime(2026, 1, 1))
