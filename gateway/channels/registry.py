"""The channels of the gateway: adding one is its folder under ``gateway/channels`` plus
its line in ``CHANNELS`` here (and its settings section, if it has one, in
``ChannelSections``: a class is typed statically, so its bases are written out).

``ChannelSections`` gathers every channel's keys of ``gateway.toml``; ``GatewaySettings``
inherits it. ``CHANNEL_NAMES`` are what partner profiles may list, in this order.
"""

from __future__ import annotations

from gateway.channels import as2, email, folder, http, portal, sftp, sms
from gateway.channels.as2.settings import As2Section
from gateway.channels.email.settings import EmailSection
from gateway.channels.folder.settings import FolderSection
from gateway.channels.kind import ChannelKind
from gateway.channels.sections import StrictModel
from gateway.channels.sftp.settings import SftpSection
from gateway.channels.sms.settings import SmsSection

#: Every channel kind, in order.
CHANNELS: tuple[ChannelKind, ...] = (
    folder.CHANNEL,
    sftp.CHANNEL,
    email.CHANNEL,
    as2.CHANNEL,
    sms.CHANNEL,
    http.CHANNEL,
    portal.CHANNEL,
)

#: The names partner profiles may list in ``channels``.
CHANNEL_NAMES: tuple[str, ...] = tuple(kind.name for kind in CHANNELS)


class ChannelSections(FolderSection, SftpSection, EmailSection, As2Section, SmsSection,
                      StrictModel):
    """Every channel's keys of ``gateway.toml``."""


def channel(name: str) -> ChannelKind:
    """The kind called ``name``; KeyError for another."""
    for kind in CHANNELS:
        if kind.name == name:
            return kind
    raise KeyError(name)
