"""A partner's onboarding: the go-live checklist, and the release of what was held while it
was suspended (docs/onboarding.md). Its SQL is in ``gateway.store.onboarding``.

The checklist (``checklist``) holds, for a partner profile:

- per inbound document type the profile declares (``[[documents]]``): at least one document
  of that type received while the partner was in test and mapped without error;
- acknowledgements returned when the profile asks for them: the CONTRLs made for its test
  files delivered (and at least one when ``contrl = "always"``), the AS2 MDNs of its test
  messages sent;
- its AS2 certificates valid (readable, not expired, already valid).

Promotion to live is refused while an item is missing, unless an admin forces it with a
reason (``gateway.web.partners_admin.PartnerAdmin.set_state``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core import clock
from gateway.store.certificates import EXPIRING, OK, validity
from gateway.store.db import Store
from gateway.store.onboarding import held_transmissions, test_documents, test_mdns, test_replies

if TYPE_CHECKING:
    from gateway.config import Partner
    from gateway.core.records import Outcome
    from gateway.core.reprocess import Reprocessed


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the go-live checklist."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def checklist(store: Store, partner: Partner, *, now: dt.datetime | None = None) -> list[Item]:
    """What a promotion of ``partner`` to live needs, each item done or not."""
    items = _documents(store, partner)
    items += _acknowledgements(store, partner)
    items += _certificates(partner, now or clock.now())
    return items


def missing(items: Sequence[Item]) -> list[Item]:
    """The items not done."""
    return [i for i in items if not i.ok]


def _documents(store: Store, partner: Partner) -> list[Item]:
    declared = list(dict.fromkeys(d.type for d in partner.documents))
    if not declared:
        return [Item("documents declared", False,
                     "the profile declares no document type ([[documents]])")]
    counts = test_documents(store, partner.id)
    items = []
    for doc_type in declared:
        c = counts.get(doc_type)
        if c is None or not (c.mapped or c.failed):
            items.append(Item(f"{doc_type} received in test", False,
                              f"no {doc_type} received while the partner was in test"))
            continue
        detail = f"{c.mapped} mapped without error" + (f", {c.failed} failed" if c.failed
                                                        else "")
        items.append(Item(f"{doc_type} received in test", c.mapped > 0, detail))
    return items


def _acknowledgements(store: Store, partner: Partner) -> list[Item]:
    items = []
    edifact = any(d.format == "edifact" for d in partner.documents)
    if edifact and partner.edifact.contrl != "never":
        by_status = test_replies(store, partner.id, "contrl")
        went = by_status.get("SENT", 0) + by_status.get("DELIVERED", 0)
        failed, waiting = by_status.get("FAILED", 0), by_status.get("PENDING", 0)
        ok = not failed and not waiting and (went > 0 or partner.edifact.contrl != "always")
        if failed or waiting:
            detail = f"{failed} CONTRL failed, {waiting} not delivered yet, {went} delivered"
        elif went:
            detail = f"{went} CONTRL delivered"
        elif partner.edifact.contrl == "always":
            detail = "no CONTRL returned for a test file yet (contrl = \"always\")"
        else:
            detail = f"none asked for in test (contrl = \"{partner.edifact.contrl}\")"
        items.append(Item("CONTRL returned", ok, detail))
    if partner.as2 is not None:
        by_state = test_mdns(store, partner.id)
        bad = by_state.get("failed", 0) + by_state.get("pending", 0)
        sent = by_state.get("sent", 0)
        detail = (f"{bad} MDN not sent, {sent} sent" if bad
                  else f"{sent} MDN sent" if sent else "no AS2 message in test asked for one")
        items.append(Item("MDN returned", not bad, detail))
    return items


def _certificates(partner: Partner, now: dt.datetime) -> list[Item]:
    if partner.as2 is None:
        return []
    paths = list(partner.as2.certificates)
    if not paths:
        needed = partner.as2.require_signing or partner.as2.encrypt
        return [Item("certificates valid", not needed,
                     "no partner certificate in [as2] certificates" if needed
                     else "no certificate needed (nothing signed or encrypted)")]
    problems = []
    for path in paths:
        problem = _certificate_problem(path, now)
        if problem:
            problems.append(f"{path}: {problem}")
    return [Item("certificates valid", not problems,
                 "; ".join(problems) if problems else f"{len(paths)} valid")]


def _certificate_problem(path: Path, now: dt.datetime) -> str | None:
    """Why the certificate file is not valid now, or None."""
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        return "not a PEM or DER certificate"
    state, _, detail = validity(cert.not_valid_before_utc, cert.not_valid_after_utc, now, 0)
    return None if state in (OK, EXPIRING) else detail


# -- release ------------------------------------------------------------------------------

class _Processor(Protocol):
    def process(self, tid: str) -> Outcome: ...


class Releasing(Protocol):
    """What releasing needs of the gateway: its store and its pipeline."""

    @property
    def store(self) -> Store: ...

    @property
    def pipeline(self) -> _Processor: ...


def release_held(gateway: Releasing, partner_id: str, *, by: str,
                 reason: str) -> list[Reprocessed]:
    """Process again every file of ``partner_id`` held while it was suspended (each a new
    attempt linked to the held one, ``core.reprocess``); its partner must be live by now in
    the gateway's directory. Returns the attempts, oldest file first."""
    from gateway.core.reprocess import reprocess

    why = f"partner {partner_id} live again: {reason}"
    return [reprocess(gateway, tid, by=by, reason=why)
            for tid in held_transmissions(gateway.store, partner_id)]
