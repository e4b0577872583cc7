"""The pinned host key (``gateway.channels.sftp.hostkey``): parsing, checking, the refusal."""

from __future__ import annotations

import base64

import paramiko
import pytest

from gateway.channels.sftp.errors import HostKeyRefused
from gateway.channels.sftp.hostkey import PinnedHostKeys, fingerprint


def _line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def test_the_pinned_key_is_accepted_from_a_line_with_or_without_hosts(keys):
    """``type base64``, a full known_hosts line and a trailing comment all pin the same key."""
    mine, _ = keys
    for line in (_line(mine), f"[sftp.example]:2222 {_line(mine)}", f"{_line(mine)} ops@x"):
        PinnedHostKeys.from_line("s", line).check(mine)


def test_another_key_is_refused_naming_expected_and_presented_fingerprints(keys):
    """The refusal carries both fingerprints, as attributes and in its message."""
    mine, theirs = keys
    pinned = PinnedHostKeys.from_line("u@h:22", _line(mine))
    with pytest.raises(HostKeyRefused) as refused:
        pinned.check(theirs)
    assert refused.value.expected == [f"ecdsa-sha2-nistp256 {fingerprint(mine)}"]
    assert refused.value.presented == fingerprint(theirs)
    assert fingerprint(mine) in str(refused.value) and fingerprint(theirs) in str(refused.value)
    with pytest.raises(HostKeyRefused, match="offers no key of the pinned type"):
        pinned.check(None)


def test_fingerprint_is_openssh_sha256(keys):
    """Same text as ``ssh-keygen -lf``: SHA256 and unpadded base64."""
    mine, _ = keys
    fp = fingerprint(mine)
    assert fp.startswith("SHA256:") and not fp.endswith("=")
    assert base64.b64decode(fp[7:] + "=") and len(fp) == 50


def test_only_pinned_key_types_are_offered():
    """An RSA pin offers the SHA-2 RSA signature algorithms; others their own name."""
    rsa = paramiko.RSAKey.generate(1024)
    assert PinnedHostKeys("s", (rsa,)).algorithms == ["rsa-sha2-512", "rsa-sha2-256"]


def test_malformed_pins_are_errors_saying_what_is_expected(tmp_path):
    """Garbage, a bad base64 body and a known_hosts file without the host are ValueErrors."""
    with pytest.raises(ValueError, match="public key line"):
        PinnedHostKeys.from_line("s", "not a key")
    with pytest.raises(ValueError, match="not a readable ssh-ed25519 key"):
        PinnedHostKeys.from_line("s", "ssh-ed25519 AAAAnotbase64!!")
    known = tmp_path / "known_hosts"
    known.write_text(f"other.example {_line(paramiko.ECDSAKey.generate())}\n")
    with pytest.raises(ValueError, match=r"no key for \[h\]:2222"):
        PinnedHostKeys.from_known_hosts("s", known, "h", 2222)
