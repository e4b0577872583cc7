"""Alerts and their lifecycle: one alert per condition, not one per check.

A condition is named by its ``key`` ("gap:acme:1043-1044"). ``AlertBook.reconcile`` takes
what the rules found at one check and, in one transaction:

- a condition whose key has an open or acknowledged alert refreshes it (``last_seen_at``,
  ``occurrences``, summary and evidence); nothing is announced again, and an acknowledged
  alert stays acknowledged;
- a new condition opens an alert and writes an ``alert.opened`` event;
- an open or acknowledged alert of a kind that was checked, whose condition is gone, is
  resolved by ``"tracker"`` with an ``alert.resolved`` event. Kinds whose rule failed at
  this check are not "checked": their alerts are left as they are.

An operator may acknowledge an open alert ("I am on it": it stays until the condition is
gone) or resolve it. A condition whose latest alert an operator resolved is not reopened
while it lasts, except for the kinds in ``LIVE_KINDS`` (a stuck outbox, a failing channel,
a certificate): those describe the present state, so they open again at the next check
while the state remains; acknowledge them instead.

Every change writes a row to ``event_outbox`` in its own commit, for the event publisher
(``edi.events``, routing key ``alert.<kind>.<partner or "gateway">``, a stable message id
``alert-<id>-<event>``); the mailer reads ``unmailed()`` and calls ``mark_mailed``.

    AlertError
    ├── UnknownAlert            no alert has this id
    └── AlertTransitionError    acknowledging or resolving an alert in the wrong status
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog

from gateway.core import clock
from gateway.core.errors import EdigwError
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

log = structlog.get_logger("edigw.tracker")

TRACKER = "tracker"  # resolved_by when the condition cleared by itself
ACTIVE = (s.ALERT_OPEN, s.ALERT_ACKNOWLEDGED)
#: Kinds whose condition is the current state of something; see the module docstring.
LIVE_KINDS = frozenset({"untransmitted", "unroutable", "channel", "certificate"})

OPENED = "alert.opened"
ACKNOWLEDGED = "alert.acknowledged"
RESOLVED = "alert.resolved"


class AlertError(EdigwError):
    """An operator action on an alert could not be done."""

    def __init__(self, message: str, *, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(message)


class UnknownAlert(AlertError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert {alert_id}", alert_id=alert_id)


class AlertTransitionError(AlertError):
    def __init__(self, alert_id: int, status: str, action: str) -> None:
        self.status = status
        self.action = action
        super().__init__(f"alert {alert_id} is {status}: it cannot be {action}",
                         alert_id=alert_id)


@dataclass(frozen=True, slots=True)
class Condition:
    """What a rule found: one thing an operator should know about, named by ``key``."""

    kind: str
    partner_id: str | None
    key: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
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
    def from_row(cls, row: Any) -> Alert:
        data = dict(row._mapping)
        for key in ("opened_at", "last_seen_at", "acknowledged_at", "resolved_at", "mailed_at"):
            data[key] = aware(data[key])
        data["detail"] = json.loads(data["detail"]) if data["detail"] else {}
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601, ``partner`` for ``partner_id``."""
        out: dict[str, Any] = {}
        for key in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, key)
            out["partner" if key == "partner_id" else key] = (
                value.isoformat() if isinstance(value, dt.datetime) else value)
        return out


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    opened: list[Alert] = field(default_factory=list)
    refreshed: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


def routing_key(kind: str, partner_id: str | None) -> str:
    """``alert.<kind>.<partner>``; ``gateway`` for alerts about no partner."""
    return f"alert.{kind}.{partner_id or 'gateway'}"


def event_payload(event: str, alert: Alert, at: dt.datetime) -> bytes:
    """The JSON body of an ``edi.events`` message."""
    body = {"event": event, "at": at.isoformat(), "alert": alert.as_dict()}
    body["alert"].pop("mailed_at", None)
    return json.dumps(body, ensure_ascii=False, sort_keys=True, default=str).encode()


