"""The ``portal`` channel: files a partner's own user (a client of the console) uploads in
the client portal, page ``/portal/upload`` or ``POST /api/portal/upload``.

It starts nothing of its own: the console's routes receive each upload through
``inbox.PortalInbox`` (receive first, the HTTP answer is the acknowledgement), with the
uploader's partner as the transmission's partner. See docs/portal.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.kind import ChannelKind

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, PartnerDirectory

#: The channel's name on its transmissions.
NAME = "portal"


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    h = settings.http
    if not (h.enabled and h.console):
        return []
    return [f"portal     uploads of client users at {h.host}:{h.port}/portal/upload "
            "and POST /api/portal/upload"]


CHANNEL = ChannelKind(name=NAME, summary=_summary)
