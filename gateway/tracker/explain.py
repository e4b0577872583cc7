"""Explain an order: "where is order X?" answered with one verdict and its evidence.

``search`` finds the documents and transmissions a support person's question may be about
(order or invoice number, interchange reference, file name, partner, dates). ``explain``
turns them into one verdict about the latest match:

    never-received   nothing matches: the partner's last contact on each channel, reference
                     gaps, channel errors, silence alerts, unreadable payloads around then
    failed           received but failed: stage, reason, file, position, reprocess attempts
    duplicate        a repeat of which transmission or document
    in-progress      received, not yet confirmed by the broker (outbox since when)
    waiting-erp      published, no ERP acknowledgement yet (overdue or not by the SLA)
    acknowledged     accepted by the ERP (when)
    rejected         rejected by the ERP (when, why)
    quarantined      received from a sender no partner profile matches

It only reads the store (and, for a number found nowhere, the raw bytes of payloads that
failed before their numbers could be read), so the HTTP API can call it as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import GatewaySettings, PartnerDirectory, TrackerRules, TrackerSettings
from gateway.core import clock, lifecycle
from gateway.core.errors import StoreError
from gateway.core.scope import EVERYTHING, Scope
from gateway.core.status import OUTBOUND_TYPES, DocumentStatus, ErpStatus, TransmissionStatus
from gateway.core.zone import UTC_ZONE, shown
from gateway.store import tracking
from gateway.store.alerts import AlertRepository
from gateway.store.archive import Archive
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.engine import one_connection
from gateway.store.lookup import partner_on_record
from gateway.store.records import DocumentRow, TransmissionRow, aware
from gateway.tracker.verdicts import (  # re-exported: explain.HELD, …
    ACKNOWLEDGED,
    DELIVERED,
    DUPLICATE,
    EXIT_CODES,
    FAILED,
    FINE,
    HELD,
    IN_PROGRESS,
    NEVER_RECEIVED,
    NOT_SENT,
    QUARANTINED,
    RECEIPT,
    REJECTED,
    RETRYING,
    SENT_AWAITING_RECEIPT,
    VERDICTS,
    WAITING_ERP,
    NoSuchPartner,
    outcome,
    words,
)

__all__ = ["ACKNOWLEDGED", "DELIVERED", "DUPLICATE", "FAILED", "HELD", "IN_PROGRESS",
           "NEVER_RECEIVED", "NOT_SENT", "QUARANTINED", "RECEIPT", "REJECTED", "RETRYING",
           "SENT_AWAITING_RECEIPT", "VERDICTS", "WAITING_ERP", "Explanation", "Fact", "Hit",
           "NoSuchPartner", "check_partner", "explain", "hits_of", "search"]

#: Document types only edigw sends (never received from partners).
OUTBOUND_ONLY = ("order-response", "despatch-advice")

#: A partner's delivery time limit when its profile is unknown (``outbound.delivery_minutes``).
DELIVERY_MINUTES = 240
#: Without dates, "never received" looks this far back for what might be it.
LOOKBACK = dt.timedelta(days=7)
#: Payloads larger than this are not searched for a number (the search must stay quick).
SCAN_MAX_BYTES = 20 * 1024 * 1024
#: At most this many unreadable payloads are told as evidence (then "and N more") and
#: searched for a number.
SCAN_MAX_PAYLOADS = 10
#: Sender-less unreadable files (the latest, per status) looked at to find those that could
#: be the partner's.
UNIDENTIFIED_LOOKED_AT = 200
#: Alert kinds that tell why a partner's document may not have arrived.
_CONTACT_ALERTS = ("gap", "silence", "volume-drop", "channel", "certificate")
# "… at line 21, column 1, segment 21 (QTY), element QTY/C186/6060, message 107"
_POSITION = re.compile(r"\bat ((?:line|column|segment) [^;]*?)(?=;|$)")


@dataclass(frozen=True, slots=True)
class Hit:
    """One document or transmission matching a search."""

    kind: str  # "document" or "transmission"
    id: str
    transmission_id: str
    partner_id: str | None
    at: dt.datetime  # when received (a document: when its transmission was processed)
    status: str
    doc_type: str | None = None
    business_number: str | None = None
    interchange_ref: str | None = None
    filename: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["at"] = self.at.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Fact:
    """One piece of evidence: when, what kind, a sentence, and the id it is about."""

    at: dt.datetime | None
    kind: str
    text: str
    ref: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(at=self.at.isoformat() if self.at else None, kind=self.kind,
                    text=self.text, ref=self.ref)


@dataclass(slots=True)
class Explanation:
    """The verdict about the latest match, a sentence for the phone, and the evidence.

    ``verdict`` is the machine code (``gateway.tracker.verdicts``), ``words`` the same in
    plain words; ``outcome`` is what a script makes of it (fine, waiting, failed,
    not-found) and ``exit_code`` the code ``edigw explain`` exits with. ``hits`` are the
    matches the verdict is about (the latest first); ``more_evidence`` counts the
    suspects of a "never received" left out of the evidence."""

    verdict: str
    summary: str
    evidence: list[Fact] = field(default_factory=list)
    documents: list[DocumentRow] = field(default_factory=list)
    transmissions: list[TransmissionRow] = field(default_factory=list)
    query: dict[str, Any] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    more_evidence: int = 0
    #: Set when the verdict's usual outcome does not hold (a published document no ERP
    #: acknowledgement is expected for is fine, not waiting).
    outcome_override: str | None = None

    @property
    def words(self) -> str:
        return words(self.verdict)

    @property
    def outcome(self) -> str:
        return self.outcome_override or outcome(self.verdict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def as_dict(self) -> dict[str, Any]:
        """The answer for the API and ``--json``: the matches first, then the verdict
        (in words, and its ``code`` for scripts) and its evidence."""
        return dict(hits=[h.as_dict() for h in self.hits],
                    verdict=self.words, code=self.verdict, outcome=self.outcome,
                    exit_code=self.exit_code, summary=self.summary,
                    evidence=[f.as_dict() for f in self.evidence],
                    more_evidence=self.more_evidence,
                    documents=[d.as_dict() for d in self.documents],
                    transmissions=[t.as_dict() for t in self.transmissions],
                    query={k: v.isoformat() if isinstance(v, dt.datetime) else v
                           for k, v in self.query.items()})


# -- search -----------------------------------------------------------------------------------

def search(store: Store, *, number: str | None = None, partner: str | None = None,
           interchange_ref: str | None = None, filename: str | None = None,
           since: dt.datetime | None = None, until: dt.datetime | None = None,
           doc_type: str | None = None, limit: int = 50,
           scope: Scope = EVERYTHING, transmission_ids: Sequence[str] = (),
           partners: PartnerDirectory | None = None) -> list[Hit]:
    """Documents, then transmissions without a matching document, newest first.

    ``number`` is an order or invoice number (exact first, else any case); ``filename``
    exact, else any case, else a part of the name; dates bound the time of receipt
    (``until`` excluded). A client's ``scope`` is its partner, whatever ``partner`` says
    (``OutOfScope`` for another one); with ``partners``, a partner with no profile and
    nothing on record raises ``NoSuchPartner``."""
    partner = scope.narrow(partner)
    check_partner(store, partners, partner)
    since, until = _utc(since), _utc(until)
    docs, trans = tracking.find_matches(store, tracking.MatchQuery(
        number=number, partner=partner, interchange_ref=interchange_ref, filename=filename,
        since=since, until=until, doc_type=doc_type, limit=limit,
        transmission_ids=tuple(transmission_ids)))
    return hits_of(docs, trans, limit)


def hits_of(docs: Sequence[DocumentRow], trans: Sequence[TransmissionRow],
            limit: int = 50) -> list[Hit]:
    """Documents, then transmissions without a matching document, as matches."""
    by_tid = {t.id: t for t in trans}
    hits = [Hit(kind="document", id=d.id, transmission_id=d.transmission_id,
                partner_id=d.partner_id, at=d.created_at, status=d.status,
                doc_type=d.doc_type, business_number=d.business_number,
                interchange_ref=d.interchange_ref,
                filename=by_tid[d.transmission_id].filename if d.transmission_id in by_tid
                else None) for d in docs]
    with_docs = {d.transmission_id for d in docs}
    hits += [Hit(kind="transmission", id=t.id, transmission_id=t.id, partner_id=t.partner_id,
                 at=t.received_at, status=t.status, filename=t.filename)
             for t in trans if t.id not in with_docs]
    return hits[:limit]


# -- explain ----------------------------------------------------------------------------------

@one_connection
def explain(store: Store, partners: PartnerDirectory | None,
            settings: GatewaySettings | TrackerSettings, *, partner: str | None = None,
            number: str | None = None, interchange_ref: str | None = None,
            filename: str | None = None, since: dt.datetime | None = None,
            until: dt.datetime | None = None, doc_type: str | None = None,
            now: dt.datetime | None = None, archive: Archive | None = None,
            direction: str | None = None, scope: Scope = EVERYTHING,
            transmission_ids: Sequence[str] = ()) -> Explanation:
    """One verdict about the latest document (or transmission) matching, with its evidence.

    With ``archive``, a number found in no document is looked for in the raw bytes of the
    payloads that failed or were quarantined before their numbers could be read (within
    the dates, else the last seven days).

    A document we send (an order response, a despatch advice; an invoice or price list
    when the latest match is ours, when ``direction`` is "out", or when nothing matches
    and the partner's profile sends that type) gets a delivery verdict: delivered,
    sent-awaiting-receipt, retrying, in-progress, failed or not-sent. Asked about an
    order, the order response sent for it is told too.

    A client's ``scope`` (``gateway.core.scope``) makes its partner the one asked about
    (``OutOfScope`` for another) and keeps the evidence to that partner's own rows: no
    sender-less file, shared channel or other partner's refusal is told.

    ``transmission_ids`` asks about those transmissions (named by a transmission or
    document id, an AS2 Message-ID). A ``partner`` with no profile (when ``partners`` is
    given) and nothing on record raises ``NoSuchPartner``. The answer's ``hits`` are the
    matches its verdict is about."""
    partner = scope.narrow(partner)
    check_partner(store, partners, partner)
    tracker = settings.tracker if isinstance(settings, GatewaySettings) else settings
    # The store keeps UTC (SQLite without the offset): every bound time must be UTC too.
    since, until = _utc(since), _utc(until)
    ctx = _Context(store, partners, tracker, _utc(now) or clock.now(), own_only=scope.restricted)
    query = {k: v for k, v in dict(partner=partner, number=number, doc_type=doc_type,
                                   interchange_ref=interchange_ref, filename=filename,
                                   since=since, until=until,
                                   transmission_ids=list(transmission_ids) or None
                                   ).items() if v is not None}
    what = _what(doc_type, number, interchange_ref, filename, transmission_ids)
    if number and (direction == "out" or doc_type in OUTBOUND_ONLY):
        out = ctx.about_sent(partner, number, doc_type, what, since=since, until=until,
                             archive=archive)
        out.query = {**query, "direction": "out"}
        out.hits = hits_of(out.documents, out.transmissions)
        return out
    docs, trans = tracking.find_matches(store, tracking.MatchQuery(
        number=number, partner=partner, interchange_ref=interchange_ref, filename=filename,
        since=since, until=until, doc_type=doc_type, limit=50,
        transmission_ids=tuple(transmission_ids)))
    if docs and docs[0].status == DocumentStatus.OUTBOUND and docs[0].business_number:
        # The latest match is a document we sent: was it delivered?
        out = ctx.about_sent(docs[0].partner_id, docs[0].business_number, docs[0].doc_type,
                             what, since=since, until=until, archive=archive)
    elif (not docs and not trans and number and doc_type in OUTBOUND_TYPES
          and ctx.sends(partner, doc_type)):
        out = ctx.about_sent(partner, number, doc_type, what, since=since, until=until,
                             archive=archive)
    elif docs:
        out = ctx.about_document(docs, {t.id: t for t in trans}, what)
    elif trans:
        out = ctx.about_transmission(trans[0], trans[1:], what)
    else:
        out = ctx.never_received(partner=partner, number=number, since=since, until=until,
                                 archive=archive, what=what)
    if number and doc_type == "order" and out.verdict not in (NEVER_RECEIVED, QUARANTINED):
        ctx.order_response_facts(out, partner, number)
    out.query = query
    out.hits = out.hits or hits_of(docs, trans)
    if partner and partners is not None and partners.get(partner) is None:
        out.evidence.append(Fact(None, "partner", f"no partner profile {partner!r} is "
                                 "configured (the defaults' rules were used)", partner))
    return out


def check_partner(store: Store, partners: PartnerDirectory | None, partner: str | None) -> None:
    """``NoSuchPartner`` when ``partner`` has no profile and nothing on record (a profile
    removed since keeps its history searchable)."""
    if (partner and partners is not None and partners.get(partner) is None
            and not partner_on_record(store, partner)):
        raise NoSuchPartner(partner)


def _what(doc_type: str | None, number: str | None, interchange_ref: str | None,
          filename: str | None, transmission_ids: Sequence[str] = ()) -> str:
    """How the summary names what was asked about: "order PO-1", "interchange 1043" …"""
    if number:
        return f"{_type_label(doc_type) if doc_type else 'document'} {number}"
    if interchange_ref:
        return f"interchange {interchange_ref}"
    if filename:
        return f"file {filename}"
    if transmission_ids:
        return f"transmission {transmission_ids[0]}"
    return "the latest document"


def _type_label(doc_type: str | None) -> str:
    return {"order": "order", "invoice": "invoice", "price-list": "price list",
            "order-response": "order response", "despatch-advice": "despatch advice",
            None: "document", "unknown": "message"}.get(doc_type, doc_type or "document")


class _Context:
    """What every part of an explanation needs: the store, the rules, the clock, the zone."""

    def __init__(self, store: Store, partners: PartnerDirectory | None,
                 tracker: TrackerSettings, now: dt.datetime, *, own_only: bool = False) -> None:
        self.store = store
        #: A client asks: evidence from its partner's own rows only (no sender-less file,
        #: shared channel or other partner's refusal).
        self.own_only = own_only
        self.partners = partners
        self.tracker = tracker
        self.now = now
        self.zone = _zone(tracker)

    # -- formatting ---------------------------------------------------------------------------

    def when(self, at: dt.datetime | None) -> str:
        """A time as a support person says it: local, to the minute, with the zone."""
        if at is None:
            return "-"
        return shown(aware(at), self.zone, seconds=False)

    def rules(self, partner_id: str | None) -> TrackerRules:
        p = self.partners.get(partner_id) if self.partners is not None and partner_id else None
        return self.tracker.rules_for(p)

    # -- documents ----------------------------------------------------------------------------

    def about_document(self, docs: list[DocumentRow], trans: dict[str, TransmissionRow],
                       what: str) -> Explanation:
        latest = docs[0]
        t = trans.get(latest.transmission_id) or self.store.get_transmission(
            latest.transmission_id)
        name = f"{_type_label(latest.doc_type)} {latest.business_number or latest.message_id}"
        who = f" from {latest.partner_id}" if latest.partner_id else ""
        received = (f"received {self.when(t.received_at if t else None)}"
                    + (f" in file {t.filename}" if t and t.filename else "")
                    + (f" via {t.channel}" if t else ""))
        facts = [self.received_fact(t)] if t else []
        status = latest.status
        expected = True  # an ERP acknowledgement (published documents without an SLA: not)
        if status in (DocumentStatus.FAILED, DocumentStatus.UNSUPPORTED, DocumentStatus.UNROUTABLE):
            verdict = FAILED
            stage = latest.stage or ("publish" if status == DocumentStatus.UNROUTABLE else "-")
            reason = latest.reason or ("returned by the broker: no queue is bound for "
                                       f"{latest.doc_type}.{latest.partner_id}"
                                       if status == DocumentStatus.UNROUTABLE
                                       else "no reason recorded")
            position = _position(reason)
            facts.append(Fact(latest.created_at, "failed",
                              f"{name} {status} at {stage}: {reason}", latest.id))
            if position:
                facts.append(Fact(None, "position", f"in the payload at {position}",
                                  latest.transmission_id))
            retry = self.reprocess_facts(t) if t else []
            facts += retry
            summary = (f"{_cap(name)}{who} was {received} but failed at {stage}: "
                       f"{_short(reason)}" + (f" ({position})" if position and position not in
                                             _short(reason) else "")
                       + f". {self.reprocess_sentence(t)}")
        elif status == DocumentStatus.DUPLICATE:
            verdict = DUPLICATE
            original = self.original_of(latest)
            if original is not None:
                facts.append(Fact(original.created_at, "original",
                                  f"first received as document {original.id} in transmission "
                                  f"{original.transmission_id}, now {original.status}"
                                  + self.erp_words(original), original.id))
                summary = (f"{_cap(name)}{who} was {received} as a repeat of document "
                           f"{original.id} (transmission {original.transmission_id}, "
                           f"{self.when(original.created_at)}), so it was not sent to the "
                           f"ERP again; the first is {self.state_words(original)}.")
            else:
                summary = (f"{_cap(name)}{who} was {received} as a repeat of a document "
                           "received before, so it was not sent to the ERP again.")
            facts.append(Fact(latest.created_at, "duplicate",
                              f"document {latest.id} kept as DUPLICATE (same content as "
                              "one received before)", latest.id))
        elif status in (DocumentStatus.CONFLICT, DocumentStatus.REJECTED):
            earlier = self.conflict_facts(latest)
            facts += earlier
            differs = (f"differs from document {latest.conflict_of} received before with the "
                       f"same number ({earlier[-1].text})" if earlier else
                       "differs from a document received before with the same number")
            if status == DocumentStatus.CONFLICT:
                verdict = HELD
                summary = (f"{_cap(name)}{who} was {received} but {differs}: it is held "
                           "until an operator releases or rejects it (edigw conflicts).")
            else:
                verdict = REJECTED
                summary = (f"{_cap(name)}{who} was {received} but {differs}; it was not "
                           f"published: {latest.reason or 'rejected by an operator'}.")
        elif status in (DocumentStatus.PENDING, DocumentStatus.HELD):
            verdict = IN_PROGRESS
            facts += self.outbox_facts(latest)
            summary = (f"{_cap(name)}{who} was {received} and "
                       + ("is being read (its file is still open)" if status == DocumentStatus.HELD
                          else f"has waited in the outbox for the broker since "
                          f"{self.when(latest.created_at)} "
                          f"({_duration(self.now - latest.created_at)})")
                       + self.broker_words(latest) + ".")
        else:  # PUBLISHED
            facts.append(Fact(latest.published_at, "published",
                              f"{name} confirmed by the broker (routing key "
                              f"{latest.doc_type}.{latest.partner_id})", latest.id))
            facts += self.erp_facts(latest)
            if latest.erp_status == ErpStatus.ACCEPTED:
                verdict = ACKNOWLEDGED
                summary = (f"{_cap(name)}{who} was {received}, published "
                           f"{self.when(latest.published_at)} and accepted by the ERP "
                           f"{self.when(latest.erp_at)}.")
            elif latest.erp_status == ErpStatus.REJECTED:
                verdict = REJECTED
                summary = (f"{_cap(name)}{who} was {received}, published "
                           f"{self.when(latest.published_at)} and rejected by the ERP "
                           f"{self.when(latest.erp_at)}: "
                           f"{latest.erp_reason or 'no reason given'}.")
            else:
                verdict = WAITING_ERP
                sla_words, fact = self.sla(latest)
                expected = fact.at is not None  # an SLA: an acknowledgement is due
                facts.append(fact)
                summary = (f"{_cap(name)}{who} was {received} and published "
                           f"{self.when(latest.published_at)}; no ERP acknowledgement for "
                           f"{_duration(self.now - (latest.published_at or latest.created_at))}"
                           f" ({sla_words}).")
        shown = {f.ref for f in facts if f.kind == "original"}
        facts += self.other_documents(latest, [d for d in docs[1:] if d.id not in shown])
        if t is not None:
            facts += self.repeats_of(t)
        alltrans = list(trans.values()) or ([t] if t else [])
        out = Explanation(verdict=verdict, summary=summary, evidence=facts,
                          documents=docs, transmissions=alltrans)
        if verdict == WAITING_ERP and not expected:
            out.outcome_override = FINE  # published; no acknowledgement is expected
        return out

    def received_fact(self, t: TransmissionRow) -> Fact:
        return Fact(t.received_at, "received",
                    f"transmission {t.id} received via {t.channel}"
                    + (f" from {t.channel_ref}" if t.channel_ref else "")
                    + (f", file {t.filename}" if t.filename else "")
                    + f", {t.size} bytes, now {t.status}"
                    + (f" at {t.stage}" if t.stage else "")
                    + (f"; raw payload purged {self.when(t.purged_at)}" if t.purged_at else ""),
                    t.id)

    def state_words(self, d: DocumentRow) -> str:
        if d.status == DocumentStatus.PUBLISHED:
            if d.erp_status == ErpStatus.ACCEPTED:
                return f"accepted by the ERP {self.when(d.erp_at)}"
            if d.erp_status == ErpStatus.REJECTED:
                return f"rejected by the ERP {self.when(d.erp_at)}"
            return f"published {self.when(d.published_at)}, awaiting the ERP"
        words: dict[str, str] = {
            DocumentStatus.PENDING: "waiting in the outbox",
            DocumentStatus.FAILED: f"FAILED at {d.stage}",
            DocumentStatus.UNROUTABLE: "unroutable",
            DocumentStatus.CONFLICT: "held as a conflict for an operator",
            DocumentStatus.REJECTED: f"rejected: {d.reason}"}
        return words.get(d.status, d.status)

    def erp_words(self, d: DocumentRow) -> str:
        if d.erp_status:
            return f", {d.erp_status} by the ERP {self.when(d.erp_at)}"
        return ""

    def original_of(self, dup: DocumentRow) -> DocumentRow | None:
        """The stored document a DUPLICATE repeats (same message id, or same number and
        content; not itself a repeat, not a failed or rejected one)."""
        return tracking.original_document(
            self.store, dup, (DocumentStatus.DUPLICATE, DocumentStatus.FAILED,
                              DocumentStatus.UNSUPPORTED, DocumentStatus.REJECTED))

    def conflict_facts(self, doc: DocumentRow) -> list[Fact]:
        """The earlier document a conflict differs from, and what differs."""
        from gateway.store.conflicts import ConflictDesk, ConflictError

        try:
            c = ConflictDesk(self.store).get(doc.id)
        except ConflictError:
            return []
        facts = []
        if c.earlier is not None:
            facts.append(Fact(c.earlier.created_at, "original",
                              f"document {c.earlier.id} with the same number received in "
                              f"transmission {c.earlier.transmission_id}, now "
                              f"{self.state_words(c.earlier)}", c.earlier.id))
        facts.append(Fact(doc.created_at, "conflict", c.comparison.summary(), doc.id))
        return facts

    def outbox_facts(self, doc: DocumentRow) -> list[Fact]:
        row = tracking.outbox_entry(self.store, doc.id)
        if row is None:
            return [Fact(doc.created_at, "held", f"document {doc.id} held until its file "
                         "has been read to the end", doc.id)]
        text = (f"in the outbox since {self.when(row.created_at)}, routing key "
                f"{row.routing_key}, {row.attempts} publish attempt(s)")
        if row.last_error:
            text += f", last error: {row.last_error}"
        return [Fact(row.created_at, "outbox", text, doc.id)]

    def broker_words(self, doc: DocumentRow) -> str:
        row = tracking.outbox_entry(self.store, doc.id)
        if row is not None and row.last_error:
            return f"; the broker failed {row.attempts} time(s), last: {_short(row.last_error)}"
        return ""

    def erp_facts(self, doc: DocumentRow) -> list[Fact]:
        # Every acknowledgement recorded sets the document's erp_status: none, no query.
        rows = tracking.erp_acks_of(self.store, doc.id) if doc.erp_status else []
        facts = [Fact(r.received_at, "erp-ack",
                      f"ERP acknowledgement {r.status}"
                      + (f" ({r.reason})" if r.reason else "")
                      + (f", stamped {self.when(r.acked_at)} by the ERP"
                         if r.acked_at else ""), doc.id) for r in rows]
        if not rows and doc.erp_status:
            facts.append(Fact(doc.erp_at, "erp-ack", f"ERP acknowledgement {doc.erp_status}"
                              + (f" ({doc.erp_reason})" if doc.erp_reason else ""), doc.id))
        return facts

    def sla(self, doc: DocumentRow) -> tuple[str, Fact]:
        """Words and a fact on the ERP acknowledgement's SLA for this document."""
        minutes = self.rules(doc.partner_id).erp_ack_minutes or {}
        limit = minutes.get(doc.doc_type, minutes.get("*"))
        since = doc.published_at or doc.created_at
        if not limit:
            return ("no acknowledgement is expected for this type",
                    Fact(None, "sla", f"no ERP acknowledgement SLA for {doc.doc_type} "
                         f"documents of {doc.partner_id}", doc.id))
        due = since + dt.timedelta(minutes=limit)
        if self.now > due:
            late = _duration(self.now - due)
            return (f"overdue by {late}: the SLA is {limit} min",
                    Fact(due, "sla", f"ERP acknowledgement due by {self.when(due)} "
                         f"({limit} min SLA): overdue by {late}", doc.id))
        return (f"within the {limit} min SLA, due by {self.when(due)}",
                Fact(due, "sla", f"ERP acknowledgement due by {self.when(due)} "
                     f"({limit} min SLA)", doc.id))

    def reprocess_of(self, t: TransmissionRow) -> list[TransmissionRow]:
        return tracking.reprocesses_of(self.store, t.id)

    def reprocess_facts(self, t: TransmissionRow) -> list[Fact]:
        facts = [Fact(r.received_at, "reprocess",
                      f"reprocessed as transmission {r.id}"
                      + (f" by {r.requested_by}" if r.requested_by else "")
                      + (f" ({r.request_reason})" if r.request_reason else "")
                      + f": {r.status}" + (f" at {r.stage}: {r.reason}" if r.reason else ""),
                      r.id) for r in self.reprocess_of(t)]
        facts += [Fact(e["at"], "reprocess", f"reprocess requested: {e['detail'] or ''}", t.id)
                  for e in self.store.events(t.id) if e["event"] == "reprocess"]
        if t.purged_at:
            facts.append(Fact(t.purged_at, "purged", "raw payload purged (retention): it "
                              "can no longer be reprocessed", t.id))
        return facts

    def reprocess_sentence(self, t: TransmissionRow | None) -> str:
        if t is None:
            return ""
        again = self.reprocess_of(t)
        if again:
            last = again[-1]
            return (f"It was reprocessed {self.when(last.received_at)} as transmission "
                    f"{last.id}: {last.status}" + (f" at {last.stage}" if last.stage else "")
                    + ".")
        if any(e["event"] == "reprocess" for e in self.store.events(t.id)):
            return f"It was reprocessed in place; transmission {t.id} is now {t.status}."
        if t.purged_at:
            return (f"Its raw payload was purged {self.when(t.purged_at)}; it cannot be "
                    "reprocessed.")
        return f"Not reprocessed yet (transmission {t.id})."

    def other_documents(self, latest: DocumentRow, others: Sequence[DocumentRow]) -> list[Fact]:
        return [Fact(d.created_at, "also-received",
                     f"also {_type_label(d.doc_type)} {d.business_number or d.message_id}"
                     f" from {d.partner_id} in transmission {d.transmission_id}: "
                     f"{self.state_words(d)}"
                     + (f" ({d.stage}: {_short(d.reason)})" if d.reason else ""), d.id)
                for d in others if d.id != latest.id]

    def repeats_of(self, t: TransmissionRow) -> list[Fact]:
        """Later receipts of the very same bytes (not processed again)."""
        rows = tracking.repeats_of(self.store, t.id)
        return [Fact(r.received_at, "repeat",
                     f"the same bytes were received again as transmission {r.id}"
                     f" via {r.channel}" + (f" ({r.filename})" if r.filename else "")
                     + ": DUPLICATE, not processed again", r.id)
                for r in rows]

    # -- documents we send --------------------------------------------------------------------

    def sends(self, partner: str | None, doc_type: str) -> bool:
        """Whether ``partner``'s profile sends ``doc_type`` documents (an outbound format)."""
        p = self.partners.get(partner) if self.partners is not None and partner else None
        return p is not None and doc_type in p.outbound.formats

    def delivery_minutes(self, partner: str | None) -> int:
        p = self.partners.get(partner) if self.partners is not None and partner else None
        return p.outbound.delivery_minutes if p is not None else DELIVERY_MINUTES

    def about_sent(self, partner: str | None, number: str, doc_type: str | None, what: str, *,
                   since: dt.datetime | None, until: dt.datetime | None,
                   archive: Archive | None) -> Explanation:
        """Was the document we send numbered ``number`` delivered? The latest of them
        (``doc_type`` if it is one we send), with its transmission's timeline."""
        types = [doc_type] if doc_type in OUTBOUND_TYPES else None
        rows = [r for r in tracking.outbound_documents(self.store, partner, number, types)
                if (since is None or r.received_at >= since)
                and (until is None or r.received_at < until)]
        if not rows:
            return self.not_sent(partner, number, doc_type, what, archive)
        latest = rows[0]
        t = self.store.get_transmission(latest.transmission_id)
        name = f"{_type_label(latest.doc_type)} {latest.business_number}"
        to = f" to {latest.partner_id}" if latest.partner_id else ""
        facts = [Fact(latest.received_at, "from-erp",
                      f"received from the ERP via {t.channel if t else '?'}"
                      + (f" ({t.channel_ref})" if t and t.channel_ref else "")
                      + f" as transmission {latest.transmission_id}", latest.transmission_id)]
        facts += self.delivery_facts(latest)
        status = latest.status
        rendered = latest.rendered_at or latest.received_at
        if status == TransmissionStatus.DELIVERED:
            verdict = DELIVERED
            summary = (f"{_cap(name)}{to} was delivered {self.when(latest.delivered_at)} "
                       f"({self.delivered_how(latest)}).")
        elif status == TransmissionStatus.SENT:
            verdict = SENT_AWAITING_RECEIPT
            limit = self.delivery_minutes(latest.partner_id)
            due = rendered + dt.timedelta(minutes=limit)
            late = (f"overdue by {_duration(self.now - due)}" if self.now > due
                    else f"due by {self.when(due)}")
            summary = (f"{_cap(name)}{to} was sent {self.when(latest.sent_at)} via "
                       f"{latest.channel}; the partner's receipt has not come yet "
                       f"({_duration(self.now - (latest.sent_at or rendered))} so far; the "
                       f"time limit is {limit} min after rendering: {late}).")
        elif status == TransmissionStatus.RENDERED and latest.attempts:
            verdict = RETRYING
            summary = (f"{_cap(name)}{to} is not delivered yet: {latest.attempts} attempt(s) "
                       f"via {latest.channel} failed, the last: {_short(latest.last_error)}; "
                       f"next attempt {self.when(latest.next_attempt_at)}.")
        elif status in (TransmissionStatus.RENDERED, TransmissionStatus.RECEIVED):
            verdict = IN_PROGRESS
            summary = (f"{_cap(name)}{to} was " + (
                f"rendered {self.when(rendered)} and waits for its first delivery via "
                f"{latest.channel}" if status == TransmissionStatus.RENDERED
                else f"received from the ERP {self.when(latest.received_at)} and waits to "
                     "be rendered") + f" ({_duration(self.now - rendered)} so far).")
        else:
            verdict = FAILED
            summary = (f"{_cap(name)}{to} was not delivered: it failed at "
                       f"{latest.stage or '?'}: {_short(latest.reason)}"
                       f"{self.failed_words(latest)}. {self.resend_sentence(t)}")
        if t is not None:
            facts += self.reprocess_facts(t) if status == TransmissionStatus.FAILED else []
            facts += [Fact(e["at"], "event", f"{e['event']}: {e['detail'] or ''}", t.id)
                      for e in self.store.events(t.id) if e["event"] != "received"]
        facts += [Fact(r.received_at, "also-sent",
                       f"also sent as transmission {r.transmission_id}: {r.status}"
                       + (f" at {r.stage}: {_short(r.reason)}" if r.stage else ""),
                       r.transmission_id) for r in rows[1:]]
        trans = [x for x in (self.store.get_transmission(r.transmission_id)
                             for r in rows[:10]) if x is not None]
        docs = [d for r in rows[:10] for d in self.store.documents_of(r.transmission_id)]
        return Explanation(verdict=verdict, summary=summary, evidence=facts, documents=docs,
                           transmissions=trans)

    def delivery_facts(self, r: tracking.OutboundDelivery) -> list[Fact]:
        """The rendering and delivery of one document we send, from its outbound row."""
        if r.outbound_id is None:
            return []
        facts = [Fact(r.rendered_at, "rendered",
                      f"{_type_label(r.doc_type)} {r.business_number} rendered as {r.kind} "
                      + (f"interchange {r.control_ref} " if r.control_ref else "")
                      + f"for {r.channel}", r.transmission_id)]
        if r.attempts:
            facts.append(Fact(r.sent_at, "delivery",
                              f"{r.attempts} delivery attempt(s)"
                              + (f", last error: {_short(r.last_error)}" if r.last_error else "")
                              + (f", next attempt {self.when(r.next_attempt_at)}"
                                 if r.next_attempt_at else ""), r.transmission_id))
        if r.sent_at and r.status != TransmissionStatus.FAILED:
            facts.append(Fact(r.sent_at, "sent", f"sent via {r.channel}"
                              + (f" (remote id {r.remote_id})" if r.remote_id else ""),
                              r.transmission_id))
        if r.receipt:
            facts.append(Fact(r.delivered_at, "receipt", f"receipt: {r.receipt}",
                              r.transmission_id))
        if r.delivered_at:
            facts.append(Fact(r.delivered_at, "delivered",
                              f"delivered: {self.delivered_how(r)}", r.transmission_id))
        return facts

    @staticmethod
    def delivered_how(r: tracking.OutboundDelivery) -> str:
        """How the delivery was confirmed: the partner's receipt (CONTRL, APERAK, MDN), or
        the channel's own confirmation (a folder or SFTP rename done)."""
        receipt = r.receipt or ""
        if receipt.startswith(("CONTRL", "APERAK")):
            return f"{receipt.split(' ', 1)[0]} from the partner: {_short(receipt, 120)}"
        if receipt:
            return f"receipt (MDN) from the partner: {_short(receipt, 120)}"
        return f"confirmed by the {r.channel} channel" + (f": {r.detail}" if r.detail else "")

    @staticmethod
    def failed_words(r: tracking.OutboundDelivery) -> str:
        if r.stage == "receipt":
            return " (the partner's receipt was negative)"
        if r.stage == "deliver":
            return f" (delivery given up after {r.attempts or 0} attempt(s) via {r.channel})"
        if r.outbound_id is None:
            return " (refused when the ERP sent it: nothing went to the partner)"
        return ""

    def resend_sentence(self, t: TransmissionRow | None) -> str:
        if t is None:
            return ""
        again = self.reprocess_of(t)
        if again:
            last = again[-1]
            return (f"It was sent again {self.when(last.received_at)} as transmission "
                    f"{last.id}: {last.status}.")
        return f"Not sent again yet (edigw reprocess {t.id} sends it again)."

    def not_sent(self, partner: str | None, number: str, doc_type: str | None, what: str,
                 archive: Archive | None) -> Explanation:
        """No document we send is numbered ``number``: the ERP never sent it, or edigw
        refused it before reading its number (then its archived JSON names it)."""
        start = self.now - LOOKBACK
        refused = [r for r in tracking.failed_outbound(self.store, start)
                   if r.outbound_id is None and (partner is None or r.partner_id in (None, partner))]
        if archive is not None:
            for r in reversed(refused):  # newest first
                t = self.store.get_transmission(r.transmission_id)
                if t is None or t.purged_at or t.size > SCAN_MAX_BYTES:
                    continue
                try:
                    data = archive.get(t.sha256)
                except (StoreError, ValueError):
                    continue
                if f'"{number}"'.encode() in data:
                    fact = Fact(t.received_at, "found-in-payload",
                                f"{number} appears in the document the ERP sent as "
                                f"transmission {t.id}, refused at {t.stage}", t.id)
                    events = [Fact(e["at"], "event", f"{e['event']}: {e['detail'] or ''}",
                                   t.id) for e in self.store.events(t.id)]
                    return Explanation(
                        verdict=FAILED,
                        summary=(f"{_cap(what)} was sent by the ERP "
                                 f"{self.when(t.received_at)} but refused at {t.stage}: "
                                 f"{_short(t.reason)}; nothing went to the partner. "
                                 f"{self.resend_sentence(t)}"),
                        evidence=[fact, *events], transmissions=[t])
        who = f" to {partner}" if partner else ""
        facts = [Fact(r.received_at, "refused",
                      f"transmission {r.transmission_id} from the ERP refused at {r.stage}: "
                      f"{_short(r.reason)}", r.transmission_id) for r in refused[-10:]]
        summary = (f"No {what}{who} was sent: the ERP has not handed edigw an "
                   f"{_type_label(doc_type) if doc_type else 'outbound document'} numbered "
                   f"{number}" + (f" ({len(refused)} document(s) from the ERP were refused "
                                  "in the last 7 days, see the evidence)" if refused else "")
                   + ".")
        return Explanation(verdict=NOT_SENT, summary=summary, evidence=facts)

    def order_response_facts(self, out: Explanation, partner: str | None, number: str) -> None:
        """Asked about an order: the order response sent for it (or its absence when the
        partner gets them automatically and the ERP has answered the order)."""
        order = next((d for d in out.documents if d.doc_type == "order"), None)
        pid = partner or (order.partner_id if order else None)
        p = self.partners.get(pid) if self.partners is not None and pid else None
        if (p is not None and "order-response" not in p.outbound.formats
                and p.outbound.order_responses != "auto"):
            return  # its profile sends it no order responses
        rows = tracking.outbound_documents(self.store, pid, number, ["order-response"])
        if rows:
            r = rows[0]
            words: dict[str, str] = {TransmissionStatus.DELIVERED: f"delivered {self.when(r.delivered_at)}",
                     TransmissionStatus.SENT: f"sent {self.when(r.sent_at)}, awaiting the "
                                              "partner's receipt",
                     TransmissionStatus.RENDERED: "rendered, not delivered yet"
                                                  + (f" ({r.attempts} failed attempt(s))"
                                                     if r.attempts else ""),
                     TransmissionStatus.FAILED: f"FAILED at {r.stage}: {_short(r.reason)}"}
            said = words.get(r.status, r.status)
            out.evidence.append(Fact(r.received_at, "order-response",
                                     f"order response for {number}: {said}",
                                     r.transmission_id))
            out.evidence += self.delivery_facts(r)
            out.summary += f" Its order response was {said}."
            return
        p = self.partners.get(pid) if self.partners is not None and pid else None
        if (p is not None and p.outbound.order_responses == "auto" and order is not None
                and order.erp_status):
            due = (order.erp_at or self.now) + dt.timedelta(
                minutes=p.outbound.order_response_minutes)
            out.evidence.append(Fact(due, "order-response",
                                     f"no order response sent yet for {number} (automatic "
                                     f"for {p.id}; due by {self.when(due)})", order.id))
            out.summary += " No order response has been sent for it yet."

    # -- transmissions without documents --------------------------------------------------------

    def about_transmission(self, t: TransmissionRow, others: Sequence[TransmissionRow],
                           what: str, found_by: Fact | None = None) -> Explanation:
        facts = [self.received_fact(t)]
        if found_by is not None:
            facts.append(found_by)
        subject = (f"{_cap(what)} was received {self.when(t.received_at)} via {t.channel}"
                   + (f" in file {t.filename}" if t.filename and t.filename not in what else ""))
        if t.status == TransmissionStatus.QUARANTINED:
            verdict = QUARANTINED
            facts.append(Fact(t.updated_at, "quarantined", f"{t.stage}: {t.reason}", t.id))
            if t.stage == lifecycle.STAGE and t.reason == lifecycle.SUSPENDED_REASON:
                summary = (f"{subject} but is held: its partner {t.partner_id} is suspended. "
                           "It is processed and passed on when the partner is live again.")
            elif t.stage == lifecycle.STAGE and t.reason == lifecycle.DRAFT_REASON:
                summary = (f"{subject} but is kept back: its partner {t.partner_id} is not yet "
                           f"in test. Once it is, reprocess transmission {t.id}.")
            else:
                summary = (f"{subject} but is quarantined: {_short(t.reason)}. Once a "
                           f"partner profile lists the sender, reprocess transmission {t.id}.")
        elif t.status == TransmissionStatus.DUPLICATE:
            verdict = DUPLICATE
            first = self.store.get_transmission(t.duplicate_of) if t.duplicate_of else None
            if first is not None:
                facts.append(Fact(first.received_at, "original",
                                  f"the same bytes first came as transmission {first.id}"
                                  f" via {first.channel}"
                                  + (f" ({first.filename})" if first.filename else "")
                                  + f", now {first.status}", first.id))
            summary = (f"{subject} as an exact repeat of transmission {t.duplicate_of}"
                       + (f" (received {self.when(first.received_at)}, {first.status})"
                          if first else "") + "; it was not processed again.")
        elif t.status == TransmissionStatus.FAILED:
            verdict = FAILED
            position = _position(t.reason or "")
            facts.append(Fact(t.updated_at, "failed", f"{t.stage}: {t.reason}", t.id))
            if position:
                facts.append(Fact(None, "position", f"in the payload at {position}", t.id))
            facts += self.reprocess_facts(t)
            summary = (f"{subject} but failed at {t.stage}: {_short(t.reason)}. "
                       f"{self.reprocess_sentence(t)}")
        elif t.status == TransmissionStatus.HELD:
            verdict = HELD
            summary = (f"{subject}; a document in it has the number of one received before "
                       "with other content and is held until an operator releases or rejects "
                       "it (edigw conflicts).")
        elif (t.status == TransmissionStatus.PROCESSED and not t.document_count
              and (receipts := [e for e in self.store.events(t.id)
                                if e["event"] == "receipt"])):
            verdict = RECEIPT
            summary = (f"{subject}: the partner's receipt for what edigw sent it, recorded "
                       f"on it ({_short(receipts[0]['detail'])})"
                       + (f" and {len(receipts) - 1} more" if len(receipts) > 1 else "")
                       + "; nothing in it goes to the ERP.")
        elif t.status in (TransmissionStatus.RECEIVED, TransmissionStatus.PROCESSED):
            verdict = IN_PROGRESS
            summary = (f"{subject} and is " + ("waiting to be processed"
                                               if t.status == TransmissionStatus.RECEIVED
                                               else "waiting in the outbox for the broker")
                       + f" ({_duration(self.now - t.received_at)} so far).")
        else:  # PUBLISHED without documents: nothing of it went to the ERP
            verdict = IN_PROGRESS if t.document_count else FAILED
            summary = f"{subject}: {t.status}" + (f", {t.reason}" if t.reason else "") + "."
        facts += [Fact(e["at"], "event", f"{e['event']}: {e['detail'] or ''}", t.id)
                  for e in self.store.events(t.id)
                  if e["event"] not in ("received", "reprocess", t.status.lower())]
        facts += self.repeats_of(t)
        facts += [Fact(o.received_at, "also-received",
                       f"also transmission {o.id} via {o.channel}"
                       + (f" ({o.filename})" if o.filename else "") + f": {o.status}", o.id)
                  for o in others]
        return Explanation(verdict=verdict, summary=summary, evidence=facts,
                           transmissions=[t, *others])

    # -- never received ---------------------------------------------------------------------

    def never_received(self, *, partner: str | None, number: str | None,
                       since: dt.datetime | None, until: dt.datetime | None,
                       archive: Archive | None, what: str) -> Explanation:
        start = since or (until or self.now) - LOOKBACK
        end = until or self.now
        suspects, more = self.unreadable(partner, start, until)
        if number and archive is not None:
            found = self.scan(archive, suspects, number)
            if found is not None:
                t, fact = found
                return self.about_transmission(
                    t, [x for x in suspects if x.id != t.id], what, found_by=fact)
        facts: list[Fact] = []
        if partner:
            facts += self.last_contact(partner)
            facts += self.alert_facts(partner, start, end)
            facts += self.gap_facts(partner, start, end, facts)
        facts += self.channel_facts(partner)
        facts += self.security_facts(partner, start, end)
        facts += [Fact(t.received_at, "unreadable",
                       f"transmission {t.id} via {t.channel}"
                       + (f" ({t.filename})" if t.filename else "")
                       + f" {t.status} at {t.stage} before any number was read: "
                       f"{_short(t.reason)}"
                       + (" (raw payload purged)" if t.purged_at else ""), t.id)
                  for t in suspects]
        if more:
            facts.append(Fact(None, "more-unreadable",
                              f"and {more} more unreadable file(s) "
                              + (f"that could be {partner}'s" if partner
                                 else "from unidentified senders")
                              + f" between {self.when(start)} and {self.when(end)}"
                              + (" (counted up to 1000)" if more >= 1000 - len(suspects)
                                 else ""), partner))
        who = f" from {partner}" if partner else ""
        window = f"between {self.when(start)} and {self.when(end)}"
        parts = [f"No {what}{who} has been received" + (f" {window}" if since or until
                                                          else "")]
        contact = [f for f in facts if f.kind == "last-contact"]
        if contact:
            latest = max(contact, key=lambda f: f.at or dt.datetime.min.replace(tzinfo=dt.UTC))
            parts.append(f"last contact {self.when(latest.at)}")
        elif partner:
            parts.append("nothing from this partner is on record")
        gaps = [f for f in facts if f.kind == "gap"]
        if gaps:
            parts.append(gaps[0].text)
        alerts = [f for f in facts if f.kind == "alert"]
        if alerts:
            parts.append("; ".join(f.text for f in alerts[:3]))
        failing = [f for f in facts if f.kind == "channel"]
        if failing:
            parts.append(failing[0].text)
        unread = len(suspects) + more
        if unread:
            parts.append(f"{unread} payload(s) around then that could be it could not be "
                         "read (see the evidence)")
        summary = "; ".join(parts) + "."
        return Explanation(verdict=NEVER_RECEIVED, summary=summary, evidence=facts,
                           transmissions=suspects, more_evidence=more)

    def last_contact(self, partner: str) -> list[Fact]:
        """The partner's last transmission on each channel."""
        rows = tracking.last_contacts(self.store, partner)
        rows.sort(key=lambda r: r.received_at, reverse=True)
        if not rows:
            return [Fact(None, "no-contact", f"no transmission from {partner} is on record",
                         partner)]
        return [Fact(r.received_at, "last-contact",
                     f"last transmission via {r.channel}: {self.when(r.received_at)}"
                     + (f", file {r.filename}" if r.filename else "") + f", {r.status}"
                     + (f" at {r.stage}" if r.stage else ""), r.id) for r in rows]

    def alert_facts(self, partner: str, start: dt.datetime, end: dt.datetime) -> list[Fact]:
        """Alerts about the partner's traffic: still open, or opened around the window."""
        day = dt.timedelta(days=1)
        rows = AlertRepository(self.store).about_partner(partner, _CONTACT_ALERTS, start - day,
                                                         end + day)
        return [Fact(r.opened_at, "alert",
                     f"{r.kind} alert ({r.status}): {r.summary}", f"alert:{r.id}")
                for r in rows]

    def gap_facts(self, partner: str, start: dt.datetime, end: dt.datetime,
                  known: list[Fact]) -> list[Fact]:
        """Interchange references missing between those received around the window, unless
        an alert says so already."""
        rules = self.rules(partner)
        if not rules.gaps:
            return []
        pad = dt.timedelta(days=1)
        rows = tracking.interchanges_between(self.store, partner, start - pad, end + pad)
        numbered = [(int(r.control_ref), r) for r in rows if r.control_ref.isdigit()]
        seen = {n for n, _ in numbered}
        facts = []
        said = " ".join(f.text for f in known if f.kind == "alert")
        for (prev, prow), (cur, crow) in zip(numbered, numbered[1:], strict=False):
            if not 1 < cur - prev <= (rules.gap_window or 100):
                continue
            missing = [n for n in range(prev + 1, cur) if n not in seen]
            if not missing:
                continue
            width = len(crow.control_ref) if crow.control_ref.startswith("0") else 0
            first, last = str(missing[0]).zfill(width), str(missing[-1]).zfill(width)
            span = first if first == last else f"{first}-{last}"
            # The gap rule's alert says "1043 and 1044 missing" or "1043 to 1050 missing".
            if "missing" in said and first in said and last in said:
                continue
            facts.append(Fact(aware(crow.received_at), "gap",
                              f"interchange references {span} missing: received "
                              f"{crow.control_ref} {self.when(aware(crow.received_at))} after "
                              f"{prow.control_ref} {self.when(aware(prow.received_at))}",
                              crow.transmission_id))
        return facts

    def channel_facts(self, partner: str | None) -> list[Fact]:
        """The partner's channels (healthy or not) and any shared channel failing."""
        rows = [h for h in ChannelRecords(self.store).health()
                if (partner and h.partner_id == partner)
                or (h.consecutive_failures > 0 and not self.own_only)]
        facts = []
        for r in rows:
            if r.consecutive_failures:
                text = (f"channel {r.channel} failing: {r.consecutive_failures} failure(s) in a "
                        f"row, last {self.when(aware(r.last_attempt_at))}: {r.last_error}"
                        + (f"; last success {self.when(aware(r.last_success_at))}"
                           if r.last_success_at else "; never succeeded"))
                facts.append(Fact(aware(r.last_attempt_at), "channel", text, r.channel))
            else:
                facts.append(Fact(aware(r.last_success_at), "channel-ok",
                                  f"channel {r.channel} last checked successfully "
                                  f"{self.when(aware(r.last_success_at))}"
                                  + (f" ({r.detail})" if r.detail else ""), r.channel))
        return facts

    def security_facts(self, partner: str | None, start: dt.datetime,
                       end: dt.datetime) -> list[Fact]:
        rows = tracking.security_events_between(self.store, partner, start, end,
                                                own_only=self.own_only)
        return [Fact(r.at, "refused",
                     f"{r.channel} request refused ({r.kind})"
                     + (f" from {r.remote}" if r.remote else "")
                     + (f": {r.detail}" if r.detail else ""), f"security:{r.id}") for r in rows]

    def unreadable(self, partner: str | None, start: dt.datetime,
                   end: dt.datetime | None) -> tuple[list[TransmissionRow], int]:
        """Failed or quarantined files in the window whose messages were never read and
        that could be the document asked about: the partner's own, and the sender-less ones
        that name one of its identifiers, its id or its channel path (only the sender-less
        ones when no partner is given; only its own for a client). The newest
        ``SCAN_MAX_PAYLOADS``, and how many more there are."""
        limit = SCAN_MAX_PAYLOADS
        if partner is None:
            rows = tracking.unreadable_transmissions(self.store, None, start, end, limit)
            total = (len(rows) if len(rows) < limit
                     else tracking.count_unreadable(self.store, None, start, end))
            return rows, max(0, total - len(rows))
        own = tracking.unreadable_transmissions(self.store, partner, start, end, limit)
        total = (len(own) if len(own) < limit
                 else tracking.count_unreadable(self.store, partner, start, end))
        if not self.own_only:
            strangers, named = tracking.unidentified_naming(
                self.store, self.names_of(partner), start, end, limit,
                looked_at=UNIDENTIFIED_LOOKED_AT)
            own = sorted(own + strangers, key=lambda t: (t.received_at, t.id), reverse=True)
            total += named
        return own[:limit], max(0, total - limit)

    def names_of(self, partner: str) -> list[str]:
        """What a sender-less file names when it could be the partner's: its id, one of its
        identifiers (UNB, GLN, VAT, SIREN, SIRET, AS2, e-mail, phone), in its file name,
        channel reference (path, address) or reason."""
        needles = {partner}
        p = self.partners.get(partner) if self.partners is not None else None
        if p is not None:
            ids = p.identifiers
            needles |= {u.id for u in ids.unb}
            for values in (ids.gln, ids.vat, ids.siren, ids.siret, ids.as2, ids.email,
                           ids.phone):
                needles |= set(values)
        return sorted(n for n in needles if n)

    def scan(self, archive: Archive, suspects: Sequence[TransmissionRow],
             number: str) -> tuple[TransmissionRow, Fact] | None:
        """The latest unreadable payload whose raw bytes contain ``number``."""
        needles = {number.encode("utf-8"), number.encode("latin-1", "ignore")} - {b""}
        for t in suspects:
            if t.purged_at or t.size > SCAN_MAX_BYTES:
                continue
            try:
                data = archive.get(t.sha256)
            except (StoreError, ValueError):  # missing: only "not this one"
                continue
            if any(n in data for n in needles):
                what = ("failed" if t.status == TransmissionStatus.FAILED
                        else "was quarantined")
                return t, Fact(t.received_at, "found-in-payload",
                               f"{number} appears in the raw payload of transmission {t.id}, "
                               f"which {what}"
                               f" at {t.stage} before its documents were read", t.id)
        return None


def _zone(tracker: TrackerSettings) -> ZoneInfo:
    """The zone times are shown in (``[tracker] timezone``, as ``gateway.core.zone``)."""
    try:
        return ZoneInfo(tracker.timezone)
    except (ValueError, KeyError):
        return UTC_ZONE


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _position(reason: str) -> str | None:
    """The position a reason ends with ("line 21, column 1, segment 21 (QTY) …")."""
    found = _POSITION.findall(reason or "")
    return found[-1].strip() if found else None


def _short(text: str | None, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _duration(delta: dt.timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
