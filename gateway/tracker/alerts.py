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
while it lasts, unless new evidence arrives after (``Condition.reopen_after``: another file
from the same unknown sender), except for the kinds in ``LIVE_KINDS`` (a stuck outbox, a failing channel,
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

import builtins
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.core import clock
from gateway.core.errors import EdigwError
from gateway.core.status import AlertState
from gateway.store.alerts import ACTIVE, Alert, AlertRepository, AlertTransaction
from gateway.store.db import Store

__all__ = ["ACTIVE", "Alert", "AlertBook", "AlertError", "BulkResult", "AlertTransitionError", "Condition",
           "ReconcileResult", "UnknownAlert", "event_payload", "routing_key"]

log = structlog.get_logger("edigw.tracker")

TRACKER = "tracker"  # resolved_by when the condition cleared by itself
#: Kinds whose condition is the current state of something; see the module docstring.
LIVE_KINDS = frozenset({"untransmitted", "unroutable", "channel", "certificate",
                        "delivery-unconfirmed", "outbound-failed", "order-response-missing"})

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
    #: When the newest evidence of a grouped condition arrived (a sender's latest file): a
    #: condition an operator resolved opens again when evidence newer than that comes.
    reopen_after: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    opened: list[Alert] = field(default_factory=list)
    refreshed: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)


@dataclass(slots=True)
class BulkResult:
    """What a bulk action did: each alert done (as it was before, and after), and those
    refused with why."""

    done: list[tuple[Alert, Alert]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def routing_key(kind: str, partner_id: str | None) -> str:
    """``alert.<kind>.<partner>``; ``gateway`` for alerts about no partner."""
    return f"alert.{kind}.{partner_id or 'gateway'}"


def event_payload(event: str, alert: Alert, at: dt.datetime) -> bytes:
    """The JSON body of an ``edi.events`` message."""
    fields = alert.as_dict()
    fields.pop("mailed_at", None)
    body = {"event": event, "at": at.isoformat(), "alert": fields}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, default=str).encode()


