"""Validity of the AS2 certificates: our identities' and each partner's.

``check_certificates`` reads every configured certificate (our identities through
``keys.load_identity``, partners' through ``keys.load_partner_certificates``, one file at a
time so that one bad file does not hide the others), records each readable one in the
``certificates`` table (upsert by id; rows of certificates no longer configured are removed)
and returns a status per certificate. ``certificate_statuses`` reads back what was recorded,
for ``edigw channels`` and the tracker's alerts.

States: ``ok``; ``expiring`` (``not_after`` within ``certificate_warning_days``);
``expired``; ``not-yet-valid``; ``unreadable`` (missing file, wrong passphrase, not a
certificate: the reason is in ``detail``). A file that cannot be read never raises here: the
gateway keeps running and the operator sees why. Unreadable certificates are recorded too,
with their error and no dates, so that the tracker sees them. Reading back and judging is
``gateway.store.certificates`` (re-exported here).

Ids: ``as2:own:<as2 id>``, ``as2:<partner>:<n>`` (n-th of ``certificates``, from 1) and
``as2:<partner>:ca:<n>`` (n-th certificate found in ``ca_certificates``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.channels.as2 import keys
from gateway.channels.as2.settings import As2Settings
from gateway.store import schema as s
from gateway.store.certificates import (  # the read side, shared with the tracker
    AS2_PREFIX,
    DEFAULT_WARNING_DAYS,
    EXPIRED,
    EXPIRING,
    NOT_YET_VALID,
    OK,
    UNREADABLE,
    CertificateStatus,
    certificate_statuses,
    validity,
)
from gateway.store.db import Store, utcnow

if TYPE_CHECKING:
    from gateway.config import PartnerDirectory

log = structlog.get_logger("edigw.as2.certificates")

#: ``purpose`` values recorded.
OWN = "as2-own"  # our key's certificate: signs our MDNs, partners encrypt to it
PARTNER = "as2-partner"  # verifies the partner's signatures, encrypts what we send
PARTNER_ROTATION = "as2-partner-rotation"  # also accepted for verifying during a rotation
PARTNER_CA = "as2-partner-ca"



def check_certificates(as2: As2Settings | None, partners: PartnerDirectory, store: Store, *,
                       now: dt.datetime | None = None) -> list[CertificateStatus]:
    """Read, record and judge every configured AS2 certificate (see the module docstring)."""
    now = now or utcnow()
    warning_days = as2.certificate_warning_days if as2 is not None else DEFAULT_WARNING_DAYS
    found: list[tuple[str, str, str, x509.Certificate | None, str | None]] = []
    for identity in (as2.identities if as2 is not None else []):
        cid = f"{AS2_PREFIX}own:{identity.as2_id}"
        try:
            found.append((cid, "own", OWN, keys.load_identity(identity).certificate, None))
        except Exception as exc:  # any reason at all: reported, never fatal
            found.append((cid, "own", OWN, None, _reason(exc)))
    for partner in partners:
        if partner.as2 is None:
            continue
        for n, path in enumerate(partner.as2.certificates, start=1):
            cid = f"{AS2_PREFIX}{partner.id}:{n}"
            purpose = PARTNER if n == 1 else PARTNER_ROTATION
            one = partner.as2.model_copy(update={"certificates": [path], "ca_certificates": []})
            try:
                certs = keys.load_partner_certificates(one)
                if not certs:
                    raise ValueError(f"no certificate in {path}")
                found.append((cid, partner.id, purpose, certs[0], None))
            except Exception as exc:
                found.append((cid, partner.id, purpose, None, _reason(exc)))
        n = 0
        for path in partner.as2.ca_certificates:
            one = partner.as2.model_copy(update={"certificates": [], "ca_certificates": [path]})
            try:
                cas = keys.load_ca_certificates(one)
            except Exception as exc:
                n += 1
                found.append((f"{AS2_PREFIX}{partner.id}:ca:{n}", partner.id, PARTNER_CA, None,
                              _reason(exc)))
                continue
            for ca in cas:
                n += 1
                found.append((f"{AS2_PREFIX}{partner.id}:ca:{n}", partner.id, PARTNER_CA, ca,
                              None))

    statuses: list[CertificateStatus] = []
    rows: list[dict[str, Any]] = []
    for cid, owner, purpose, cert, problem in found:
        if cert is None:
            log.error("as2_certificate_unreadable", certificate=cid, owner=owner, reason=problem)
            statuses.append(CertificateStatus(cid, owner, purpose, None, None, None, UNREADABLE,
                                              problem))
            rows.append(dict(id=cid, owner=owner, purpose=purpose, subject=None, issuer=None,
                             serial=None, fingerprint=None, not_before=None, not_after=None,
                             checked_at=now, error=problem))
            continue
        row = _row(cid, owner, purpose, cert, now)
        rows.append(row)
        state, days_left, detail = validity(row["not_before"], row["not_after"], now,
                                            warning_days)
        if state != OK:
            log.warning("as2_certificate_" + state.replace("-", "_"), certificate=cid,
                        owner=owner, subject=row["subject"], not_after=row["not_after"].isoformat(),
                        days_left=days_left)
        statuses.append(CertificateStatus(cid, owner, purpose, row["subject"], row["not_after"],
                                          days_left, state, detail))
    _record(store, rows)
    return statuses


# -- reading and recording ---------------------------------------------------------------------

def _row(cid: str, owner: str, purpose: str, cert: x509.Certificate,
         now: dt.datetime) -> dict[str, Any]:
    return dict(
        id=cid, owner=owner, purpose=purpose,
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x")[:128],
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        checked_at=now, error=None)


def _record(store: Store, rows: Iterable[dict[str, Any]]) -> None:
    """Upsert ``rows``; remove the AS2 rows not among them (no longer configured, or no
    longer readable: the returned status says why)."""
    c = s.certificates
    rows = list(rows)
    keep = {row["id"] for row in rows}
    with store._begin() as conn:
        existing = {r.id for r in conn.execute(
            sa.select(c.c.id).where(c.c.id.startswith(AS2_PREFIX))).all()}
        for row in rows:
            if row["id"] in existing:
                conn.execute(c.update().where(c.c.id == row["id"])
                             .values(**{k: v for k, v in row.items() if k != "id"}))
            else:
                conn.execute(c.insert().values(**row))
        gone = existing - keep
        if gone:
            conn.execute(c.delete().where(c.c.id.in_(sorted(gone))))


def _reason(exc: BaseException) -> str:
    """A reason for an operator; never holds a passphrase (exceptions here name files)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, keys.As2KeyError):  # names the file and what is wrong with it
        return text[:500]
    return f"{type(exc).__name__}: {text}"[:500]


__all__ = ["EXPIRED", "EXPIRING", "NOT_YET_VALID", "OK", "UNREADABLE", "CertificateStatus",
           "certificate_statuses", "check_certificates", "validity"]
