"""Outbound SFTP: files for a partner (CONTRL …) put into its server's ``outbound_folder``.

The file is written under a temporary name (``.NAME.part``: a dot-name every poller skips)
and renamed once complete and checked, so the partner never sees half a file. A file of the
final name already holding the same bytes means it was delivered before a crash: nothing is
sent again. Another file of that name is never overwritten: the new one gets ``NAME.2`` …
A failure raises ``SftpError``; the dispatcher records it on the outbound row and retries.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.channels.sftp.connection import RemoteFile, SftpConnection, server_name
from gateway.channels.sftp.errors import SftpError
from gateway.channels.sftp.settings import SftpSettings
from gateway.store.records import OutboundRow

if TYPE_CHECKING:
    from gateway.config import Partner


class _Session(Protocol):
    @property
    def alive(self) -> bool: ...

    def stat(self, path: str) -> RemoteFile: ...

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes) -> None: ...

    def rename(self, source: str, target: str) -> None: ...

    def close(self) -> None: ...


class SftpSender:
    """The dispatcher's ``Sender`` for channel ``sftp``; one session per partner, reused."""

    def __init__(self, *, connect: Callable[[SftpSettings], _Session] = SftpConnection.open
                 ) -> None:
        self.connect = connect
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> str:
        """Put ``data`` into the partner's outbound folder; returns where it went."""
        settings = partner.sftp if partner is not None else None
        folder = settings.outbound_folder if settings is not None else None
        if partner is None or settings is None or not folder:
            raise SftpError(f"partner {row.partner_id} has no [sftp] outbound_folder to put "
                            f"{row.filename} into")
        name = posixpath.basename(row.filename.replace("\\", "/"))
        with self._lock:
            for attempt in (1, 2):
                reused = partner.id in self._sessions
                session = self._session(partner.id, settings)
                try:
                    target = self._put(session, folder, name, data)
                    break
                except SftpError:
                    self.close(partner.id)
                    # A reused session may have died while idle: one retry on a new one.
                    if attempt == 2 or not reused:
                        raise
        return f"{row.kind} put to sftp://{server_name(settings)}{target}"

    def _session(self, partner_id: str, settings: SftpSettings) -> _Session:
        session = self._sessions.get(partner_id)
        if session is None or not session.alive:
            if session is not None:
                session.close()
            session = self._sessions[partner_id] = self.connect(settings)
        return session

    @staticmethod
    def _put(session: _Session, folder: str, name: str, data: bytes) -> str:
        if not name or name in (".", ".."):
            raise SftpError(f"no usable file name in {name!r}")
        stem, ext = posixpath.splitext(name)
        target = posixpath.join(folder, name)
        n = 1
        while session.exists(target):
            if session.read(target) == data:
                return target  # delivered before a crash
            n += 1
            target = posixpath.join(folder, f"{stem}.{n}{ext}")
        temp = posixpath.join(folder, f".{posixpath.basename(target)}.part")
        session.write(temp, data)
        written = session.stat(temp).size
        if written != len(data):
            raise SftpError(f"{written} of {len(data)} bytes written", path=temp)
        session.rename(temp, target)
        return target

    def close(self, partner_id: str | None = None) -> None:
        """Close one partner's session, or all of them."""
        ids = [partner_id] if partner_id is not None else list(self._sessions)
        for pid in ids:
            session = self._sessions.pop(pid, None)
            if session is not None:
                session.close()