class AlertBook:
    """The alerts and the events that announce their changes (stored by an
    ``AlertRepository``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.repo = AlertRepository(store)

    # -- the tracker ----------------------------------------------------------------------

    def reconcile(self, conditions: Iterable[Condition], *, kinds_checked: Iterable[str],
                  now: dt.datetime | None = None) -> ReconcileResult:
        """Bring the alerts in line with one check's ``conditions`` (see the module)."""
        now = (now or clock.now()).astimezone(dt.UTC)
        checked = set(kinds_checked)
        found: dict[str, Condition] = {}
        for c in conditions:
            found.setdefault(c.key, c)  # one alert per condition, even if two rules name it
        result = ReconcileResult()
        with self.repo.transaction() as tx:
            active = tx.active()
            latest = tx.latest([k for k in found if k not in active])
            for key, cond in found.items():
                row = active.get(key)
                if row is not None:
                    result.refreshed.append(tx.refresh(row.id, summary=cond.summary,
                                                       detail=cond.detail, now=now))
                    continue
                prev = latest.get(key)
                if (prev is not None and prev.resolved_by not in (None, TRACKER)
                        and cond.kind not in LIVE_KINDS and not _newer(cond, prev)):
                    continue  # an operator closed it; the same fact does not come back
                alert = tx.open(kind=cond.kind, partner_id=cond.partner_id, key=key,
                                summary=cond.summary, detail=cond.detail, now=now)
                _announce(tx, OPENED, alert, now)
                result.opened.append(alert)
            for key, row in active.items():
                if key in found or row.kind not in checked:
                    continue
                alert = tx.resolve(row.id, by=TRACKER, note=None, now=now)
                _announce(tx, RESOLVED, alert, now)
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
        return self.repo.active_keys(prefix)

    def operator_resolved_at(self, key: str) -> dt.datetime | None:
        """When an operator resolved the latest alert of ``key`` (None: not so)."""
        prev = self.repo.latest(key)
        if prev is None or prev.status != AlertState.RESOLVED or prev.resolved_by == TRACKER:
            return None
        return prev.resolved_at

    # -- operators ------------------------------------------------------------------------

    def acknowledge(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """An operator takes an open alert in hand; it is not announced again."""
        return self._act(alert_id, by, note, action="acknowledged",
                         allowed=(AlertState.OPEN,))

    def resolve(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        """An operator closes an open or acknowledged alert."""
        return self._act(alert_id, by, note, action="resolved", allowed=ACTIVE)

    def _act(self, alert_id: int, by: str, note: str | None, *, action: str,
             allowed: Sequence[str]) -> Alert:
        if not by:
            raise ValueError("who acts on the alert must be named")
        now = clock.now().astimezone(dt.UTC)
        with self.repo.transaction() as tx:
            row = tx.get(alert_id)
            if row is None:
                raise UnknownAlert(alert_id)
            if row.status not in allowed:
                raise AlertTransitionError(alert_id, row.status, action)
            change = tx.acknowledge if action == "acknowledged" else tx.resolve
            alert = change(alert_id, by=by, note=note, now=now)
            _announce(tx, f"alert.{action}", alert, now)
        log.info(f"alert_{action}", alert_id=alert_id, kind=alert.kind, key=alert.key, by=by)
        return alert

    def act_on_many(self, alert_ids: Sequence[int], by: str, note: str | None, *,
                    action: str) -> BulkResult:
        """``acknowledge`` or ``resolve`` each of ``alert_ids``, each in its own commit: one
        in a status that does not allow it (or unknown) is reported, the others are done."""
        if action not in ("acknowledge", "resolve"):
            raise ValueError(f"no alert action {action!r}: acknowledge or resolve")
        result = BulkResult()
        for alert_id in dict.fromkeys(alert_ids):
            try:
                before = self.get(alert_id)
                after = (self.acknowledge if action == "acknowledge" else self.resolve)(
                    alert_id, by, note)
            except AlertError as exc:
                result.refused.append((alert_id, str(exc)))
            else:
                result.done.append((before, after))
        return result

    # -- reading --------------------------------------------------------------------------

    def get(self, alert_id: int) -> Alert:
        alert = self.repo.get(alert_id)
        if alert is None:
            raise UnknownAlert(alert_id)
        return alert

    def list(self, status: str | Sequence[str] | None = None, partner: str | None = None,
             kind: str | None = None, limit: int = 100, *, offset: int = 0,
             since: dt.datetime | None = None) -> builtins.list[Alert]:
        """Alerts, newest first; ``status`` one status or several."""
        return self.repo.find(_statuses(status), partner=partner, kind=kind, limit=limit,
                              offset=offset, since=since)

    def count(self, status: str | Sequence[str] | None = None, partner: str | None = None,
              kind: str | None = None, *, since: dt.datetime | None = None) -> int:
        """How many alerts ``list`` would give without a limit."""
        return self.repo.count(_statuses(status), partner=partner, kind=kind, since=since)

    # -- the mailer -----------------------------------------------------------------------

    def unmailed(self, limit: int = 100) -> builtins.list[Alert]:
        """Alerts not yet mailed, oldest first."""
        return self.repo.unmailed(limit)

    def mark_mailed(self, alert_ids: Sequence[int]) -> None:
        if not alert_ids:
            return
        self.repo.mark_mailed(alert_ids, clock.now().astimezone(dt.UTC))


def _statuses(status: str | Sequence[str] | None) -> list[str]:
    return [status] if isinstance(status, str) else list(status or ())


def _newer(cond: Condition, prev: Alert) -> bool:
    """Whether ``cond`` has evidence that arrived after an operator resolved ``prev``."""
    return (cond.reopen_after is not None and prev.resolved_at is not None
            and cond.reopen_after > prev.resolved_at)


def _announce(tx: AlertTransaction, event: str, alert: Alert, now: dt.datetime) -> None:
    tx.announce(routing_key=routing_key(alert.kind, alert.partner_id),
                message_id=f"alert-{alert.id}-{event.removeprefix('alert.')}",
                payload=event_payload(event, alert, now), now=now)
