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


# -- a partner's certificates as its profile names them ----------------------------------------

#: What a partner's certificate is used for, by its place in the profile.
USAGES = {"current": "verifies its signatures, encrypts what we send",
          "rotation": "still accepted for verifying while a rotation is under way",
          "ca": "CA of its certificate (chain check)"}


@dataclass(frozen=True, slots=True)
class PartnerCertificate:
    """One certificate a partner's profile names (``[as2] certificates`` or
    ``ca_certificates``), read from its file and judged at a given time."""

    file: str
    place: str  # current, rotation, ca (the keys of USAGES)
    subject: str | None
    issuer: str | None
    serial: str | None
    fingerprint: str | None  # sha256 hex of the DER encoding: what removal names
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    days_left: int | None
    state: str
    detail: str | None = None

    @property
    def usage(self) -> str:
        return USAGES[self.place]

    @property
    def badge(self) -> str:
        """"expires in N days", "expired", "not yet valid", "unreadable" or "valid"."""
        if self.state == EXPIRED:
            return "expired"
        if self.state == NOT_YET_VALID:
            return "not yet valid"
        if self.state == UNREADABLE:
            return "unreadable"
        days = self.days_left or 0
        return f"expires in {days} day{'s' if days != 1 else ''}"

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        for k in ("not_before", "not_after"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        return out | {"usage": self.usage, "badge": self.badge}


def judged(cert: Any, file: str, place: str, now: dt.datetime,
           warning_days: int = DEFAULT_WARNING_DAYS) -> PartnerCertificate:
    """A ``cryptography`` X.509 certificate read from ``file``, judged at ``now``."""
    from cryptography.hazmat.primitives import hashes

    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    state, days_left, detail = validity(not_before, not_after, now, warning_days)
    return PartnerCertificate(
        file=file, place=place, subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(), serial=format(cert.serial_number, "x"),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(), not_before=not_before,
        not_after=not_after, days_left=days_left, state=state, detail=detail)


def unreadable(file: str, place: str, reason: str) -> PartnerCertificate:
    """A file the profile names that holds no readable certificate."""
    return PartnerCertificate(file=file, place=place, subject=None, issuer=None, serial=None,
                              fingerprint=None, not_before=None, not_after=None,
                              days_left=None, state=UNREADABLE, detail=reason)
