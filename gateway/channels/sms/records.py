"""The SMS webhook messages seen (``webhook_messages``): a provider message id is answered
once; a repeat gets the same reply and makes no second transmission."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    provider: str
    provider_message_id: str
    sender: str
    partner_id: str | None
    transmission_id: str | None
    received_at: dt.datetime
    reply: str | None


class WebhookMessages:
    """Find and add webhook messages in the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, provider: str, provider_message_id: str) -> WebhookMessage | None:
        w = s.webhook_messages
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(w).where(
                w.c.provider == provider,
                w.c.provider_message_id == provider_message_id)).first()
        if row is None:
            return None
        return WebhookMessage(row.provider, row.provider_message_id, row.sender,
                              row.partner_id, row.transmission_id, aware(row.received_at),
                              row.reply)

    def add(self, message: WebhookMessage) -> bool:
        """Record ``message``; False when its provider message id was already recorded."""
        try:
            with self.store._begin() as conn:
                conn.execute(sa.insert(s.webhook_messages).values(
                    provider=message.provider,
                    provider_message_id=message.provider_message_id,
                    sender=message.sender[:64], partner_id=message.partner_id,
                    transmission_id=message.transmission_id,
                    received_at=message.received_at, reply=message.reply))
        except sa.exc.IntegrityError:
            return False
        return True


#: What ``edigw show`` prints of the row.
_SHOWN = ("provider", "provider_message_id", "sender", "received_at", "reply")


def transport_record(store: Store, transmission_id: str) -> dict[str, Any] | None:
    """The webhook delivery and its reply that brought this transmission, if it came this way;
    datetimes timezone-aware."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(s.webhook_messages).where(
            s.webhook_messages.c.transmission_id == transmission_id)).first()
    if row is None:
        return None
    return {k: _aware_value(getattr(row, k)) for k in _SHOWN}


def _aware_value(value: Any) -> Any:
    return aware(value) if isinstance(value, dt.datetime) else value
