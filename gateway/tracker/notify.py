"""Mailing new alerts to the operators (``[smtp] operators``): one mail per round of the
tracker, listing every alert opened since the last mail, so that nobody is flooded. An alert
already resolved or acknowledged before it could be mailed is not mailed."""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from gateway.core.status import AlertState
from gateway.tracker.alerts import Alert, AlertBook

log = structlog.get_logger("edigw.tracker")


class AlertMailer(Protocol):
    """What sends the operators' mail (``gateway.channels.email.mailer.Mailer``)."""

    async def alert(self, subject: str, body: str) -> bool:
        """Send one mail; False when it could not go."""
        ...


def compose(alerts: list[Alert]) -> tuple[str, str]:
    """Subject and body of the mail announcing ``alerts`` (open ones)."""
    if len(alerts) == 1:
        a = alerts[0]
        subject = f"alert: {a.summary}"[:150]
    else:
        kinds = sorted({a.kind for a in alerts})
        subject = f"{len(alerts)} new alerts ({', '.join(kinds)})"
    lines = []
    for a in alerts:
        lines += [f"#{a.id} {a.kind} — partner {a.partner_id or '-'}",
                  f"  {a.summary}",
                  f"  opened {a.opened_at:%Y-%m-%d %H:%M} UTC; condition {a.key}", ""]
    lines += ["Acknowledge with:  edigw alerts ack ID --note TEXT",
              "List open alerts:  edigw alerts"]
    return subject, "\n".join(lines)


async def mail_new_alerts(book: AlertBook, mailer: AlertMailer) -> int:
    """Mail the alerts not yet mailed; returns how many were announced. Nothing is marked
    when the mail could not go (the next round tries again)."""
    pending = await asyncio.to_thread(book.unmailed, 200)
    if not pending:
        return 0
    still_open = [a for a in pending if a.status == AlertState.OPEN]
    if still_open:
        subject, body = compose(still_open)
        if not await mailer.alert(subject, body):
            log.warning("alert_mail_not_sent", alerts=[a.id for a in still_open])
            return 0
        log.info("alerts_mailed", alerts=[a.id for a in still_open])
    await asyncio.to_thread(book.mark_mailed, [a.id for a in pending])
    return len(still_open)
