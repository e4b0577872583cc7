"""Folder channel: complete files taken from inbox folders (``watcher``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.folder.settings import FolderSection
from gateway.channels.kind import ChannelContext, ChannelKind, ChannelRun, ConfiguredChannel

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, PartnerDirectory


def _start(ctx: ChannelContext) -> ChannelRun:
    from gateway.channels.folder.watcher import start

    return start(ctx)


def _configured(settings: GatewaySettings, partners: PartnerDirectory
                ) -> list[ConfiguredChannel]:
    return [ConfiguredChannel(f"folder:{i.path}", "folder", i.partner, str(i.path))
            for i in settings.inbox]


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    return [f"inbox      {i.path} -> {i.processed_dir} | {i.failed_dir}"
            + (f" (partner {i.partner})" if i.partner else "") for i in settings.inbox]


CHANNEL = ChannelKind(name="folder", section=FolderSection, start=_start,
                      configured=_configured, summary=_summary)
