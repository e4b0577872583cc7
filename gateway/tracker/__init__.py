"""The tracker: detection rules over the store (what failed, what never arrived, what the
ERP never took) and alerts with a lifecycle (open, acknowledged, resolved)."""

from gateway.tracker.alerts import (
    Alert,
    AlertBook,
    AlertError,
    AlertTransitionError,
    Condition,
    ReconcileResult,
    UnknownAlert,
)
from gateway.tracker.calendar import BusinessCalendar
from gateway.tracker.engine import Tracker
from gateway.tracker.rules import ALL_RULES, Rule, TrackerContext

__all__ = ["ALL_RULES", "Alert", "AlertBook", "AlertError", "AlertTransitionError",
           "BusinessCalendar", "Condition", "ReconcileResult", "Rule", "Tracker",
           "TrackerContext", "UnknownAlert"]
