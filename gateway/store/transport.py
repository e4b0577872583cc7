"""What a transport recorded about a transmission (an exchange's message and its
acknowledgement, a webhook delivery and its reply), by channel: ``edigw show`` prints it
beside the timeline. Each channel that records one says how to read it
(``ChannelKind.transport``)."""

from __future__ import annotations

from typing import Any

from gateway.store.db import Store


def transport_of(store: Store, transmission_id: str) -> dict[str, Any]:
    """``{channel name: {...}}`` for each channel that recorded how this transmission came
    (empty when none did). Datetimes are timezone-aware."""
    from gateway.channels.registry import CHANNELS  # the channels build on the store

    out: dict[str, Any] = {}
    for kind in CHANNELS:
        if kind.transport is not None:
            record = kind.transport(store, transmission_id)
            if record is not None:
                out[kind.name] = dict(record)
    return out
