"""The event outbox: what goes to ``edi.events`` (alerts opened, acknowledged, resolved),
written in the commit of the change it announces and marked once the broker confirmed it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, utcnow


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    routing_key: str
    message_id: str
    payload: bytes
    created_at: dt.datetime
    attempts: int


class EventOutbox:
    """Pending events, oldest first; published ones marked."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def pending(self, limit: int = 200) -> list[PendingEvent]:
        e = s.event_outbox
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(e).where(e.c.published_at.is_(None))
                                .order_by(e.c.id).limit(limit)).all()
        return [PendingEvent(r.id, r.routing_key, r.message_id, r.payload, r.created_at,
                             r.attempts) for r in rows]

    def published(self, ids: list[int]) -> None:
        if not ids:
            return
        e = s.event_outbox
        with self.store._begin() as conn:
            conn.execute(e.update().where(e.c.id.in_(ids))
                         .values(published_at=utcnow(), attempts=e.c.attempts + 1,
                                 last_error=None))

    def failed(self, ids: list[int], error: str) -> None:
        if not ids:
            return
        e = s.event_outbox
        with self.store._begin() as conn:
            conn.execute(e.update().where(e.c.id.in_(ids))
                         .values(attempts=e.c.attempts + 1, last_error=error[:1000]))

    def size(self) -> int:
        e = s.event_outbox
        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(e)
                                .where(e.c.published_at.is_(None))).scalar_one()
