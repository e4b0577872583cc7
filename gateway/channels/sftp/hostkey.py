"""The server host key an SFTP connection is pinned to (sans-IO: keys in, verdict out).

A partner's profile pins its server's public key, either as one known_hosts line
(``host_key = "ssh-ed25519 AAAA…"``) or as a known_hosts file (entries for ``host`` or
``[host]:port``, hashed or not). A connection presenting any other key is refused before the
login is sent. Only the pinned key types are offered in the key exchange, so that a server
holding several keys presents the pinned one rather than one of another type.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import paramiko

from gateway.channels.sftp.errors import HostKeyRefused

#: Key exchange host key algorithms for a pinned key type (RSA keys sign with SHA-2 now).
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a key: ``SHA256:`` and the unpadded base64 digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class PinnedHostKeys:
    """The keys a server may present; anything else is refused."""

    server: str
    keys: tuple[paramiko.PKey, ...]

    @classmethod
    def from_line(cls, server: str, line: str) -> PinnedHostKeys:
        """From ``[hosts] type base64 [comment]`` (a known_hosts line; the hosts are optional)."""
        parts = line.split()
        if parts and not _is_key_type(parts[0]):
            parts = parts[1:]  # the hosts column of a known_hosts line
        if len(parts) < 2 or not _is_key_type(parts[0]):
            raise ValueError("host_key must be a public key line such as "
                             "'ssh-ed25519 AAAA…'")
        try:
            key = paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
        except Exception as exc:  # binascii, SSHException, UnknownKeyType …
            raise ValueError(f"host_key is not a readable {parts[0]} key: {exc}") from exc
        return cls(server=server, keys=(key,))

    @classmethod
    def from_known_hosts(cls, server: str, path: Path, host: str, port: int) -> PinnedHostKeys:
        """The entries of a known_hosts file for ``host`` (port 22) or ``[host]:port``."""
        try:
            known = paramiko.HostKeys(str(path))
        except OSError as exc:
            raise ValueError(f"known_hosts {path} cannot be read: {exc.strerror}") from exc
        name = host if port == 22 else f"[{host}]:{port}"
        entry = known.lookup(name)
        keys = tuple(entry.values()) if entry else ()
        if not keys:
            raise ValueError(f"known_hosts {path} has no key for {name}")
        return cls(server=server, keys=keys)

    @property
    def fingerprints(self) -> list[str]:
        return [f"{k.get_name()} {fingerprint(k)}" for k in self.keys]

    @property
    def algorithms(self) -> list[str]:
        """Host key algorithms to offer, in the order of the pinned keys."""
        found: list[str] = []
        for key in self.keys:
            for algo in _ALGORITHMS.get(key.get_name(), (key.get_name(),)):
                if algo not in found:
                    found.append(algo)
        return found

    def check(self, presented: paramiko.PKey | None) -> None:
        """Return if ``presented`` is one of the pinned keys, else raise ``HostKeyRefused``."""
        if presented is not None and any(
                k.get_name() == presented.get_name() and k.asbytes() == presented.asbytes()
                for k in self.keys):
            return
        raise HostKeyRefused(
            server=self.server, expected=self.fingerprints,
            presented=fingerprint(presented) if presented is not None else None,
            presented_type=presented.get_name() if presented is not None else None)


def _is_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-"))
