"""Duplicate checks made while processing: interchange control references a partner sent
before (UNB 0020, within its window), and order or invoice numbers under the partner's
``duplicate_numbers = "reject"``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway.core import clock
from gateway.core.ports import PartnerProfile, StorePort
from gateway.core.records import Event, NewDocument
from gateway.core.status import DocumentStatus

#: Document types whose business number identifies one business document (a price list's
#: parts share theirs).
NUMBERED = ("order", "invoice")


@dataclass(slots=True)
class RefsSeen:
    """Control references already received, for the duplicate interchange check: those
    stored, and those taken by transmissions of the batch being processed, not yet
    committed ((partner, ref) -> where)."""

    store: StorePort
    batch: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Transmissions of the batch that are reprocessing attempts -> those they replay.
    replays: dict[str, set[str]] = field(default_factory=dict)

    def known(self, partner: PartnerProfile, refs: list[str], tid: str) -> dict[str, str]:
        """Of ``refs`` (in transmission ``tid``), those ``partner`` sent before -> where."""
        if partner.edifact.duplicate_interchange == "accept":
            return {}
        if not refs:
            return {}
        since = clock.now() - dt.timedelta(days=partner.edifact.duplicate_window_days)
        replayed = self.replays.get(tid, set())  # a reprocess is no duplicate of its original
        known = {ref: f"in transmission {t} on {at:%Y-%m-%d %H:%M} UTC"
                 for ref, (t, at) in self.store.interchange_refs_seen(partner.id, refs,
                                                                      since).items()
                 if t != tid and t not in replayed}
        for ref in refs:
            where = self.batch.get((partner.id, ref))
            if where and ref not in known:
                known[ref] = where
            self.batch.setdefault((partner.id, ref), f"in transmission {tid}")
        return known


def repeated_numbers(store: StorePort, partner: PartnerProfile, docs: list[NewDocument],
                     events: list[Event], policy: Callable[[], tuple[str, int]] | None
                     ) -> list[NewDocument]:
    """Under the partner's ``duplicate_numbers = "reject"`` (``policy()``: the policy and
    its window in days): an order or invoice whose number this partner sent before (in a
    document of another message id, within the window) is kept as DUPLICATE with the
    reason, and not published. Under the partner's ``on_conflict = "publish"`` its
    documents are marked so for the store."""
    if partner.on_conflict != "hold":
        docs = [d if d.status is not None else replace(d, on_conflict=partner.on_conflict)
                for d in docs]
    if policy is None:
        return docs
    rule, days = policy()
    if rule != "reject":
        return docs
    wanted = {(d.doc_type, d.business_number) for d in docs
              if d.status is None and d.business_number and d.doc_type in NUMBERED}
    if not wanted:
        return docs
    since = clock.now() - dt.timedelta(days=days)
    found = store.numbers_seen(partner.id, sorted(wanted, key=_number_order), since,
                               exclude_message_ids={d.message_id for d in docs})
    out: list[NewDocument] = []
    first_here: dict[tuple[str, str | None], str] = {}
    for d in docs:
        key = (d.doc_type, d.business_number)
        if d.status is not None or key not in wanted:
            out.append(d)
            continue
        where = found.get(key)
        if where is None and first_here.setdefault(key, d.message_id) != d.message_id:
            where = "earlier in this transmission"
        if where is None:
            out.append(d)
            continue
        reason = (f"{d.doc_type} number {d.business_number} already received {where}; "
                  "not published (partner policy duplicate_numbers = reject)")
        out.append(replace(d, status=DocumentStatus.DUPLICATE, stage="duplicate",
                           reason=reason))
        events.append(("duplicate-number", reason))
    return out


def _number_order(key: tuple[str, str | None]) -> tuple[str, str]:
    return key[0], key[1] or ""
