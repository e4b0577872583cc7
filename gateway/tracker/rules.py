"""The tracker's detection rules: each reads the store and returns the conditions it finds.

A rule is a ``Rule``: a name, the alert kinds it speaks for, and a function
``(TrackerContext) -> list[Condition]``. A rule only reads; ``AlertBook.reconcile`` turns
what all rules found into alerts. A condition's ``key`` names one fact; while the fact
holds, every check returns the same key, so it stays one alert (docs/tracker.md lists the
rules, their settings, keys and when each condition is gone).

Rules look back a bounded time to find new conditions (``LOOKBACK``), and also re-check the
conditions of alerts still open beyond it, so that an alert is resolved because its
condition is gone, never because it grew old.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config import PartnerDirectory, TrackerRules, TrackerSettings
from gateway.core import lifecycle
from gateway.core.senders import senders_in
from gateway.core.status import AlertState, DocumentStatus, TransmissionStatus
from gateway.store import tracking
from gateway.store.alerts import quarantined_unattributed
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.records import TransmissionRow, aware
from gateway.tracker.alerts import Alert, AlertBook, Condition
from gateway.tracker.calendar import BusinessCalendar

#: How far back each rule looks for new conditions.
LOOKBACK = {
    "failures": dt.timedelta(days=7),
    "erp": dt.timedelta(days=7),
    "gaps": dt.timedelta(days=30),
    "silence": dt.timedelta(days=7),
    "outbound": dt.timedelta(days=7),
}
#: A partner's delivery time limit when its profile is unknown (``outbound.delivery_minutes``).
DELIVERY_MINUTES = 240
#: Documents and transmissions listed in an alert's evidence, at most.
MAX_LISTED = 20


@dataclass
class TrackerContext:
    """What a rule may look at during one check."""

    store: Store
    settings: TrackerSettings
    partners: PartnerDirectory
    now: dt.datetime
    calendar: BusinessCalendar = field(default=None)  # type: ignore[assignment]
    alerts: AlertBook = field(default=None)  # type: ignore[assignment]
    certificate_warning_days: int = 30
    stalled_after: float = 120.0  # [processing] stalled_after, s
    _rules: dict[str | None, TrackerRules] = field(default_factory=dict, repr=False)
    _active: dict[str, Alert] | None = field(default=None, repr=False)
    _first: list[dt.datetime | None] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.now = self.now.astimezone(dt.UTC)
        if self.calendar is None:
            self.calendar = BusinessCalendar(self.settings.timezone, self.settings.holidays)
        if self.alerts is None:
            self.alerts = AlertBook(self.store)

    def rules_for(self, partner_id: str | None) -> TrackerRules:
        """The partner's rules (its own, the defaults, the built-in values)."""
        if partner_id not in self._rules:
            partner = self.partners.get(partner_id) if partner_id else None
            self._rules[partner_id] = self.settings.rules_for(partner)
        return self._rules[partner_id]

    def active(self, prefix: str) -> dict[str, Alert]:
        """The open and acknowledged alerts whose key starts with ``prefix``."""
        if self._active is None:
            self._active = {a.key: a for a in self.alerts.list(
                status=(AlertState.OPEN, AlertState.ACKNOWLEDGED), limit=1_000_000)}
        return {k: a for k, a in self._active.items() if k.startswith(prefix)}

    def first_received_at(self) -> dt.datetime | None:
        """When the gateway received its first transmission: before it, no silence is
        known (a new installation does not report the partners' past as silence)."""
        if not self._first:
            self._first.append(tracking.first_received_at(self.store))
        return self._first[0]


@dataclass(frozen=True)
class Rule:
    """A detection rule: ``rule(ctx)`` returns the conditions of ``kinds`` it finds."""

    name: str
    kinds: tuple[str, ...]
    check: Callable[[TrackerContext], list[Condition]]

    def __call__(self, ctx: TrackerContext) -> list[Condition]:
        return self.check(ctx)


# -- failures ---------------------------------------------------------------------------

_POSITION = re.compile(r"\bat (line \d+(?:, column \d+)?(?:, segment \d+(?: \(\w+\))?)?"
                       r"(?:, element [\w/]+)?)")


def position_in(reason: str | None) -> str | None:
    """The position a reason names ("line 5, column 1, segment 5 (DTM), element …")."""
    m = _POSITION.search(reason or "")
    return m.group(1) if m else None


