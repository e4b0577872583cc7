"""The SFTP channel's gateway-wide settings (``[sftp]``); each partner's server is in its
profile (``gateway.config.SftpSettings``)."""

from __future__ import annotations

from pydantic import Field

from gateway.channels.sections import StrictModel


class SftpDefaults(StrictModel):
    """What partners' ``[sftp]`` profiles leave out (``[sftp]`` of the gateway settings)."""

    #: Seconds a remote file must look unchanged before it is taken (SFTP mtimes are whole
    #: seconds; a partner writing under the final name may pause between chunks).
    settle: float = Field(default=5.0, gt=0, le=86400)


class SftpSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    sftp: SftpDefaults = Field(default_factory=SftpDefaults)
