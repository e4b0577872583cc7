"""The tracker: runs every detection rule and reconciles the alerts with what they found.

The application calls ``Tracker.check()`` every ``[tracker] every`` seconds. A rule that
raises is logged and skipped: its kinds are left out of ``kinds_checked``, so that its open
alerts are not resolved for want of a look.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import structlog

from gateway.config import PartnerDirectory, TrackerSettings
from gateway.core import clock
from gateway.store.db import Store
from gateway.tracker.alerts import AlertBook, Condition, ReconcileResult
from gateway.tracker.calendar import BusinessCalendar
from gateway.tracker.rules import ALL_RULES, Rule, TrackerContext

log = structlog.get_logger("edigw.tracker")


class Tracker:
    """Detection rules over the store, and the alerts they keep."""

    def __init__(self, settings: TrackerSettings, partners: PartnerDirectory, store: Store, *,
                 rules: Sequence[Rule] | None = None, certificate_warning_days: int = 30,
                 stalled_after: float = 120.0) -> None:
        self.settings = settings
        self.partners = partners
        self.store = store
        self.rules: list[Rule] = list(ALL_RULES if rules is None else rules)
        self.alerts = AlertBook(store)
        self.calendar = BusinessCalendar(settings.timezone, settings.holidays)
        self.certificate_warning_days = certificate_warning_days
        self.stalled_after = stalled_after  # [processing] stalled_after, s

    def context(self, now: dt.datetime | None = None) -> TrackerContext:
        """What the rules see at ``now`` (default: the gateway's clock)."""
        return TrackerContext(store=self.store, settings=self.settings, partners=self.partners,
                              now=now or clock.now(), calendar=self.calendar,
                              alerts=self.alerts,
                              certificate_warning_days=self.certificate_warning_days,
                              stalled_after=self.stalled_after)

    def check(self, now: dt.datetime | None = None) -> ReconcileResult:
        """Run every rule once and bring the alerts in line (one transaction)."""
        ctx = self.context(now)
        found: list[Condition] = []
        checked: set[str] = set()
        for rule in self.rules:
            try:
                conditions = rule(ctx)
            except Exception as exc:  # one broken rule must not stop the others
                log.exception("tracker_rule_failed", rule=rule.name,
                              error=f"{type(exc).__name__}: {exc}")
                continue
            stray = {c.kind for c in conditions} - set(rule.kinds)
            if stray:
                log.error("tracker_rule_stray_kinds", rule=rule.name, kinds=sorted(stray))
                conditions = [c for c in conditions if c.kind in rule.kinds]
            found += conditions
            checked.update(rule.kinds)
        result = self.alerts.reconcile(found, kinds_checked=checked, now=ctx.now)
        # A line when something changed; a quiet round (every minute) only at debug level.
        (log.info if result.opened or result.resolved else log.debug)(
            "tracker_checked", conditions=len(found), opened=len(result.opened),
            refreshed=len(result.refreshed), resolved=len(result.resolved))
        return result
