"""AS2 (RFC 4130): the receive endpoint, MDNs and the keys they need.

``compat.prepare()`` runs before pyas2lib (and its oscrypto) is imported: see ``compat``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.channels.as2 import explain
from gateway.channels.as2.settings import As2Section
from gateway.channels.kind import ChannelContext, ChannelKind, ChannelRun, ConfiguredChannel

if TYPE_CHECKING:
    from gateway.channels.outbound import Sender
    from gateway.config import GatewaySettings, PartnerDirectory
    from gateway.store.db import Store


def _start(ctx: ChannelContext) -> ChannelRun:
    from gateway.channels.as2.endpoint import start

    return start(ctx)


def _configured(settings: GatewaySettings, partners: PartnerDirectory
                ) -> list[ConfiguredChannel]:
    found = []
    if settings.as2 is not None:
        ours = ", ".join(i.as2_id for i in settings.as2.identities) or "no identity"
        listen = f"http://{settings.http.host}:{settings.http.port}"
        found.append(ConfiguredChannel("as2", "as2", None, f"POST {listen}/as2 as {ours}"))
    found += [ConfiguredChannel(f"as2:{p.id}", "as2", p.id, f"AS2-From {p.as2.as2_id}")
              for p in partners if p.as2 is not None]
    return found


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    if settings.as2 is None:
        return []
    return ["as2        POST /as2 as " + ", ".join(i.as2_id for i in settings.as2.identities)
            + "; partners " + (", ".join(f"{p.id} ({p.as2.as2_id})" for p in partners
                                         if p.as2 is not None) or "none")]


def _transport(store: Store, transmission_id: str) -> Mapping[str, Any] | None:
    from gateway.channels.as2.records import transport_record

    return transport_record(store, transmission_id)



def _sender(settings: GatewaySettings) -> Sender | None:
    from gateway.channels.as2.sender import As2Sender

    if settings.as2 is None or not settings.as2.identities:
        return None
    return As2Sender(settings.as2)  # our keys, loaded now


CHANNEL = ChannelKind(name="as2", section=As2Section, start=_start, configured=_configured,
                      summary=_summary, listens=True, transport=_transport,
                      problems=explain.problems, shown=explain.shown,
                      sender=_sender)
