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


def test_put_file_streams_and_blocks_read_back(tmp_path):
    """A file is archived by streaming (in blocks smaller than it) and read back the same."""
    a = Archive(tmp_path / "archive")
    a.block = 1000
    src = tmp_path / "big.edi"
    data = bytes(range(256)) * 50  # 12,800 bytes: 13 blocks
    src.write_bytes(data)
    digest, size = a.put_file(src)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert a.get(digest) == data
    assert b"".join(a.blocks(digest)) == data
    assert a.put_file(src) == (digest, size)  # stored once
    assert not [p for p in (tmp_path / "archive").iterdir() if p.name.startswith(".in-")]


def test_blocks_detect_corruption_at_the_end(tmp_path):
    a = Archive(tmp_path)
    d = a.put(b"x" * 5000)
    a.path_of(d).write_bytes(b"y" * 5000)
    with pytest.raises(StoreError, match="corrupted"):
        list(a.blocks(d))
