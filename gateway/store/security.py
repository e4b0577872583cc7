"""Security events: refused requests an operator should see (forged webhook signatures, AS2
messages that do not verify, unknown senders). Nothing of a refused request is kept but
what identifies it; secrets and signatures are never written here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, utcnow
from gateway.store.records import aware


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    id: int
    at: dt.datetime
    channel: str
    kind: str
    remote: str | None
    partner_id: str | None
    detail: str | None


class SecurityLog:
    """Records security events in the store (and the log)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, channel: str, kind: str, *, remote: str | None = None,
               partner_id: str | None = None, detail: str | None = None) -> None:
        # structlog when an event is recorded: the tracker's questions (``edigw find``)
        # import this module for ``SecurityEvent`` alone
        from gateway.logs import logger

        logger("edigw.security").warning("security_event", channel=channel, kind=kind,
                                         remote=remote, partner_id=partner_id, detail=detail)
        with self.store._begin() as conn:
            conn.execute(sa.insert(s.security_events).values(
                at=utcnow(), channel=channel, kind=kind, remote=(remote or None) and remote[:128],
                partner_id=partner_id, detail=detail))

    def recent(self, limit: int = 100, *, channel: str | None = None) -> list[SecurityEvent]:
        q = sa.select(s.security_events).order_by(s.security_events.c.id.desc()).limit(limit)
        if channel is not None:
            q = q.where(s.security_events.c.channel == channel)
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [SecurityEvent(r.id, aware(r.at), r.channel, r.kind, r.remote, r.partner_id,
                              r.detail) for r in rows]
