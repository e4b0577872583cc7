"""The outbound repository: replies and acknowledgements to send, their sending and failing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.engine import StoreEngine, utcnow
from gateway.store.records import OutboundRow, aware


class OutboundRepository(StoreEngine):
    """Outbound payloads (replies, MDNs, acknowledgements) and their delivery."""

    def pending_outbound(self, limit: int = 100) -> list[OutboundRow]:
        o = s.outbound
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(o).where(o.c.status == s.OUT_PENDING)
                                .order_by(o.c.created_at, o.c.id).limit(limit)).all()
        return [_outbound_row(r) for r in rows]

    def outbound_of(self, tid: str) -> list[OutboundRow]:
        o = s.outbound
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(o).where(o.c.transmission_id == tid)
                                .order_by(o.c.created_at, o.c.id)).all()
        return [_outbound_row(r) for r in rows]

    def mark_outbound_sent(self, oid: str, detail: str) -> None:
        now = utcnow()
        with self._begin() as conn:
            row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid)
                               .values(status=s.OUT_SENT, sent_at=now, detail=detail,
                                       attempts=s.outbound.c.attempts + 1, last_error=None)
                               .returning(s.outbound.c.transmission_id, s.outbound.c.kind)).first()
            if row is not None and row.transmission_id:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now, event=f"{row.kind}-sent",
                    detail=detail))

    def mark_outbound_failed(self, oid: str, error: str, *, give_up: bool = False) -> None:
        now = utcnow()
        values: dict[str, Any] = dict(attempts=s.outbound.c.attempts + 1, last_error=error[:2000])
        if give_up:
            values["status"] = s.OUT_FAILED
        with self._begin() as conn:
            row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid).values(**values)
                               .returning(s.outbound.c.transmission_id, s.outbound.c.kind)).first()
            if give_up and row is not None and row.transmission_id:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now,
                    event=f"{row.kind}-failed", detail=error[:2000]))


def _outbound_row(r: Any) -> OutboundRow:
    data = dict(r._mapping)
    data["created_at"] = aware(data["created_at"])
    data["sent_at"] = aware(data["sent_at"])
    return OutboundRow(**data)
