"""The SFTP channel's settings: the gateway-wide ``[sftp]`` (``SftpSection``), and each
partner's server in its profile (``SftpSettings``, composed into ``gateway.config.Partner``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from gateway.channels.sections import StrictModel, secret_from


class SftpDefaults(StrictModel):
    """What partners' ``[sftp]`` profiles leave out (``[sftp]`` of the gateway settings)."""

    #: Seconds a remote file must look unchanged before it is taken (SFTP mtimes are whole
    #: seconds; a partner writing under the final name may pause between chunks).
    settle: float = Field(default=5.0, gt=0, le=86400)


class SftpSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    sftp: SftpDefaults = Field(default_factory=SftpDefaults)


class SftpInbound(StrictModel):
    """A remote folder polled for files, and what happens to a file once durably received."""

    folder: Annotated[str, Field(min_length=1)]
    patterns: list[str] = Field(default_factory=lambda: ["*"])
    #: ``delete`` the remote file, ``move`` it to ``move_to``, or ``leave`` it and remember
    #: it (name, size, mtime) so that it is not taken again.
    after: Literal["delete", "move", "leave"] = "delete"
    move_to: str | None = None
    #: A file whose transmission FAILED (or was QUARANTINED): ``move`` it into
    #: ``failed_to`` (default ``<folder>/failed``, created when missing), ``delete`` it, or
    #: ``keep`` it in place (remembered: not taken again unless it changes).
    on_failure: Literal["move", "delete", "keep"] = "move"
    failed_to: str | None = None

    @model_validator(mode="after")
    def _move_needs_folder(self) -> SftpInbound:
        if self.after == "move" and not self.move_to:
            raise ValueError("after = 'move' needs move_to (a remote folder)")
        return self


class SftpSettings(StrictModel):
    """A partner's SFTP server (paramiko). Secrets come from the environment (``${VAR}``) or
    from files, never from committed configuration; ``host_key`` pins the server's key."""

    host: Annotated[str, Field(min_length=1)]
    port: int = Field(default=22, ge=1, le=65535)
    user: Annotated[str, Field(min_length=1)]
    password: SecretStr | None = None
    password_file: Path | None = None
    key_file: Path | None = None
    key_passphrase: SecretStr | None = None
    #: The server's public host key as in known_hosts (``ssh-ed25519 AAAA…``), or a
    #: known_hosts file: a connection to a server with another key is refused.
    host_key: str | None = None
    known_hosts: Path | None = None
    inbound: list[SftpInbound] = Field(default_factory=list)
    #: Remote folder acknowledgements (CONTRL) are put into, under a temporary name first.
    outbound_folder: str | None = None
    #: Names with these prefixes or suffixes are files still being written: never taken.
    temp_prefixes: list[str] = Field(default_factory=lambda: [".", "~"])
    temp_suffixes: list[str] = Field(default_factory=lambda: [".tmp", ".part", ".filepart"])
    poll_interval: float = Field(default=60.0, gt=0, le=86400)
    max_files: int = Field(default=100, ge=1, le=100000)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    max_size: int = Field(default=200 * 1024 * 1024, gt=0)
    #: Seconds a file's size and mtime must stay the same before it is taken (a partner
    #: writing under the final name may pause between chunks); unset: the gateway's
    #: ``[sftp] settle``.
    settle: float | None = Field(default=None, gt=0, le=86400)

    @model_validator(mode="after")
    def _checks(self) -> SftpSettings:
        if not (self.password or self.password_file or self.key_file):
            raise ValueError("sftp needs password, password_file or key_file")
        if not (self.host_key or self.known_hosts):
            raise ValueError("sftp needs the server's host key pinned (host_key or "
                             "known_hosts)")
        return self

    def password_value(self) -> str | None:
        return secret_from(self.password, self.password_file)
