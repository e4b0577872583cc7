"""Price lists published once, sent to every partner subscribed to them.

The ERP publishes a price list (canonical ``edigw.price-list/1`` JSON, naming no partner)
under a list id (the routing key ``price-list.<list id>``, ``edigw send --price-list``,
the API). ``PriceListDistributor.distribute``:

1. **Receive** — the bytes are archived and recorded as a *parent* outbound transmission
   (no partner, ``channel_ref = "list:<list id>:<ERP ref>"``). The same ERP ref again
   answers from the first distribution: nothing is sent twice.
2. **Check** — JSON, an ``edigw.price-list/1``; at least one enabled partner whose
   profile subscribes to the list (``[outbound] price_lists``). Else the parent is FAILED
   (stage ``parse``, ``validate`` or ``partner``) with its reason.
3. **Copies** — each subscriber gets its copy through the outbound intake (origin
   ``price-list``, ref ``<list id>:<parent id>:<partner id>``), rendered in its own format:

   - ``price_list_mode = "full"``: the list as the ERP sent it;
   - ``price_list_mode = "changes"``: the difference from the version the partner
     **holds** (the last one whose copy was DELIVERED; see ``gateway.store.pricelists``):
     new items (action ``add``), changed items (any field but the line number: prices,
     validity, description, unit … — ``change``) and withdrawn items (in the held list, not
     in the new one — ``delete``, ``valid_to`` = the new list's ``valid_from``, else its
     ``issue_date``, else today). Added and changed items without a ``valid_from`` get that
     same effective date. Unchanged items are left out; when nothing changed nothing is
     sent (the parent's timeline says so). The difference is a valid
     ``edigw.price-list/1`` with ``function = "change"`` (EANCOM PRICAT BGM 1225 = 4: the
     message amends the list sent before, item by item through LIN 1229 — add 1, delete
     2, change 3), not ``replace`` (5), which would tell the receiver to drop what it has.
     A partner holding no version yet, or whose held list cannot be read back or has
     items that cannot be told apart, gets the whole list (and the timeline says why).

   Items are matched by ``gtin``, else ``item_code``, else ``supplier_article``, each list
   keyed once in a dict: comparing two lists is linear in their size.
   A list published in parts (``part_count`` > 1) is sent whole to every subscriber, and
   the holdings do not record it: a changes-only partner's next whole list is compared
   with the last whole list it holds.
4. **Record** — the partner's holding records the version sent (its copy rendered); the
   parent becomes PROCESSED with "distributed to N partners".

A crash during 3 leaves the parent RECEIVED: the ERP's redelivery, or ``resume``, carries
on (copies already recorded answer from their first transmission).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from gateway.channels.intake import OutboundIntake, OutboundRefused, OutboundResult
from gateway.core.canonical import PRICE_LIST_SCHEMA, PriceList, PriceListItem
from gateway.core.ids import new_id
from gateway.core.status import TransmissionStatus
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.pricelists import (
    PRICE_LIST_CHANNEL,
    Holding,
    PriceListCopy,
    child_ref,
    parent_ref,
)

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.channels.pricelists")

DOC_TYPE = "price-list"
LIST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
#: A distribution still RECEIVED after this long was interrupted: ``resume``. Generous: a
#: list of 100,000 items rendered for many partners takes minutes, and a distribution has
#: no claim column (copies already recorded are never made twice, but the work would be).
RESUME_AFTER = dt.timedelta(minutes=15)
#: The item fields that identify an item, in the order they are tried.
KEY_FIELDS = ("gtin", "item_code", "supplier_article")
#: The item fields compared between two versions (all but the line number and the action).
COMPARED = tuple(f for f in PriceListItem.model_fields if f not in ("line_number", "action"))


class DiffRefused(Exception):
    """Two versions cannot be compared item by item (the reason says why)."""


@dataclass(frozen=True, slots=True)
class Keyed:
    """A list's items by key: (raw JSON item, comparable signature)."""

    items: dict[str, tuple[dict[str, Any], tuple[Any, ...]]]


def item_key(item: dict[str, Any]) -> str | None:
    """What identifies an item across versions: its GTIN, else item code, else the
    supplier's article number."""
    for name in KEY_FIELDS:
        value = item.get(name)
        if value:
            return str(value)
    return None


