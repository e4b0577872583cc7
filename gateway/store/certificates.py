"""The certificates the gateway holds (``certificates`` table), judged at a given time: what
``edigw channels`` shows and the tracker alerts on. The AS2 channel reads and records them
(``gateway.channels.as2.certificates.check_certificates``); this module only reads them
back, so that the tracker needs no channel.

States: ``ok``; ``expiring`` (``not_after`` within the warning days); ``expired``;
``not-yet-valid``; ``unreadable`` (recorded with its error: missing file, wrong passphrase,
not a certificate).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, utcnow
from gateway.store.records import aware

OK = "ok"
EXPIRING = "expiring"
EXPIRED = "expired"
NOT_YET_VALID = "not-yet-valid"
UNREADABLE = "unreadable"

#: Ids of the AS2 certificates (``as2:own:<id>``, ``as2:<partner>:<n>``).
AS2_PREFIX = "as2:"
DEFAULT_WARNING_DAYS = 30


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    id: str
    owner: str  # partner id, or "own"
    purpose: str
    subject: str | None
    not_after: dt.datetime | None
    days_left: int | None  # whole days until not_after, toward zero (negative: expired)
    state: str
    detail: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == OK

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def validity(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime,
             warning_days: int) -> tuple[str, int, str | None]:
    """(state, days left, detail) of a certificate valid from ``not_before`` to
    ``not_after`` at ``now``."""
    left = not_after - now
    days_left = int(left.total_seconds() / 86400)  # whole days, toward zero
    if now < not_before:
        return NOT_YET_VALID, days_left, f"valid only from {not_before:%Y-%m-%d %H:%M} UTC"
    if left <= dt.timedelta(0):
        return EXPIRED, days_left, f"expired on {not_after:%Y-%m-%d %H:%M} UTC"
    if left <= dt.timedelta(days=warning_days):
        return EXPIRING, days_left, f"expires on {not_after:%Y-%m-%d %H:%M} UTC"
    return OK, days_left, None


def certificate_statuses(store: Store, warning_days: int = DEFAULT_WARNING_DAYS,
                         now: dt.datetime | None = None) -> list[CertificateStatus]:
    """The recorded AS2 certificates, judged at ``now`` (default: now), ordered by id."""
    now = now or utcnow()
    c = s.certificates
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c).where(c.c.id.startswith(AS2_PREFIX))
                            .order_by(c.c.id)).all()
    out = []
    for r in rows:
        not_before, not_after = aware(r.not_before), aware(r.not_after)
        if r.error is not None or not_before is None or not_after is None:
            out.append(CertificateStatus(r.id, r.owner, r.purpose, None, None, None, UNREADABLE,
                                         r.error or "not read"))
            continue
        state, days_left, detail = validity(not_before, not_after, now, warning_days)
        out.append(CertificateStatus(r.id, r.owner, r.purpose, r.subject, not_after, days_left,
                                     state, detail))
    return out