def _check_failures(ctx: TrackerContext) -> list[Condition]:
    # The per-file keys of before (failure:<id>, quarantine:<id>) are still rechecked until
    # they are folded into the grouped ones.
    still = {k.split(":", 1)[1] for k in
             [*ctx.active("failure:"), *ctx.active("quarantine:")] if k.count(":") == 1}
    # Every file of an unknown sender still held, whatever its age: its sender's alert lasts
    # until none is (one alert per sender, not per file).
    still |= set(quarantined_unattributed(ctx.store))
    # A partner's failures at one stage are one alert, looked for back to its first file
    # while it is open, so that it is resolved because they are cleared, not for their age.
    since = ctx.now - LOOKBACK["failures"]
    for alert in ctx.active("failure:").values():
        first = alert.detail.get("first_received")
        if isinstance(first, str):
            with contextlib.suppress(ValueError):
                since = min(since, dt.datetime.fromisoformat(first).astimezone(dt.UTC))
    found = tracking.failure_evidence(ctx.store, since, still)
    out = []
    held: dict[tuple[str, str], list[TransmissionRow]] = {}
    unknown: dict[str, list[TransmissionRow]] = {}
    failed: dict[tuple[str | None, str], list[tuple[TransmissionRow,
                                                    list[tracking.FailedDocument]]]] = {}
    for row in sorted(found.transmissions, key=lambda r: (r.received_at, r.id)):
        docs = found.failed_documents.get(row.id, [])
        if row.direction == "out":
            continue  # a document we send: the outbound-failed rule tells
        if row.status not in _FAILED and not docs:
            continue  # reprocessed in place, or a document failure that is gone
        if not ctx.rules_for(row.partner_id).failures:
            continue
        # A later attempt replaying it: one that succeeded clears it; one that failed carries
        # the failure on (its own alert names this transmission), so it is not told twice.
        if any(r.status != TransmissionStatus.RECEIVED for r in found.replays.get(row.id, [])):
            continue
        if (row.status == TransmissionStatus.QUARANTINED and row.partner_id
                and row.stage == lifecycle.STAGE
                and row.reason in (lifecycle.DRAFT_REASON, lifecycle.SUSPENDED_REASON)):
            # Kept back by the partner's state, which an admin chose: one alert per partner
            # and reason, not one per file.
            held.setdefault((row.partner_id, row.reason), []).append(row)
            continue
        if row.status == TransmissionStatus.QUARANTINED:
            # One alert per sender: an unknown sender sending 287 files is one fact.
            unknown.setdefault(sender_of(row).key, []).append(row)
            continue
        stage = row.stage if row.status in _FAILED or not docs else docs[0].stage
        failed.setdefault((row.partner_id, stage or "unknown"), []).append((row, docs))
    for (partner_id, reason), rows in sorted(held.items()):
        key = "draft" if reason == lifecycle.DRAFT_REASON else "suspended"
        out.append(Condition(
            "quarantine", partner_id, f"quarantine:{key}:{partner_id}",
            f"{len(rows)} file(s) from {partner_id} kept back: {reason}",
            {"stage": lifecycle.STAGE, "reason": reason, "files": len(rows),
             "transmission_ids": [r.id for r in rows[-MAX_LISTED:]],
             "latest": _iso(rows[-1].received_at)}))
    out += [_quarantined(rows) for _key, rows in sorted(unknown.items())]
    out += [_failures(partner_id, stage, rows)
            for (partner_id, stage), rows in sorted(failed.items(), key=lambda x: (
                x[0][0] or "", x[0][1]))]
    return out


def _failures(partner_id: str | None, stage: str,
              rows: list[tuple[TransmissionRow, list[tracking.FailedDocument]]]) -> Condition:
    """A partner's failed files (oldest first) at one stage as one condition: how many, when
    the first and last came, and the latest one's evidence (``_failure``)."""
    latest = _failure(*rows[-1])
    if len(rows) == 1:
        summary = latest.summary
    else:
        who = f" from {partner_id}" if partner_id else ""
        summary = (f"{len(rows)} file(s){who} failed at {stage}; latest: "
                   f"{_short(latest.detail['reason'], 200)}")
    first, last = rows[0][0], rows[-1][0]
    detail = dict(latest.detail, files=len(rows), first_received=_iso(first.received_at),
                  last_received=_iso(last.received_at),
                  transmission_ids=[r.id for r, _docs in rows[-MAX_LISTED:]],
                  filenames=[r.filename for r, _docs in rows[-MAX_LISTED:] if r.filename])
    return Condition("failure", partner_id, f"failure:{partner_id or '-'}:{stage}", summary,
                     detail, reopen_after=aware(last.received_at))


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """Who sent a quarantined file, as far as its reason and channel tell: ``key`` names it
    in an alert's key and in ``/quarantine?sender=`` ("unb:14:5499999000009",
    "email:orders@x.example", "phone:+33612345678", "channel:sftp-acme"); ``label`` reads."""

    key: str
    label: str
    adoptable: bool = False


# Reasons that name no sender core.senders reads, grouped by what they do name.
_CLAIMED = re.compile(r"its sender (\S+) is declared by another partner's profile")
_DISABLED = re.compile(r"^partner (\S+) is disabled")


def sender_of(row: TransmissionRow) -> SenderIdentity:
    """The sender of quarantined ``row``, as ``core.senders`` reads it from the reason (the
    UNB id and qualifier, a scheme's id such as GLN or phone, the mail's From, a channel's
    partner without profile): a key ``/quarantine?sender=`` opens (``adoptable``). Else
    what the reason names, or the channel it came through (an SFTP account or a folder is
    one channel of its own)."""
    found = senders_in(row.reason)
    if found:
        return SenderIdentity(found[0].key, found[0].label, adoptable=True)
    reason = row.reason or ""
    if m := _CLAIMED.search(reason):
        return SenderIdentity(f"claimed:{row.channel}:{m.group(1)}",
                              f"{m.group(1)} on channel {row.channel}")
    if m := _DISABLED.search(reason):
        return SenderIdentity(f"disabled:{m.group(1)}", f"disabled partner {m.group(1)}")
    return SenderIdentity(f"channel:{row.channel}", f"on channel {row.channel}")