def keyed(raw_items: list[dict[str, Any]], models: list[PriceListItem]) -> Keyed:
    """The items by key, once (raises DiffRefused for an item without a key or a key twice)."""
    out: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {}
    for n, (raw, model) in enumerate(zip(raw_items, models, strict=True), 1):
        key = item_key(raw)
        if key is None:
            raise DiffRefused(f"item {n} has no gtin, item_code or supplier_article")
        if key in out:
            raise DiffRefused(f"item {key} appears twice")
        out[key] = (raw, tuple(getattr(model, f) for f in COMPARED))
    return Keyed(out)


def difference(new: Keyed, held: Keyed, effective: str) -> list[dict[str, Any]]:
    """The items of ``new`` that are new (``add``) or changed (``change``) against
    ``held``, then those withdrawn (``delete``, ``valid_to = effective``), numbered."""
    out: list[dict[str, Any]] = []
    held_items = held.items
    for key, (raw, sig) in new.items.items():
        before = held_items.get(key)
        if before is not None and before[1] == sig:
            continue
        item = dict(raw, action="add" if before is None else "change")
        if not item.get("valid_from"):
            item["valid_from"] = effective
        out.append(item)
    for key, (raw, _sig) in held_items.items():
        if key not in new.items:
            out.append(dict(raw, action="delete", valid_to=effective))
    for n, item in enumerate(out, 1):
        item["line_number"] = str(n)
    return out


@dataclass(frozen=True, slots=True)
class _Parsed:
    raw: dict[str, Any]
    model: PriceList

    @property
    def whole(self) -> bool:
        return (self.model.part_count or 1) <= 1

    @property
    def effective(self) -> str:
        for name in ("valid_from", "issue_date"):
            value = self.raw.get(name)
            if value:
                return str(value)[:10]
        return dt.datetime.now(dt.UTC).date().isoformat()


