"""What a transport recorded about a transmission: the AS2 message and its MDN, or the SMS
webhook delivery and the reply. ``edigw show`` prints it beside the timeline."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

_AS2 = ("message_id", "as2_from", "as2_to", "received_at", "signed", "encrypted", "compressed",
        "algorithms", "mic", "disposition", "detail", "mdn_mode", "mdn_signed", "mdn_url",
        "mdn_state", "mdn_attempts", "mdn_next_at", "mdn_last_error", "mdn_sent_at")
_SMS = ("provider", "provider_message_id", "sender", "received_at", "reply")


def transport_of(store: Store, transmission_id: str) -> dict[str, Any]:
    """``{"as2": {...}}`` and/or ``{"sms": {...}}`` for this transmission (empty when it
    came another way). Datetimes are timezone-aware."""
    out: dict[str, Any] = {}
    with store.engine.connect() as conn:
        a = conn.execute(sa.select(s.as2_messages).where(
            s.as2_messages.c.transmission_id == transmission_id)).first()
        w = conn.execute(sa.select(s.webhook_messages).where(
            s.webhook_messages.c.transmission_id == transmission_id)).first()
    if a is not None:
        out["as2"] = {k: _aware(getattr(a, k)) for k in _AS2}
    if w is not None:
        out["sms"] = {k: _aware(getattr(w, k)) for k in _SMS}
    return out


def _aware(value: Any) -> Any:
    return aware(value) if hasattr(value, "tzinfo") else value