def _quarantined(rows: list[TransmissionRow]) -> Condition:
    """One unknown sender's quarantined files (oldest first) as one condition."""
    sender = sender_of(rows[0])
    last = rows[-1]
    partners = {r.partner_id for r in rows}
    partner_id = partners.pop() if len(partners) == 1 else None
    summary = (f"{len(rows)} file(s) from unknown sender {sender.label} quarantined: "
               f"{_short(last.reason, 200)}")
    return Condition(
        "quarantine", partner_id, f"quarantine:sender:{sender.key}", summary,
        {"sender": sender.key, "sender_label": sender.label, "adoptable": sender.adoptable,
         "files": len(rows),
         "first_received": _iso(rows[0].received_at), "last_received": _iso(last.received_at),
         "stage": last.stage, "reason": last.reason,
         "channels": sorted({r.channel for r in rows}),
         "transmission_ids": [r.id for r in rows[-MAX_LISTED:]],
         "filenames": [r.filename for r in rows[-MAX_LISTED:] if r.filename]},
        reopen_after=aware(last.received_at))


_FAILED = (TransmissionStatus.FAILED, TransmissionStatus.QUARANTINED)


def _failure(row: TransmissionRow, docs: list[tracking.FailedDocument]) -> Condition:
    quarantined = row.status == TransmissionStatus.QUARANTINED
    kind = "quarantine" if quarantined else "failure"
    reason = row.reason
    stage = row.stage
    if row.status not in _FAILED and docs:
        stage, reason = docs[0].stage, docs[0].reason
    where = f"transmission {row.id}" + (f" ({row.filename})" if row.filename else "")
    who = f" from {row.partner_id}" if row.partner_id else ""
    if quarantined:
        summary = f"{where}{who} quarantined: {_short(reason)}"
    elif row.status == TransmissionStatus.FAILED:
        summary = f"{where}{who} failed at {stage}: {_short(reason)}"
    else:
        summary = (f"{len(docs)} document(s) of {where}{who} failed at {stage}: "
                   f"{_short(reason)}")
    detail = {
        "transmission_id": row.id, "status": row.status, "channel": row.channel,
        "filename": row.filename, "received_at": _iso(row.received_at), "stage": stage,
        "reason": reason, "position": position_in(reason), "reprocess_of": row.reprocess_of,
        "failed_documents": [
            {"document_id": x.id, "doc_type": x.doc_type, "business_number": x.business_number,
             "message_ref": x.message_ref, "stage": x.stage, "reason": x.reason,
             "position": position_in(x.reason)} for x in docs[:MAX_LISTED]],
    }
    return Condition(kind, row.partner_id, f"{kind}:{row.id}", summary, detail)


failures = Rule("failures", ("failure", "quarantine"), _check_failures)


# -- untransmitted ----------------------------------------------------------------------

def _check_untransmitted(ctx: TrackerContext) -> list[Condition]:
    out = []
    for partner_id, first in tracking.outbox_oldest_by_partner(ctx.store):
        minutes = ctx.rules_for(partner_id).outbox_minutes or 0
        limit = ctx.now - dt.timedelta(minutes=minutes)
        if minutes <= 0 or first > limit:
            continue
        waiting = tracking.waiting_in_outbox(ctx.store, partner_id, limit)
        last_error = next((w.last_error for w in reversed(waiting) if w.last_error), None)
        summary = (f"{len(waiting)} document(s) from {partner_id} waiting in the outbox "
                   f"for more than {minutes} min (oldest since {_hm(first)})")
        if last_error:
            summary += f"; last error: {_short(last_error, 120)}"
        out.append(Condition("untransmitted", partner_id, f"untransmitted:{partner_id}",
                             summary, {
                                 "count": len(waiting), "oldest": _iso(first),
                                 "outbox_minutes": minutes, "last_error": last_error,
                                 "documents": [_doc_ref(w) for w in waiting[:MAX_LISTED]]}))
    by_partner: dict[str, list[tracking.UnroutableDocument]] = defaultdict(list)
    for r in tracking.unroutable_documents(ctx.store):
        by_partner[r.partner_id].append(r)
    for partner_id, docs in sorted(by_partner.items()):
        key = f"unroutable:{partner_id}"
        # Unroutable documents stay so; once an operator has resolved the alert, only those
        # returned afterwards make it again.
        after = ctx.alerts.operator_resolved_at(key)
        docs = [r for r in docs if after is None or r.created_at > after]
        if not docs:
            continue
        out.append(Condition("unroutable", partner_id, key,
                             f"{len(docs)} document(s) from {partner_id} returned by the broker "
                             f"as unroutable (no queue bound for their routing key)",
                             {"count": len(docs), "oldest": _iso(docs[0].created_at),
                              "documents": [_doc_ref(r) for r in docs[:MAX_LISTED]]}))
    return out


untransmitted = Rule("untransmitted", ("untransmitted", "unroutable"), _check_untransmitted)


# -- ERP acknowledgements ---------------------------------------------------------------

def erp_sla_minutes(rules: TrackerRules, doc_type: str) -> int:
    """Minutes the ERP has to acknowledge a ``doc_type`` document (0: not expected)."""
    table = rules.erp_ack_minutes or {}
    return int(table.get(doc_type, table.get("*", 0)) or 0)


def _erp_rows(ctx: TrackerContext, prefix: str,
             query: Callable[[Store, dt.datetime, list[str]], list[tracking.ErpDocument]],
             ) -> list[tracking.ErpDocument]:
    """What ``query`` finds within the look-back, and the documents of the alerts of
    ``prefix`` still active, by time of publication."""
    ids = [k.split(":", 1)[1] for k in ctx.active(prefix)]
    rows = query(ctx.store, ctx.now - LOOKBACK["erp"], ids)
    return sorted(rows, key=lambda r: (r.published_at, r.id))


