"""The alerts table and the events announcing its changes: the repository behind the
tracker's ``AlertBook``.

The tracker decides which alert opens, refreshes or resolves (``gateway.tracker.alerts``);
this module only reads and writes the rows. ``AlertRepository.transaction`` gives one
``AlertTransaction``: every change made through it, and every ``edi.events`` row it
``announce``s, is committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from gateway.core.status import AlertState, TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: Statuses of an alert whose condition still holds.
ACTIVE: tuple[str, ...] = (AlertState.OPEN, AlertState.ACKNOWLEDGED)
#: Keys looked up per query (a bound on the size of an ``IN`` list).
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Alert:
    """One row of the alerts table (``detail`` decoded from its JSON)."""

    id: int
    kind: str
    partner_id: str | None
    key: str
    status: str
    summary: str
    detail: dict[str, Any]
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    occurrences: int
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    resolved_at: dt.datetime | None
    resolved_by: str | None
    note: str | None
    mailed_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Alert:
        data = dict(row._mapping)
        for key in ("opened_at", "last_seen_at", "acknowledged_at", "resolved_at", "mailed_at"):
            data[key] = aware(data[key])
        data["detail"] = json.loads(data["detail"]) if data["detail"] else {}
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601, ``partner`` for ``partner_id``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out["partner" if f.name == "partner_id" else f.name] = (
                value.isoformat() if isinstance(value, dt.datetime) else value)
        return out


def encode_detail(detail: dict[str, Any]) -> str:
    """How an alert's evidence is stored: JSON, keys sorted (a stable text per content)."""
    return json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)


class AlertTransaction:
    """The alerts as seen, and changed, inside one transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def active(self) -> dict[str, Alert]:
        """The open and acknowledged alerts, by key."""
        a = s.alerts
        return {r.key: Alert.from_row(r)
                for r in self._conn.execute(sa.select(a).where(a.c.status.in_(ACTIVE)))}

    def latest(self, keys: Sequence[str]) -> dict[str, Alert]:
        """The latest alert (any status) of each key."""
        return _latest(self._conn, keys)

    def get(self, alert_id: int) -> Alert | None:
        row = self._conn.execute(sa.select(s.alerts).where(s.alerts.c.id == alert_id)).first()
        return Alert.from_row(row) if row is not None else None

    def open(self, *, kind: str, partner_id: str | None, key: str, summary: str,
             detail: dict[str, Any], now: dt.datetime) -> Alert:
        """A new open alert, seen once at ``now``."""
        aid: int = self._conn.execute(s.alerts.insert().values(
            kind=kind, partner_id=partner_id, key=key, status=AlertState.OPEN,
            summary=summary, detail=encode_detail(detail), opened_at=now,
            last_seen_at=now, occurrences=1).returning(s.alerts.c.id)).scalar_one()
        return self._one(aid)

    def refresh(self, alert_id: int, *, summary: str, detail: dict[str, Any],
                now: dt.datetime) -> Alert:
        """The alert's condition was seen again at ``now``."""
        a = s.alerts
        self._conn.execute(a.update().where(a.c.id == alert_id).values(
            last_seen_at=now, occurrences=a.c.occurrences + 1, summary=summary,
            detail=encode_detail(detail)))
        return self._one(alert_id)

    def acknowledge(self, alert_id: int, *, by: str, note: str | None,
                    now: dt.datetime) -> Alert:
        return self._set(alert_id, status=AlertState.ACKNOWLEDGED, acknowledged_at=now,
                         acknowledged_by=by, note=note)

    def resolve(self, alert_id: int, *, by: str, note: str | None,
                now: dt.datetime) -> Alert:
        return self._set(alert_id, status=AlertState.RESOLVED, resolved_at=now,
                         resolved_by=by, note=note)

    def announce(self, *, routing_key: str, message_id: str, payload: bytes,
                 now: dt.datetime) -> None:
        """An ``edi.events`` message for the event publisher, committed with the change."""
        self._conn.execute(s.event_outbox.insert().values(
            routing_key=routing_key, message_id=message_id, payload=payload, created_at=now,
            attempts=0))

    def _set(self, alert_id: int, *, note: str | None, **values: Any) -> Alert:
        if note:  # an empty note keeps the one written before
            values["note"] = note
        self._conn.execute(s.alerts.update().where(s.alerts.c.id == alert_id).values(**values))
        return self._one(alert_id)

    def _one(self, alert_id: int) -> Alert:
        return Alert.from_row(self._conn.execute(
            sa.select(s.alerts).where(s.alerts.c.id == alert_id)).one())


