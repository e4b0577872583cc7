"""What the SFTP channel raises; paramiko's exceptions never leave this package.

    SftpError               the server could not be reached or refused an operation
    └── HostKeyRefused      the server presented a key other than the pinned one

The channel records these in its health (``ChannelRecords.failed``) and retries with
back-off; the outbound dispatcher records them on the outbound row and retries.
"""

from __future__ import annotations

from gateway.core.errors import EdigwError


class SftpError(EdigwError):
    """An SFTP server could not be reached, refused the login or an operation."""

    def __init__(self, reason: str, *, server: str | None = None,
                 path: str | None = None) -> None:
        self.reason = reason
        self.server = server
        self.path = path
        where = server or "sftp"
        if path:
            where += f" {path}"
        super().__init__(f"{where}: {reason}")


class HostKeyRefused(SftpError):
    """The server's host key is not the pinned one: nothing is sent to it, not even a login."""

    def __init__(self, *, server: str, expected: list[str], presented: str | None,
                 presented_type: str | None = None) -> None:
        self.expected = expected
        self.presented = presented
        self.presented_type = presented_type
        want = ", ".join(expected) or "(none pinned for this host)"
        if presented is None:
            reason = (f"host key refused: the server offers no key of the pinned type; "
                      f"expected {want}")
        else:
            reason = (f"host key refused: expected {want}, server presented "
                      f"{presented_type} {presented}")
        super().__init__(reason, server=server)
