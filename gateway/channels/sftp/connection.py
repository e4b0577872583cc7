"""A thin blocking SFTP session over paramiko: pinned host key, login, file operations.

Every call blocks (callers run it in a worker thread) and every paramiko or socket
exception is translated here into ``SftpError`` (``HostKeyRefused`` for a key other than the
pinned one), raised ``from`` the original. The host key is checked after the key exchange
and before the login, so a server that is not the partner's never receives the password.

Secrets are read from the settings when connecting and never put into a message or a log
line; paramiko's own loggers get a filter that masks them should a future version log one.
"""

from __future__ import annotations

import logging
import posixpath
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import paramiko

from gateway.channels.sftp.errors import SftpError
from gateway.channels.sftp.hostkey import PinnedHostKeys
from gateway.channels.sftp.settings import SftpSettings


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A regular file in a remote folder, as listed (SFTP v3 mtimes are whole seconds)."""

    folder: str
    name: str
    size: int
    mtime: int

    @property
    def path(self) -> str:
        return posixpath.join(self.folder, self.name)


def server_name(settings: SftpSettings) -> str:
    """``user@host:port`` for messages and logs (never a secret)."""
    return f"{settings.user}@{settings.host}:{settings.port}"


def pinned_keys(settings: SftpSettings) -> PinnedHostKeys:
    """The host keys the settings pin; ``SftpError`` when they cannot be read."""
    server = server_name(settings)
    try:
        if settings.host_key:
            return PinnedHostKeys.from_line(server, settings.host_key)
        assert settings.known_hosts is not None  # SftpSettings requires one of the two
        return PinnedHostKeys.from_known_hosts(server, settings.known_hosts,
                                               settings.host, settings.port)
    except ValueError as exc:
        raise SftpError(str(exc), server=server) from exc


class SftpConnection:
    """One logged-in SFTP session; ``open`` connects, ``close`` is idempotent."""

    def __init__(self, settings: SftpSettings) -> None:
        self.settings = settings
        self.server = server_name(settings)
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- session ----------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: SftpSettings) -> SftpConnection:
        conn = cls(settings)
        try:
            conn._connect()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> None:
        s = self.settings
        pinned = pinned_keys(s)
        password = s.password_value() if (s.password or s.password_file) else None
        with self._translated("connect"):
            _SECRETS.add(password)
            sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
            transport = paramiko.Transport(sock)
            self._transport = transport
            transport.banner_timeout = s.timeout
            transport.auth_timeout = s.timeout
            transport.handshake_timeout = s.timeout
            # Offer only the pinned key types, so the server presents the pinned key.
            transport.get_security_options().key_types = pinned.algorithms
            try:
                transport.start_client(timeout=s.timeout)
            except paramiko.SSHException as exc:
                if "host key" in str(exc).lower():
                    pinned.check(None)  # no key of the pinned type: refused, said so
                raise
            pinned.check(transport.get_remote_server_key())
            self._login(transport, password)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise SftpError("the server refused the sftp subsystem", server=self.server)
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(s.timeout)
            self._sftp = sftp

    def _login(self, transport: paramiko.Transport, password: str | None) -> None:
        s = self.settings
        remaining: list[str] = []
        if s.key_file is not None:
            passphrase = s.key_passphrase.get_secret_value() if s.key_passphrase else None
            _SECRETS.add(passphrase)
            try:
                key = paramiko.PKey.from_path(  # its stub says str; paramiko takes bytes
                    s.key_file, passphrase.encode("utf-8") if passphrase else None,  # type: ignore[arg-type]
                )
            except OSError as exc:
                raise SftpError(f"key_file {s.key_file} cannot be read: {exc.strerror}",
                                server=self.server) from exc
            except (paramiko.SSHException, ValueError, TypeError) as exc:
                raise SftpError(f"key_file {s.key_file} cannot be loaded (wrong or missing "
                                f"key_passphrase?): {_said(exc)}",
                                server=self.server) from exc
            remaining = transport.auth_publickey(s.user, key)
            if not remaining:
                return
        if password is not None:
            transport.auth_password(s.user, password)
            return
        raise SftpError(f"the server asks for more authentication ({', '.join(remaining)}) "
                        "than configured", server=self.server)

    @property
    def alive(self) -> bool:
        return (self._sftp is not None and self._transport is not None
                and self._transport.is_active())

    def close(self) -> None:
        sftp, transport = self._sftp, self._transport
        self._sftp = self._transport = None
        for thing in (sftp, transport):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing a dead session: nothing left to do
                    pass

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise SftpError("not connected", server=self.server)
        return self._sftp

    @contextmanager
    def _translated(self, what: str, path: str | None = None) -> Iterator[None]:
        """Re-raise paramiko and socket errors as ``SftpError`` naming the operation."""
        try:
            yield
        except SftpError:
            raise
        except FileNotFoundError:
            raise
        except paramiko.AuthenticationException as exc:
            raise SftpError(f"{what}: login refused for user {self.settings.user} "
                            f"({type(exc).__name__})", server=self.server) from exc
        except (paramiko.SSHException, EOFError) as exc:
            raise SftpError(f"{what}: {_said(exc)}", server=self.server, path=path) from exc
        except TimeoutError as exc:
            raise SftpError(f"{what}: timed out after {self.settings.timeout:g}s",
                            server=self.server, path=path) from exc
        except OSError as exc:
            raise SftpError(f"{what}: {exc.strerror or _said(exc)}", server=self.server,
                            path=path) from exc

    # -- files -------------------------------------------------------------------------------

    def list(self, folder: str) -> list[RemoteFile]:
        """Regular files in ``folder`` (links, folders and devices are not files to take)."""
        with self._translated("list", folder):
            entries = self.sftp.listdir_attr(folder)
        return [RemoteFile(folder, e.filename, e.st_size or 0, int(e.st_mtime or 0))
                for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode)]

    def stat(self, path: str) -> RemoteFile:
        with self._translated("stat", path):
            st = self.sftp.stat(path)
        return RemoteFile(posixpath.dirname(path), posixpath.basename(path),
                          st.st_size or 0, int(st.st_mtime or 0))

    def download(self, path: str, into: IO[bytes]) -> int:
        """Copy the remote file into ``into``; returns the bytes copied."""
        with self._translated("download", path):
            return self.sftp.getfo(path, into)

    def read(self, path: str) -> bytes:
        with self._translated("read", path), self.sftp.open(path, "rb") as fh:
            fh.prefetch()
            return fh.read()

    def remove(self, path: str) -> None:
        with self._translated("remove", path):
            self.sftp.remove(path)

    def rename(self, source: str, target: str) -> None:
        """Rename without overwriting (SFTP v3 rename fails when ``target`` exists)."""
        with self._translated("rename", source):
            self.sftp.rename(source, target)

    def mkdir(self, path: str) -> None:
        with self._translated("mkdir", path):
            self.sftp.mkdir(path)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    def write(self, path: str, data: bytes) -> None:
        with self._translated("write", path), self.sftp.open(path, "wb") as fh:
            fh.set_pipelined(True)
            fh.write(data)


def _said(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _SecretMask(logging.Filter):
    """Masks the secrets in use in any record paramiko logs (it does not log them today)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        text = record.getMessage()
        masked = text
        for secret in self._secrets:
            masked = masked.replace(secret, "**********")
        if masked != text:
            record.msg, record.args = masked, None
        return True


_SECRETS = _SecretMask()
# A logger's filters see only the records made on that logger: name each paramiko uses.
for _name in ("paramiko", "paramiko.transport", "paramiko.transport.sftp"):
    logging.getLogger(_name).addFilter(_SECRETS)
