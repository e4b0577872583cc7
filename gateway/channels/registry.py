"""The channels of the gateway: adding one is its folder under ``gateway/channels`` plus
its line here.

``ChannelSections`` gathers every channel's keys of ``gateway.toml`` (``GatewaySettings``
inherits it); each base carries its channel's ``ChannelKind`` (``CHANNEL``), so this one
list is also the list of channels, in the order ``CHANNEL_NAMES`` gives them.
"""

from __future__ import annotations

from gateway.channels import as2, email, folder, http, sftp, sms
from gateway.channels.kind import ChannelKind
from gateway.channels.sections import StrictModel

#: Every channel kind, in order.
CHANNELS: tuple[ChannelKind, ...] = (
    folder.CHANNEL,
    sftp.CHANNEL,
    email.CHANNEL,
    as2.CHANNEL,
    sms.CHANNEL,
    http.CHANNEL,
)

#: The names partner profiles may list in ``channels``.
CHANNEL_NAMES: tuple[str, ...] = tuple(kind.name for kind in CHANNELS)


class ChannelSections(folder.FolderSection, sftp.SftpSection, email.EmailSection,
                      as2.As2Section, sms.SmsSection, StrictModel):
    """Every channel's keys of ``gateway.toml``."""


def channel(name: str) -> ChannelKind:
    """The kind called ``name``; KeyError for another."""
    for kind in CHANNELS:
        if kind.name == name:
            return kind
    raise KeyError(name)
