"""The tracker: detection rules over the store (what failed, what never arrived, what the
ERP never took) and alerts with a lifecycle (open, acknowledged, resolved).

The names below are imported from their modules when first asked for: ``edigw find`` and
the search (``tracker.search``, ``tracker.explain``) load neither the alerts nor the rules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each name of the package and the module of ``gateway.tracker`` holding it.
_HOMES: dict[str, str] = {
    **dict.fromkeys(("Alert", "AlertBook", "AlertError", "AlertTransitionError", "Condition",
                     "ReconcileResult", "UnknownAlert"), "alerts"),
    "BusinessCalendar": "calendar", "Tracker": "engine",
    **dict.fromkeys(("ALL_RULES", "Rule", "TrackerContext"), "rules"),
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"gateway.tracker.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALL_RULES", "Alert", "AlertBook", "AlertError", "AlertTransitionError",
           "BusinessCalendar", "Condition", "ReconcileResult", "Rule", "Tracker",
           "TrackerContext", "UnknownAlert"]
