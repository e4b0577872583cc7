"""The ``http`` channel of partner profiles: documents posted to the gateway's HTTP server.
Its settings are the server's (``[http]``, ``gateway.config.HttpSettings``); it starts
nothing of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.kind import ChannelKind

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, PartnerDirectory


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    h = settings.http
    if not h.enabled:
        return []
    return [f"http       {h.host}:{h.port}"
            + (f" (public {h.public_url})" if h.public_url else "")]


CHANNEL = ChannelKind(name="http", summary=_summary)