class AlertRepository:
    """Reads and writes the alerts table of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def transaction(self) -> Iterator[AlertTransaction]:
        """One commit for every change made through the transaction given."""
        with self.store._begin() as conn:
            yield AlertTransaction(conn)

    def get(self, alert_id: int) -> Alert | None:
        with self.store.engine.connect() as conn:
            return AlertTransaction(conn).get(alert_id)

    def latest(self, key: str) -> Alert | None:
        """The latest alert (any status) of ``key``."""
        with self.store.engine.connect() as conn:
            return _latest(conn, [key]).get(key)

    def active_keys(self, prefix: str | None = None) -> set[str]:
        """Keys of the open and acknowledged alerts (starting with ``prefix``)."""
        a = s.alerts
        q = sa.select(a.c.key).where(a.c.status.in_(ACTIVE))
        if prefix:
            q = q.where(a.c.key.startswith(prefix, autoescape=True))
        with self.store.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def find(self, statuses: Sequence[str] = (), partner: str | None = None,
             kind: str | None = None, limit: int = 100, *, offset: int = 0,
             since: dt.datetime | None = None) -> list[Alert]:
        """Alerts in any of ``statuses`` (all when empty), newest first; ``since``: seen
        (last_seen_at) at or after it."""
        a = s.alerts
        q = (sa.select(a).where(*_filters(statuses, partner, kind, since))
             .order_by(a.c.opened_at.desc(), a.c.id.desc()).limit(limit))
        if offset:
            q = q.offset(offset)
        with self.store.engine.connect() as conn:
            return [Alert.from_row(r) for r in conn.execute(q)]

    def count(self, statuses: Sequence[str] = (), partner: str | None = None,
              kind: str | None = None, *, since: dt.datetime | None = None) -> int:
        """How many alerts ``find`` would list without a limit."""
        a = s.alerts
        q = sa.select(sa.func.count()).select_from(a).where(
            *_filters(statuses, partner, kind, since))
        with self.store.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def about_partner(self, partner: str, kinds: Sequence[str], start: dt.datetime,
                      end: dt.datetime) -> list[Alert]:
        """The partner's alerts of ``kinds`` still active or opened in [start, end),
        oldest first."""
        a = s.alerts
        q = (sa.select(a).where(a.c.partner_id == partner).where(a.c.kind.in_(list(kinds)))
             .where(sa.or_(a.c.status.in_(ACTIVE),
                           sa.and_(a.c.opened_at >= start, a.c.opened_at < end)))
             .order_by(a.c.opened_at, a.c.id))
        with self.store.engine.connect() as conn:
            return [Alert.from_row(r) for r in conn.execute(q)]

    def unmailed(self, limit: int = 100) -> list[Alert]:
        """Alerts not yet mailed, oldest first."""
        a = s.alerts
        q = sa.select(a).where(a.c.mailed_at.is_(None)).order_by(a.c.id).limit(limit)
        with self.store.engine.connect() as conn:
            return [Alert.from_row(r) for r in conn.execute(q)]

    def mark_mailed(self, alert_ids: Sequence[int], now: dt.datetime) -> None:
        with self.store._begin() as conn:
            conn.execute(s.alerts.update().where(s.alerts.c.id.in_(list(alert_ids)))
                         .values(mailed_at=now))


def _filters(statuses: Sequence[str], partner: str | None, kind: str | None,
             since: dt.datetime | None) -> list[sa.ColumnElement[bool]]:
    a = s.alerts
    conds: list[sa.ColumnElement[bool]] = []
    if statuses:
        conds.append(a.c.status.in_(list(statuses)))
    if partner:
        conds.append(a.c.partner_id == partner)
    if kind:
        conds.append(a.c.kind == kind)
    if since is not None:
        conds.append(a.c.last_seen_at >= since)
    return conds


def quarantined_unattributed(store: Store) -> list[str]:
    """Ids of the received transmissions still QUARANTINED with no partner (unknown
    senders), whatever their age: a grouped quarantine alert lasts while one of its files
    is still held (through ix_transmissions_status)."""
    t = s.transmissions
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.id).where(
            t.c.status == TransmissionStatus.QUARANTINED, t.c.partner_id.is_(None),
            t.c.direction == "in")).scalars())


def _latest(conn: sa.Connection, keys: Sequence[str]) -> dict[str, Alert]:
    a = s.alerts
    out: dict[str, Alert] = {}
    keys = list(keys)
    for i in range(0, len(keys), _CHUNK):
        for r in conn.execute(sa.select(a).where(a.c.key.in_(keys[i:i + _CHUNK]))
                              .order_by(a.c.id)):
            out[r.key] = Alert.from_row(r)
    return out