class AlertBook:
    """The alerts table and the events that announce its changes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the tracker ----------------------------------------------------------------------

    def reconcile(self, conditions: Iterable[Condition], *, kinds_checked: Iterable[str],
                  now: dt.datetime | None = None) -> ReconcileResult:
        """Bring the alerts in line with one check's ``conditions`` (see the module)."""
        now = (now or clock.now()).astimezone(dt.UTC)
        checked = set(kinds_checked)
        found: dict[str, Condition] = {}
        for c in conditions:
            found.setdefault(c.key, c)  # one alert per condition, even if two rules name it
        a = s.alerts
        result = ReconcileResult()
        with self.store._begin() as conn:
            active = {r.key: r for r in conn.execute(sa.select(a).where(a.c.status.in_(ACTIVE)))}
            new_keys = [k for k in found if k not in active]
            latest = _latest(conn, new_keys)
            for key, cond in found.items():
                row = active.get(key)
                if row is not None:
                    conn.execute(a.update().where(a.c.id == row.id).values(
                        last_seen_at=now, occurrences=a.c.occurrences + 1,
                        summary=cond.summary, detail=_json(cond.detail)))
                    result.refreshed.append(_get(conn, row.id))
                    continue
                prev = latest.get(key)
                if (prev is not None and prev.resolved_by not in (None, TRACKER)
                        and cond.kind not in LIVE_KINDS):
                    continue  # an operator closed it; the same fact does not come back
                aid = conn.execute(a.insert().values(
                    kind=cond.kind, partner_id=cond.partner_id, key=key, status=s.ALERT_OPEN,
                    summary=cond.summary, detail=_json(cond.detail), opened_at=now,
                    last_seen_at=now, occurrences=1)).inserted_primary_key[0]
                alert = _get(conn, aid)
                _announce(conn, OPENED, alert, now)
                result.opened.append(alert)
            for key, row in active.items():
                if key in found or row.kind not in checked:
                    continue
                conn.execute(a.update().where(a.c.id == row.id).values(
                    status=s.ALERT_RESOLVED, resolved_at=now, resolved_by=TRACKER))
                alert = _get(conn, row.id)
                _announce(conn, RESOLVED, alert, now)
                result.resolved.append(alert)
        for alert in result.opened:
            log.warning("alert_opened", alert_id=alert.id, kind=alert.kind,
                        partner=alert.partner_id, key=alert.key, summary=alert.summary)
        for alert in result.resolved:
            log.info("alert_resolved", alert_id=alert.id, kind=alert.kind,
                     partner=alert.partner_id, key=alert.key, by=TRACKER)
        return result

    def active_keys(self, prefix: str | None = None) -> set[str]:
        """Keys of the open and acknowledged alerts (starting with ``prefix``)."""
        a = s.alerts
        q = sa.select(a.c.key).where(a.c.status.in_(ACTIVE))
        if prefix:
            q = q.where(a.c.key.startswith(prefix, autoescape=True))
        with self.store.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def operator_resolved_at(self, key: str) -> dt.datetime | None:
        """When an operator resolved the latest alert of ``key`` (None: not so)."""
        with self.store.engine.connect() as conn:
            prev = _latest(conn, [key]).get(key)
        if prev is None or prev.status != s.ALERT_RESOLVED or prev.resolved_by == TRACKER:
            return None
        return aware(prev.resolved_at)

    # -- operators ------------------------------------------------------------------------

    def acknowledge(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """An operator takes an open alert in hand; it is not announced again."""
        return self._act(alert_id, by, note, action="acknowledged", allowed=(s.ALERT_OPEN,),
                         values=dict(status=s.ALERT_ACKNOWLEDGED), stamp="acknowledged")

    def resolve(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """An operator closes an open or acknowledged alert."""
        return self._act(alert_id, by, note, action="resolved", allowed=ACTIVE,
                         values=dict(status=s.ALERT_RESOLVED), stamp="resolved")

    def _act(self, alert_id: int, by: str, note: str | None, *, action: str,
             allowed: Sequence[str], values: dict[str, Any], stamp: str) -> Alert:
        if not by:
            raise ValueError("who acts on the alert must be named")
        now = clock.now().astimezone(dt.UTC)
        a = s.alerts
        with self.store._begin() as conn:
            row = conn.execute(sa.select(a).where(a.c.id == alert_id)).first()
            if row is None:
                raise UnknownAlert(alert_id)
            if row.status not in allowed:
                raise AlertTransitionError(alert_id, row.status, action)
            values = {**values, f"{stamp}_at": now, f"{stamp}_by": by}
            if note:
                values["note"] = note
            conn.execute(a.update().where(a.c.id == alert_id).values(**values))
            alert = _get(conn, alert_id)
            _announce(conn, f"alert.{action}", alert, now)
        log.info(f"alert_{action}", alert_id=alert_id, kind=alert.kind, key=alert.key, by=by)
        return alert

    # -- reading --------------------------------------------------------------------------

    def get(self, alert_id: int) -> Alert:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(s.alerts).where(s.alerts.c.id == alert_id)).first()
        if row is None:
            raise UnknownAlert(alert_id)
        return Alert.from_row(row)

    def list(self, status: str | Sequence[str] | None = None, partner: str | None = None,
             kind: str | None = None, limit: int = 100) -> list[Alert]:
        """Alerts, newest first; ``status`` one status or several."""
        a = s.alerts
        q = sa.select(a).order_by(a.c.opened_at.desc(), a.c.id.desc()).limit(limit)
        if status:
            q = q.where(a.c.status.in_([status] if isinstance(status, str) else list(status)))
        if partner:
            q = q.where(a.c.partner_id == partner)
        if kind:
            q = q.where(a.c.kind == kind)
        with self.store.engine.connect() as conn:
            return [Alert.from_row(r) for r in conn.execute(q)]

    # -- the mailer -----------------------------------------------------------------------

    def unmailed(self, limit: int = 100) -> list[Alert]:
        """Alerts not yet mailed, oldest first."""
        a = s.alerts
        q = sa.select(a).where(a.c.mailed_at.is_(None)).order_by(a.c.id).limit(limit)
        with self.store.engine.connect() as conn:
            return [Alert.from_row(r) for r in conn.execute(q)]

    def mark_mailed(self, alert_ids: Sequence[int]) -> None:
        if not alert_ids:
            return
        now = clock.now().astimezone(dt.UTC)
        with self.store._begin() as conn:
            conn.execute(s.alerts.update().where(s.alerts.c.id.in_(list(alert_ids)))
                         .values(mailed_at=now))


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)


def _get(conn: sa.Connection, alert_id: int) -> Alert:
    return Alert.from_row(conn.execute(sa.select(s.alerts).where(s.alerts.c.id == alert_id)).one())


def _latest(conn: sa.Connection, keys: Sequence[str]) -> dict[str, Any]:
    """The latest alert (any status) of each key."""
    a = s.alerts
    out: dict[str, Any] = {}
    keys = list(keys)
    for i in range(0, len(keys), 500):
        for r in conn.execute(sa.select(a).where(a.c.key.in_(keys[i:i + 500])).order_by(a.c.id)):
            out[r.key] = r
    return out


def _announce(conn: sa.Connection, event: str, alert: Alert, now: dt.datetime) -> None:
    conn.execute(s.event_outbox.insert().values(
        routing_key=routing_key(alert.kind, alert.partner_id),
        message_id=f"alert-{alert.id}-{event.removeprefix('alert.')}",
        payload=event_payload(event, alert, now), created_at=now, attempts=0))
