"""Channel health and remembered remote files, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.store.channels import ChannelRecords
from gateway.store.db import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def records(store_url):
    store = Store.from_url(store_url)
    yield ChannelRecords(store)
    store.close()


def test_failures_count_up_and_a_success_resets_them(records):
    assert records.failed("sftp:acme", "sftp", "connection refused", partner_id="acme") == 1
    assert records.failed("sftp:acme", "sftp", "timed out", partner_id="acme") == 2
    h = records.get("sftp:acme")
    assert (h.consecutive_failures, h.last_error, h.healthy) == (2, "timed out", False)
    assert h.last_success_at is None
    records.ok("sftp:acme", "sftp", partner_id="acme", detail="3 files taken")
    h = records.get("sftp:acme")
    assert (h.consecutive_failures, h.last_error, h.detail, h.healthy) == (
        0, None, "3 files taken", True)
    assert h.last_success_at is not None


def test_remote_files_are_remembered_by_path_size_and_mtime(records):
    files = [("/out/a.edi", 10, 1700000000), ("/out/b.edi", 20, 1700000001)]
    assert records.remembered("sftp:acme", files) == set()
    records.remember("sftp:acme", [(*files[0], "t1")])
    records.remember("sftp:acme", [(*files[0], "t1")])  # idempotent
    assert records.remembered("sftp:acme", files) == {files[0]}
    # The same name with another size or mtime is a new file.
    assert records.remembered("sftp:acme", [("/out/a.edi", 11, 1700000000)]) == set()
    assert records.remembered("sftp:other", files) == set()
