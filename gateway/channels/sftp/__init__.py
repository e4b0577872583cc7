"""SFTP channel (paramiko): polling partners' servers for files, and putting files there.

``SftpChannel`` polls one partner's server (``channel``), ``SftpSender`` delivers outbound
files for ``OutboundDispatcher`` (``sender``), both over ``SftpConnection`` (``connection``)
pinned to the server's host key (``hostkey``). Errors: ``errors``. The servers are in the
partners' profiles; ``[sftp]`` of the gateway settings holds what they leave out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.kind import ChannelContext, ChannelKind, ChannelRun, ConfiguredChannel
from gateway.channels.sftp.settings import SftpSection

if TYPE_CHECKING:
    from gateway.channels.outbound import Sender
    from gateway.config import GatewaySettings, PartnerDirectory


def _start(ctx: ChannelContext) -> ChannelRun:
    from gateway.channels.sftp.channel import start

    return start(ctx)


def _configured(settings: GatewaySettings, partners: PartnerDirectory
                ) -> list[ConfiguredChannel]:
    return [ConfiguredChannel(f"sftp:{p.id}", "sftp", p.id,
                              f"{p.sftp.user}@{p.sftp.host}:{p.sftp.port}")
            for p in partners if p.sftp is not None]


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    return [f"sftp       {p.id}: {p.sftp.user}@{p.sftp.host}:{p.sftp.port} "
            + ", ".join(f"{i.folder} ({i.after})" for i in p.sftp.inbound)
            for p in partners if p.sftp is not None]


def _problems(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    """Each partner's outbound SFTP folder, and the files its ``[sftp]`` names."""
    found = []
    for p in partners:
        if p.outbound.channel == "sftp" and (p.sftp is None or not p.sftp.outbound_folder):
            found.append(f"{p.source}: outbound: channel sftp needs [sftp] outbound_folder")
        if p.sftp is not None:
            for label, path in (("key_file", p.sftp.key_file),
                                ("password_file", p.sftp.password_file),
                                ("known_hosts", p.sftp.known_hosts)):
                if path is not None and not path.exists():
                    found.append(f"{p.source}: sftp.{label}: {path} does not exist")
    return found



def _sender(settings: GatewaySettings) -> Sender | None:
    from gateway.channels.sftp.sender import SftpSender

    return SftpSender()


CHANNEL = ChannelKind(name="sftp", section=SftpSection, start=_start,
                      configured=_configured, summary=_summary, problems=_problems,
                      sender=_sender)
