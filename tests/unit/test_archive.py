"""The content-addressed archive keeps raw bytes once, by sha256."""

import hashlib

import pytest

from gateway.core.errors import StoreError
from gateway.store.archive import Archive


def test_put_returns_sha256_and_get_gives_the_bytes_back(tmp_path):
    """Bytes are stored under their digest and read back unchanged."""
    a = Archive(tmp_path)
    digest = a.put(b"UNB+UNOA:3'")
    assert digest == hashlib.sha256(b"UNB+UNOA:3'").hexdigest()
    assert a.get(digest) == b"UNB+UNOA:3'"
    assert a.path_of(digest).parent.name == digest[:2]
    assert digest in a


def test_same_bytes_are_stored_once(tmp_path):
    """Putting the same payload twice leaves one file."""
    a = Archive(tmp_path)
    d1, d2 = a.put(b"x" * 10), a.put(b"x" * 10)
    assert d1 == d2
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_corrupted_payload_is_detected(tmp_path):
    """A payload whose bytes changed on disk is refused, not returned."""
    a = Archive(tmp_path)
    d = a.put(b"abc")
    a.path_of(d).write_bytes(b"abd")
    with pytest.raises(StoreError, match="corrupted"):
        a.get(d)


def test_missing_payload_is_a_store_error(tmp_path):
    """Asking for an unknown digest raises StoreError."""
    with pytest.raises(StoreError, match="missing"):
        Archive(tmp_path).get("0" * 64)


def test_path_traversal_in_digest_is_refused(tmp_path):
    """Only hex digests name archive files."""
    with pytest.raises(ValueError):
        Archive(tmp_path).path_of("../../etc/passwd")