def _check_erp_overdue(ctx: TrackerContext) -> list[Condition]:
    rows = _erp_rows(ctx, "erp-overdue:", tracking.unacknowledged_documents)
    out = []
    for r in rows:
        sla = erp_sla_minutes(ctx.rules_for(r.partner_id), r.doc_type)
        published = r.published_at
        if sla <= 0 or published is None or ctx.now - published < dt.timedelta(minutes=sla):
            continue
        waited = int((ctx.now - published).total_seconds() // 60)
        out.append(Condition(
            "erp-overdue", r.partner_id, f"erp-overdue:{r.id}",
            f"{_doc_name(r)} published {_hm(published)}, no ERP acknowledgement after "
            f"{waited} min (SLA {sla} min)",
            {**_erp_detail(r), "sla_minutes": sla, "waiting_minutes": waited}))
    return out


def _check_erp_rejected(ctx: TrackerContext) -> list[Condition]:
    rows = _erp_rows(ctx, "erp-rejected:", tracking.erp_rejected_documents)
    return [Condition("erp-rejected", r.partner_id, f"erp-rejected:{r.id}",
                      f"{_doc_name(r)} rejected by the ERP: {_short(r.erp_reason or 'no reason given')}",
                      _erp_detail(r)) for r in rows]


def _erp_detail(r: tracking.ErpDocument) -> dict[str, Any]:
    return {"document_id": r.id, "doc_type": r.doc_type, "business_number": r.business_number,
            "message_id": r.message_id, "transmission_id": r.transmission_id,
            "filename": r.filename, "interchange_ref": r.interchange_ref,
            "published_at": _iso(r.published_at), "erp_status": r.erp_status,
            "erp_at": _iso(r.erp_at), "erp_reason": r.erp_reason}


erp_overdue = Rule("erp_overdue", ("erp-overdue",), _check_erp_overdue)
erp_rejected = Rule("erp_rejected", ("erp-rejected",), _check_erp_rejected)


# -- control-reference gaps -------------------------------------------------------------

def find_gaps(refs: Iterable[str], window: int) -> list[tuple[str, str, list[str]]]:
    """Gaps among control references: for consecutive numeric references a < b with
    1 < b - a <= ``window``, (a, b, the missing references between). Larger jumps are
    restarts or wrap-arounds; references that are not numbers are ignored. Missing
    references keep the zero padding of ``b``."""
    numbers: dict[int, str] = {}
    for ref in refs:
        ref = ref.strip()
        if ref.isdigit() and ref.isascii():
            numbers.setdefault(int(ref), ref)
    ordered = sorted(numbers)
    out = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        if 1 < b - a <= window:
            width = len(numbers[b]) if numbers[b].startswith("0") else 0
            out.append((numbers[a], numbers[b],
                        [str(n).zfill(width) for n in range(a + 1, b)]))
    return out


def describe_gap(received: str, missing: Sequence[str]) -> str:
    """"received 1045 while expecting 1043: 1043 and 1044 missing"."""
    if len(missing) == 1:
        what = f"{missing[0]} missing"
    elif len(missing) == 2:
        what = f"{missing[0]} and {missing[1]} missing"
    else:
        what = f"{missing[0]} to {missing[-1]} missing ({len(missing)})"
    return f"received {received} while expecting {missing[0]}: {what}"


def _gap_span(missing: Sequence[str]) -> str:
    first, last = int(missing[0]), int(missing[-1])
    return str(first) if first == last else f"{first}-{last}"


def _check_gaps(ctx: TrackerContext) -> list[Condition]:
    since = ctx.now - LOOKBACK["gaps"]
    rows = tracking.interchanges_since(ctx.store, since)
    msgs = tracking.messages_since(ctx.store, since)
    by_partner: dict[str, list[tracking.InterchangeSeen]] = defaultdict(list)
    for r in rows:
        by_partner[r.partner_id].append(r)
    out: dict[str, Condition] = {}
    for partner_id, refs in sorted(by_partner.items()):
        rules = ctx.rules_for(partner_id)
        if not rules.gaps:
            continue
        seen = {r.control_ref.strip(): r for r in refs}
        for a, b, missing in find_gaps(seen, rules.gap_window or 0):
            key = f"gap:{partner_id}:{_gap_span(missing)}"
            after, got = seen[a], seen[b]
            out[key] = Condition("gap", partner_id, key,
                                 f"interchanges from {partner_id}: {describe_gap(b, missing)}",
                                 {"level": "interchange", "after": a, "received": b,
                                  "after_transmission": after.transmission_id,
                                  "received_transmission": got.transmission_id,
                                  "received_at": _iso(got.received_at),
                                  "missing": missing[:100], "count": len(missing)})
    # Gaps still open whose lower neighbour left the look-back: still a gap while none of
    # the missing references has come.
    for key, alert in ctx.active("gap:").items():
        if key in out or alert.detail.get("level") != "interchange":
            continue
        missing = list(alert.detail.get("missing") or [])
        if missing and not _any_interchange(ctx, alert.partner_id, missing):
            out[key] = Condition("gap", alert.partner_id, key, alert.summary, alert.detail)
    groups: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for m in msgs:
        groups[(m.partner_id, m.transmission_id, m.interchange_ref)].add(m.message_ref)
    for (partner_id, tid, icref), message_refs in sorted(groups.items()):
        rules = ctx.rules_for(partner_id)
        if not rules.message_gaps:
            continue
        for _a, b, missing in find_gaps(message_refs, rules.gap_window or 0):
            key = f"message-gap:{partner_id}:{icref}:{_gap_span(missing)}"
            out[key] = Condition("gap", partner_id, key,
                                 f"messages of interchange {icref} from {partner_id}: "
                                 f"{describe_gap(b, missing)}",
                                 {"level": "message", "interchange_ref": icref,
                                  "transmission_id": tid, "received": b,
                                  "missing": missing[:100], "count": len(missing)})
    return list(out.values())


def _any_interchange(ctx: TrackerContext, partner_id: str | None, refs: list[str]) -> bool:
    variants = {v for r in refs for v in (r, r.lstrip("0") or "0")}
    return tracking.interchange_received(ctx.store, partner_id, sorted(variants))


gaps = Rule("gaps", ("gap",), _check_gaps)


# -- silence and volume -----------------------------------------------------------------

def _last_received(ctx: TrackerContext, partner_id: str, doc_type: str) -> dt.datetime | None:
    return tracking.last_received(ctx.store, partner_id, doc_type)


def _check_silence(ctx: TrackerContext) -> list[Condition]:
    cal = ctx.calendar
    first = ctx.first_received_at()
    if first is None:
        return []  # the gateway has received nothing yet: it cannot tell silence
    today = cal.local_date(ctx.now)
    lookback_days = LOOKBACK["silence"].days
    out = []
    for partner in ctx.partners:
        if not partner.enabled:
            continue
        for cadence in ctx.rules_for(partner.id).cadence or []:
            prefix = f"silence:{partner.id}:{cadence.doc_type}:"
            days = set(cal.days_back(today, lookback_days))
            for key in ctx.active(prefix):
                with contextlib.suppress(ValueError):
                    days.add(dt.date.fromisoformat(key[len(prefix):]))
            last = _last_received(ctx, partner.id, cadence.doc_type)
            for day in sorted(days):
                deadline = cal.at(day, cadence.before)
                start, _end = cal.day_bounds(day)
                if (not cal.is_business_day(day, cadence.days) or deadline > ctx.now
                        or first > deadline):
                    continue
                # Silent that day before the deadline, and nothing since: an order that
                # arrives late clears it; one that never comes keeps it open.
                if last is not None and last >= start:
                    continue
                out.append(Condition(
                    "silence", partner.id, f"{prefix}{day.isoformat()}",
                    f"no {cadence.doc_type} from {partner.id} on {day:%a %Y-%m-%d} before "
                    f"{cadence.before} ({cal.tz.key})",
                    {"date": day.isoformat(), "doc_type": cadence.doc_type,
                     "before": cadence.before, "deadline": _iso(deadline),
                     "timezone": cal.tz.key, "last_received_at": _iso(last)}))
    return out


def _count_documents(ctx: TrackerContext, partner_id: str, day: dt.date) -> int:
    start, end = ctx.calendar.day_bounds(day)
    return tracking.count_documents(ctx.store, partner_id, start, end)


def _check_volume_drop(ctx: TrackerContext) -> list[Condition]:
    cal = ctx.calendar
    first = ctx.first_received_at()
    if first is None:
        return []
    day = cal.local_date(ctx.now) - dt.timedelta(days=1)  # the last complete local day
    if cal.is_holiday(day):
        return []
    started = cal.local_date(first)  # that day is partial: it does not count
    out = []
    for partner in ctx.partners:
        rules = ctx.rules_for(partner.id)
        if not partner.enabled or not rules.volume_drop or not rules.volume_weeks:
            continue
        before = [day - dt.timedelta(weeks=w) for w in range(1, rules.volume_weeks + 1)]
        before = [b for b in before if b > started and not cal.is_holiday(b)]
        if not before:
            continue
        counts = [_count_documents(ctx, partner.id, b) for b in before]
        average = sum(counts) / len(counts)
        if average < (rules.volume_min or 1):
            continue
        count = _count_documents(ctx, partner.id, day)
        if count >= rules.volume_drop * average:
            continue
        out.append(Condition(
            "volume-drop", partner.id, f"volume-drop:{partner.id}:{day.isoformat()}",
            f"{count} document(s) from {partner.id} on {day:%a %Y-%m-%d}, against "
            f"{average:.1f} on average on the previous {len(counts)} {day:%A}s",
            {"date": day.isoformat(), "count": count, "average": round(average, 2),
             "weeks": {b.isoformat(): c for b, c in zip(before, counts, strict=True)},
             "threshold": rules.volume_drop}))
    return out


silence = Rule("silence", ("silence",), _check_silence)
volume_drop = Rule("volume_drop", ("volume-drop",), _check_volume_drop)


# -- duplicates -------------------------------------------------------------------------

#: Conflicts have their own alert (kind "conflict"); rejected ones were never received.
#: Documents we send (OUTBOUND) are no partner's repeats.
_NOT_COUNTED = (DocumentStatus.FAILED, DocumentStatus.UNSUPPORTED, DocumentStatus.HELD,
                DocumentStatus.CONFLICT, DocumentStatus.REJECTED, DocumentStatus.OUTBOUND)


def _check_duplicates(ctx: TrackerContext) -> list[Condition]:
    windows = [ctx.rules_for(p.id).duplicate_window_days or 0 for p in ctx.partners]
    widest = max([ctx.rules_for(None).duplicate_window_days or 0, *windows])
    since = ctx.now - dt.timedelta(days=widest)
    out = []
    for partner_id, doc_type, number in tracking.reused_numbers(ctx.store, since, _NOT_COUNTED):
        rules = ctx.rules_for(partner_id)
        if rules.duplicate_numbers == "accept":
            continue
        window = dt.timedelta(days=rules.duplicate_window_days or 0)
        docs = tracking.numbered_documents(ctx.store, partner_id, doc_type, number,
                                           since=since, within=ctx.now - window,
                                           excluded=_NOT_COUNTED)
        if len({r.message_id for r in docs}) < 2:
            continue
        tids = list(dict.fromkeys(r.transmission_id for r in docs))
        out.append(Condition(
            "duplicate", partner_id, f"duplicate:{partner_id}:{doc_type}:{number}",
            f"{doc_type} number {number} from {partner_id} received {len(docs)} times "
            f"within {rules.duplicate_window_days} days (transmissions "
            f"{', '.join(tids[:5])}; policy {rules.duplicate_numbers})",
            {"doc_type": doc_type, "business_number": number,
             "policy": rules.duplicate_numbers, "transmissions": [
                 {"transmission_id": r.transmission_id, "document_id": r.id,
                  "message_id": r.message_id, "status": r.status, "filename": r.filename,
                  "interchange_ref": r.interchange_ref,
                  "received_at": _iso(r.received_at)} for r in docs[:MAX_LISTED]]}))
    out += _interchange_duplicates(ctx)
    return out


def _interchange_duplicates(ctx: TrackerContext) -> list[Condition]:
    """The same interchange reference (UNB 0020) twice from a partner within its EDIFACT
    ``duplicate_window_days`` (its ``duplicate_interchange`` policy; a reprocessing attempt
    replays its original and is no duplicate of it)."""
    policies = {p.id: p.edifact for p in ctx.partners}
    widest = max([p.duplicate_window_days for p in policies.values()], default=0)
    if not widest:
        return []
    groups = tracking.reused_interchange_refs(ctx.store, ctx.now - dt.timedelta(days=widest))
    out = []
    for partner_id, ref in groups:
        policy = policies.get(partner_id)
        if policy is None or policy.duplicate_interchange == "accept":
            continue
        rows = tracking.interchange_receipts(
            ctx.store, partner_id, ref, ctx.now - dt.timedelta(days=policy.duplicate_window_days))
        originals = {r.reprocess_of or r.transmission_id for r in rows}
        if len(originals) < 2:
            continue
        out.append(Condition(
            "duplicate", partner_id, f"duplicate:{partner_id}:interchange:{ref}",
            f"interchange reference {ref} from {partner_id} received {len(rows)} times "
            f"within {policy.duplicate_window_days} days (policy "
            f"{policy.duplicate_interchange})",
            {"interchange_ref": ref, "policy": policy.duplicate_interchange, "transmissions": [
                {"transmission_id": r.transmission_id, "status": r.status,
                 "filename": r.filename, "received_at": _iso(r.received_at)}
                for r in rows[:MAX_LISTED]]}))
    return out


duplicates = Rule("duplicates", ("duplicate",), _check_duplicates)


def _check_conflicts(ctx: TrackerContext) -> list[Condition]:
    """One alert per document held as CONFLICT (its number received before with other
    content), with what differs; it resolves when an operator releases or rejects it."""
    from gateway.store.conflicts import ConflictDesk

    out = []
    for c in ConflictDesk(ctx.store).list(limit=1000):
        d = c.document
        earlier = (f" (transmission {c.earlier.transmission_id})" if c.earlier else "")
        out.append(Condition(
            "conflict", d.partner_id, f"conflict:{d.id}",
            f"{d.doc_type} {d.business_number} from {d.partner_id} differs from the one "
            f"received before{earlier}: {c.comparison.summary()}; held, release or reject "
            f"it (edigw conflicts, or the console's Conflicts page)",
            {"document_id": d.id, "transmission_id": d.transmission_id,
             "doc_type": d.doc_type, "business_number": d.business_number,
             "conflict_of": d.conflict_of, **c.comparison.as_dict()}))
    return out


conflicts = Rule("conflicts", ("conflict",), _check_conflicts)


# -- channels and certificates ----------------------------------------------------------

def _check_channels(ctx: TrackerContext) -> list[Condition]:
    out = []
    for r in ChannelRecords(ctx.store).health():
        limit = ctx.rules_for(r.partner_id).channel_failures or 0
        if limit <= 0 or r.consecutive_failures < limit:
            continue
        out.append(Condition(
            "channel", r.partner_id, f"channel:{r.channel}",
            f"channel {r.channel} failed {r.consecutive_failures} times in a row: "
            f"{_short(r.last_error or 'no error recorded', 200)}",
            {"channel": r.channel, "kind": r.kind,
             "consecutive_failures": r.consecutive_failures, "last_error": r.last_error,
             "last_attempt_at": _iso(r.last_attempt_at),
             "last_success_at": _iso(r.last_success_at)}))
    # Imported here: the tracker reads what the AS2 room recorded, nothing else of it.
    from gateway.store.certificates import certificate_statuses

    for c in certificate_statuses(ctx.store, ctx.certificate_warning_days, ctx.now):
        if c.healthy:
            continue
        partner_id = None if c.owner == "own" else c.owner
        when = f" (not after {c.not_after:%Y-%m-%d})" if c.not_after else ""
        out.append(Condition(
            "certificate", partner_id, f"certificate:{c.id}",
            f"certificate {c.id} {c.state}{when}: {c.detail or c.subject or ''}".rstrip(": "),
            {"certificate_id": c.id, "owner": c.owner, "purpose": c.purpose,
             "state": c.state, "subject": c.subject, "not_after": _iso(c.not_after),
             "days_left": c.days_left, "detail": c.detail}))
    return out


channels = Rule("channels", ("channel", "certificate"), _check_channels)


# -- processing stalled -------------------------------------------------------------------

def _check_processing_stalled(ctx: TrackerContext) -> list[Condition]:
    """A transmission has waited RECEIVED longer than ``stalled_after`` and no transmission
    was processed meanwhile: processing is not moving (a dead worker, a store that stopped
    answering it). Gone as soon as processing moves again."""
    limit = ctx.now - dt.timedelta(seconds=ctx.stalled_after)
    stall = tracking.stalled_processing(ctx.store, limit)
    if stall is None:
        return []
    last = stall.last_processed
    return [Condition(
        "processing-stalled", None, "processing-stalled",
        f"processing stalled: {stall.waiting} transmission(s) waiting RECEIVED, the oldest "
        f"since {_hm(stall.oldest)}; nothing processed since {_hm(last) if last else 'start'}",
        {"waiting": stall.waiting, "oldest": _iso(stall.oldest), "last_processed": _iso(last),
         "stalled_after_s": ctx.stalled_after})]


processing_stalled = Rule("processing_stalled", ("processing-stalled",),
                          _check_processing_stalled)

# -- outbound: documents we send ----------------------------------------------------------

def _delivery_minutes(ctx: TrackerContext, partner_id: str | None) -> int:
    partner = ctx.partners.get(partner_id) if partner_id else None
    return partner.outbound.delivery_minutes if partner is not None else DELIVERY_MINUTES


def _sent_ref(r: tracking.OutboundDelivery) -> dict[str, Any]:
    return {"transmission_id": r.transmission_id, "doc_type": r.doc_type,
            "business_number": r.business_number, "erp_message": r.channel_ref,
            "status": r.status,
            "control_ref": r.control_ref, "channel": r.channel, "attempts": r.attempts,
            "last_error": r.last_error, "rendered_at": _iso(r.rendered_at),
            "sent_at": _iso(r.sent_at), "next_attempt_at": _iso(r.next_attempt_at),
            "stage": r.stage, "reason": r.reason}


def _sent_name(r: tracking.OutboundDelivery) -> str:
    """"invoice INV-1"; refused before it was read: "the ERP's message m-17"."""
    if r.business_number:
        return f"{r.doc_type or 'document'} {r.business_number}"
    return f"the ERP's message {r.channel_ref or r.filename or r.transmission_id}"


def _check_delivery_unconfirmed(ctx: TrackerContext) -> list[Condition]:
    """Documents we send not confirmed delivered within the partner's
    ``outbound.delivery_minutes`` after they were rendered: one alert per partner, gone
    when every one of them is delivered (or failed: then ``outbound-failed`` tells)."""
    late: dict[str | None, list[tracking.OutboundDelivery]] = defaultdict(list)
    for r in tracking.undelivered_outbound(ctx.store):
        limit = dt.timedelta(minutes=_delivery_minutes(ctx, r.partner_id))
        if ctx.now - (r.rendered_at or r.received_at) >= limit:
            late[r.partner_id].append(r)
    out = []
    for partner_id, rows in sorted(late.items(), key=lambda kv: kv[0] or ""):
        minutes = _delivery_minutes(ctx, partner_id)
        first = rows[0]
        waiting = [r for r in rows if r.status == TransmissionStatus.SENT]
        retrying = [r for r in rows if r.status != TransmissionStatus.SENT]
        parts = []
        if waiting:
            parts.append(f"{len(waiting)} sent, awaiting the partner's receipt")
        if retrying:
            last = next((r.last_error for r in reversed(retrying) if r.last_error), None)
            parts.append(f"{len(retrying)} not delivered yet"
                         + (f" (last error: {_short(last, 120)})" if last else ""))
        out.append(Condition(
            "delivery-unconfirmed", partner_id, f"delivery-unconfirmed:{partner_id or '-'}",
            f"{len(rows)} document(s) to {partner_id or 'an unknown partner'} not confirmed "
            f"delivered within {minutes} min of rendering (oldest {_sent_name(first)} since "
            f"{_hm(first.rendered_at)}): " + "; ".join(parts),
            {"count": len(rows), "delivery_minutes": minutes,
             "oldest": _iso(first.rendered_at), "awaiting_receipt": len(waiting),
             "not_delivered": len(retrying),
             "documents": [_sent_ref(r) for r in rows[:MAX_LISTED]]}))
    return out


def _reason_group(reason: str | None) -> str:
    """A failure's reason with its numbers and quoted values masked: failures for the same
    cause (a refused value, a channel down) are one alert whatever document they hit."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason or "no reason recorded")
    text = re.sub(r"\d+", "#", text)
    return " ".join(text.split())[:200]


def _check_outbound_failed(ctx: TrackerContext) -> list[Condition]:
    """Documents we send that FAILED (refused when the ERP sent them, delivery given up, a
    negative receipt), grouped by partner, stage and cause: 300 refused for the same
    reason are one alert with their count. A resend that went clears a document; once an
    operator resolved the alert, only failures after that make it again."""
    active = ctx.active("outbound-failed:")
    since = ctx.now - LOOKBACK["outbound"]
    if active:
        since = min(since, min(a.opened_at for a in active.values()) - LOOKBACK["outbound"])
    groups: dict[str, list[tracking.OutboundDelivery]] = defaultdict(list)
    for r in tracking.failed_outbound(ctx.store, since):
        cause = _reason_group(r.reason)
        digest = hashlib.sha1(cause.encode(), usedforsecurity=False).hexdigest()[:10]
        groups[f"outbound-failed:{r.partner_id or '-'}:{r.stage or '-'}:{digest}"].append(r)
    out = []
    for key, rows in sorted(groups.items()):
        after = ctx.alerts.operator_resolved_at(key)
        rows = [r for r in rows if after is None or r.updated_at > after]
        if not rows:
            continue
        first, last = rows[0], rows[-1]
        partner_id = first.partner_id
        what = (_sent_name(first) if len(rows) == 1
                else f"{len(rows)} documents (latest: {_sent_name(last)})")
        out.append(Condition(
            "outbound-failed", partner_id, key,
            f"{what} to {partner_id or 'an unknown partner'} failed at {first.stage}: "
            f"{_short(last.reason)}",
            {"count": len(rows), "stage": first.stage, "reason": last.reason,
             "cause": _reason_group(last.reason), "first_failed_at": _iso(first.updated_at),
             "last_failed_at": _iso(last.updated_at),
             "documents": [_sent_ref(r) for r in rows[-MAX_LISTED:]]}))
    return out


def _check_order_response_missing(ctx: TrackerContext) -> list[Condition]:
    """Orders the ERP accepted or rejected for a partner whose order responses go out
    automatically (``outbound.order_responses = "auto"``) without an order response sent
    (SENT or DELIVERED) within ``order_response_minutes``: one alert per partner."""
    auto = [p for p in ctx.partners if p.enabled and p.outbound.order_responses == "auto"]
    if not auto:
        return []
    active = ctx.active("order-response-missing:")
    since = ctx.now - LOOKBACK["erp"]
    if active:
        since = min(since, min(a.opened_at for a in active.values()) - LOOKBACK["erp"])
    shortest = min(p.outbound.order_response_minutes for p in auto)
    rows = tracking.orders_without_response(
        ctx.store, [p.id for p in auto], since, ctx.now - dt.timedelta(minutes=shortest))
    minutes = {p.id: p.outbound.order_response_minutes for p in auto}
    late: dict[str, list[tracking.AnsweredOrder]] = defaultdict(list)
    for r in rows:
        answered = r.erp_at
        if answered is not None and ctx.now - answered >= dt.timedelta(
                minutes=minutes[r.partner_id]):
            late[r.partner_id].append(r)
    out = []
    for partner_id, orders in sorted(late.items()):
        first = orders[0]
        out.append(Condition(
            "order-response-missing", partner_id, f"order-response-missing:{partner_id}",
            f"{len(orders)} order(s) from {partner_id} answered by the ERP without an order "
            f"response sent within {minutes[partner_id]} min (oldest {first.business_number}, "
            f"{first.erp_status.lower()} {_hm(first.erp_at)})",
            {"count": len(orders), "order_response_minutes": minutes[partner_id],
             "orders": [{"document_id": o.id, "business_number": o.business_number,
                         "erp_status": o.erp_status, "erp_at": _iso(o.erp_at),
                         "transmission_id": o.transmission_id}
                        for o in orders[:MAX_LISTED]]}))
    return out


delivery_unconfirmed = Rule("delivery_unconfirmed", ("delivery-unconfirmed",),
                            _check_delivery_unconfirmed)
outbound_failed = Rule("outbound_failed", ("outbound-failed",), _check_outbound_failed)
order_response_missing = Rule("order_response_missing", ("order-response-missing",),
                              _check_order_response_missing)

#: Every rule, in the order a check runs them.
ALL_RULES = [failures, untransmitted, erp_overdue, erp_rejected, gaps, silence, volume_drop,
             duplicates, conflicts, channels, processing_stalled, delivery_unconfirmed,
             outbound_failed, order_response_missing]


# -- helpers ----------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat() if value is not None else None


def _hm(value: dt.datetime | None) -> str:
    value = aware(value)
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "?"


def _short(text: str | None, size: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= size else text[:size - 1] + "…"


class _Document(Protocol):
    """What names a document in an alert's evidence."""

    @property
    def id(self) -> str: ...
    @property
    def doc_type(self) -> str: ...
    @property
    def business_number(self) -> str | None: ...


class _PartnerDocument(_Document, Protocol):
    @property
    def partner_id(self) -> str: ...


def _doc_ref(r: _Document) -> dict[str, Any]:
    return {"document_id": r.id, "doc_type": r.doc_type, "business_number": r.business_number}


def _doc_name(r: _PartnerDocument) -> str:
    number = f" {r.business_number}" if r.business_number else f" (document {r.id})"
    return f"{r.doc_type}{number} from {r.partner_id}"