def parse_price_list(data: bytes) -> _Parsed:
    """The list as the ERP sent it, validated (raises OutboundRefused)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OutboundRefused("parse", f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise OutboundRefused("parse", "not a JSON object")
    schema = raw.setdefault("schema", PRICE_LIST_SCHEMA)
    if schema != PRICE_LIST_SCHEMA:
        raise OutboundRefused("validate", f"'schema' must be {PRICE_LIST_SCHEMA}, "
                                          f"not {schema!r}")
    probe = dict(raw)
    probe.setdefault("partner", "*")  # named per copy
    probe.setdefault("message_id", "-")
    probe.setdefault("source", {"format": "erp", "standard": "edigw", "version": "1",
                                "mapping": "erp"})
    try:
        model = PriceList.model_validate(probe)
    except ValidationError as exc:
        parts = [".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
                 for e in exc.errors()[:10]]
        raise OutboundRefused("validate", "not a valid price-list: " + "; ".join(parts)) \
            from None
    return _Parsed(raw, model)


@dataclass
class PriceListDistributor:
    """Sends a published price list to its subscribers, whole or as changes."""

    store: Store
    archive: Archive
    partners_iter: Callable[[], Iterable[Partner]]
    intake: OutboundIntake
    _clock: Callable[[], dt.datetime] = field(
        default=lambda: dt.datetime.now(dt.UTC), repr=False)

    def subscribers(self, list_id: str) -> list[Partner]:
        """The enabled partners whose profile subscribes to ``list_id``, by id."""
        return sorted((p for p in self.partners_iter()
                       if p.enabled and list_id in p.outbound.price_lists),
                      key=lambda p: p.id)

    def distribute(self, data: bytes, *, list_id: str, origin: str,
                   ref: str | None = None) -> list[OutboundResult]:
        """Receive a published list and send each subscriber its copy; returns the copies'
        results (the distribution's own FAILED result when none could be made). Raises
        OutboundRefused (nothing recorded) for a list id that is not one, StoreError when
        the store or archive cannot record it (the source must keep the message)."""
        if not LIST_ID.match(list_id):
            raise OutboundRefused("validate", f"{list_id!r} is not a price list id "
                                              "(letters, digits, _ . -, at most 128)")
        cref = parent_ref(list_id, ref if ref is not None else f"once-{new_id()}")
        if ref is not None:
            seen = self.store.outbound_by_ref(origin, cref)
            if seen is not None and seen.status != TransmissionStatus.RECEIVED:
                return self._results_of(seen.id, seen.status, seen.stage, seen.reason)
            if seen is not None:  # interrupted: carry on where it stopped
                return self._distribute(seen.id, data, list_id, seen.sha256)
        sha = self.archive.put(data)
        tid = self.store.record_outbound_received(
            channel=origin, channel_ref=cref, filename=None, size=len(data), sha256=sha,
            partner_id=None, detail=f"price list {list_id}: {len(data)} bytes from {origin}"
                                    + (f" ({ref})" if ref else ""))
        return self._distribute(tid, data, list_id, sha)

    def resume(self) -> int:
        """Carry on the distributions a crash left RECEIVED; returns how many."""
        done = 0
        for row in self.store.price_list_distributions_to_resume(self._clock() - RESUME_AFTER):
            list_id = (row.channel_ref or "").split(":", 2)[1]
            try:
                data = self.archive.get(row.sha256)
            except Exception as exc:  # purged or unreadable: fail it rather than loop
                self.store.fail_outbound(row.id, stage="receive",
                                         reason=f"archived price list unreadable: {exc}")
                continue
            self._distribute(row.id, data, list_id, row.sha256)
            done += 1
        return done

    # -- the steps ----------------------------------------------------------------------

    def _distribute(self, tid: str, data: bytes, list_id: str, sha: str
                    ) -> list[OutboundResult]:
        try:
            parsed = parse_price_list(data)
        except OutboundRefused as exc:
            return self._fail(tid, exc.stage, exc.reason)
        partners = self.subscribers(list_id)
        if not partners:
            return self._fail(tid, "partner", f"no enabled partner subscribes to price list "
                                              f"{list_id!r} ([outbound] price_lists)")
        results: list[OutboundResult] = []
        held_cache: dict[str, Keyed | DiffRefused] = {}
        new_keyed: list[Keyed | DiffRefused] = []  # computed once, for the first changes partner
        unchanged: list[str] = []
        for partner in partners:
            body, why = self._copy_for(partner, parsed, list_id, sha, held_cache, new_keyed)
            if body is None:
                unchanged.append(partner.id)
                self.store.price_list_event(tid, "price-list-unchanged",
                                            f"{partner.id}: {why}")
                continue
            if why:
                self.store.price_list_event(tid, "price-list-whole", f"{partner.id}: {why}")
            result = self.intake.accept(
                body, origin=PRICE_LIST_CHANNEL, ref=child_ref(list_id, tid, partner.id),
                partner=partner.id, doc_type=DOC_TYPE,
                filename=f"{list_id}-{partner.id}.json")
            if not result.failed and parsed.whole and result.transmission_id:
                self.store.record_price_list_sent(
                    partner.id, list_id, number=parsed.model.price_list_number, sha=sha,
                    transmission_id=result.transmission_id)
            results.append(result)
        failed = [r.partner_id or "?" for r in results if r.failed]
        detail = f"distributed to {len(results)} partner{'s' if len(results) != 1 else ''}"
        if unchanged:
            detail += f"; nothing changed for {', '.join(unchanged)}"
        if failed:
            detail += f"; failed for {', '.join(failed)}"
        self.store.price_list_distributed(tid, number=parsed.model.price_list_number,
                                          detail=detail, copies=len(results))
        log.info("price_list_distributed", transmission_id=tid, list_id=list_id,
                 copies=len(results), unchanged=len(unchanged), failed=len(failed))
        return results

    def _copy_for(self, partner: Partner, parsed: _Parsed, list_id: str, sha: str,
                  held_cache: dict[str, Keyed | DiffRefused],
                  new_keyed: list[Keyed | DiffRefused]) -> tuple[bytes | None, str]:
        """The bytes for ``partner`` (None: nothing changed) and why it gets the whole
        list when it asked for changes ("" otherwise)."""
        whole = dict(parsed.raw, partner=partner.id)
        if partner.outbound.price_list_mode != "changes":
            return _dump(whole), ""
        if not parsed.whole:
            return _dump(whole), "a list in parts is sent whole"
        self.store.settle_price_list_holdings(list_id=list_id, partner_id=partner.id)
        holding = self.store.price_list_holding(partner.id, list_id)
        if holding is None or not holding.held_sha:
            return _dump(whole), "holds no version of the list yet"
        if holding.held_sha == sha:
            return None, f"already holds this list ({holding.held_number})"
        held = held_cache.get(holding.held_sha)
        if held is None:
            held = held_cache[holding.held_sha] = self._held(holding)
        if not new_keyed:
            try:
                new_keyed.append(keyed(parsed.raw.get("items") or [], parsed.model.items))
            except DiffRefused as exc:
                new_keyed.append(exc)
        new = new_keyed[0]
        for side, value in (("the new list", new), (f"the held list {holding.held_number}",
                                                    held)):
            if isinstance(value, DiffRefused):
                return _dump(whole), f"{side} cannot be compared: {value}"
        assert isinstance(new, Keyed) and isinstance(held, Keyed)
        items = difference(new, held, parsed.effective)
        if not items:
            return None, f"nothing changed since {holding.held_number}"
        diff = {k: v for k, v in whole.items() if k != "items"}
        diff.update(function="change", items=items)
        return _dump(diff), ""

    def _held(self, holding: Holding) -> Keyed | DiffRefused:
        try:
            parsed = parse_price_list(self.archive.get(holding.held_sha or ""))
            return keyed(parsed.raw.get("items") or [], parsed.model.items)
        except DiffRefused as exc:
            return exc
        except Exception as exc:  # purged, unreadable, no longer valid
            return DiffRefused(f"unreadable ({type(exc).__name__}: {exc})")

    def _fail(self, tid: str, stage: str, reason: str) -> list[OutboundResult]:
        self.store.fail_outbound(tid, stage=stage, reason=reason)
        log.warning("price_list_refused", transmission_id=tid, stage=stage, reason=reason)
        return [OutboundResult(tid, "FAILED", None, DOC_TYPE, stage=stage, reason=reason)]

    def _results_of(self, tid: str, status: str, stage: str | None, reason: str | None
                    ) -> list[OutboundResult]:
        copies = self.store.price_list_copies(tid)
        if status == TransmissionStatus.FAILED and not copies:
            return [OutboundResult(tid, "FAILED", None, DOC_TYPE, stage=stage, reason=reason,
                                   repeat=True)]
        return [OutboundResult(c.transmission_id, c.status, c.partner_id, DOC_TYPE,
                               stage=c.stage, reason=c.reason, repeat=True) for c in copies]


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- what each partner holds (CLI, console) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    """One partner's standing on one price list."""

    list_id: str
    partner_id: str
    subscribed: bool
    enabled: bool
    mode: str | None
    holding: Holding | None
    failures: tuple[PriceListCopy, ...]

    def as_dict(self) -> dict[str, Any]:
        h = self.holding

        def at(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "list": self.list_id, "partner": self.partner_id, "subscribed": self.subscribed,
            "enabled": self.enabled, "mode": self.mode,
            "sent": None if h is None or h.sent_transmission is None else {
                "number": h.sent_number, "at": at(h.sent_at),
                "transmission_id": h.sent_transmission},
            "held": None if h is None or h.held_transmission is None else {
                "number": h.held_number, "at": at(h.held_at),
                "transmission_id": h.held_transmission},
            "failed": [{"transmission_id": f.transmission_id, "at": at(f.updated_at),
                        "stage": f.stage, "reason": f.reason, "distribution": f.parent_id}
                       for f in self.failures],
        }


def price_list_standings(store: Store, partners: Iterable[Partner],
                         list_id: str | None = None, *, failures: int = 500
                         ) -> list[Standing]:
    """Per list and partner (subscribed now, or sent a version before): the version sent,
    the version held and when, and the copies that failed (newest first) — settling the
    holdings with the deliveries confirmed since."""
    store.settle_price_list_holdings(list_id=list_id)
    holdings = {(x.list_id, x.partner_id): x for x in store.price_list_holdings(list_id)}
    failed: dict[tuple[str, str], list[PriceListCopy]] = {}
    for copy in store.failed_price_list_copies(list_id, limit=failures):
        failed.setdefault((copy.list_id, copy.partner_id), []).append(copy)
    profiles = {p.id: p for p in partners}
    keys = set(holdings) | set(failed)
    for p in profiles.values():
        keys.update((lid, p.id) for lid in p.outbound.price_lists
                    if list_id is None or lid == list_id)
    out: list[Standing] = []
    for lid, pid in sorted(keys):
        profile = profiles.get(pid)
        out.append(Standing(
            list_id=lid, partner_id=pid,
            subscribed=profile is not None and lid in profile.outbound.price_lists,
            enabled=profile is not None and profile.enabled,
            mode=profile.outbound.price_list_mode if profile is not None else None,
            holding=holdings.get((lid, pid)), failures=tuple(failed.get((lid, pid), ()))))
    return out
