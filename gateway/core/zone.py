"""The one time zone every time is shown in: CLI, console and API (``[tracker] timezone``,
default Europe/Paris, the zone of business days and cadence times too).

Times are stored and compared in UTC; only what a person reads is converted::

    zone = zone_of(settings)          # ZoneInfo (UTC when settings are absent or broken)
    shown(row.received_at, zone)      # '2026-12-07 21:14:03 CET'
    shown(None, zone)                 # ''
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

UTC_ZONE = ZoneInfo("UTC")


def zone_of(settings: Any) -> ZoneInfo:
    """The zone of ``settings`` (a ``GatewaySettings``; UTC for a bare test app)."""
    try:
        return ZoneInfo(settings.tracker.timezone)
    except Exception:  # no settings, or a test double without a tracker section
        return UTC_ZONE


def local(at: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """``at`` in ``zone`` (a naive datetime is taken as UTC, as the store keeps them)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(zone)


def shown(at: dt.datetime | None, zone: ZoneInfo, *, seconds: bool = True,
          abbreviation: bool = True) -> str:
    """``at`` as a person reads it in ``zone``: ``2026-12-07 21:14:03 CET`` ('' for None)."""
    if at is None:
        return ""
    when = local(at, zone)
    text = when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {when.tzname()}" if abbreviation else text


__all__ = ["UTC_ZONE", "local", "shown", "zone_of"]
