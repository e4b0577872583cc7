"""The price-list repository: which version of each price list every partner was sent and
which it holds, and the distributions and deliveries behind them.

A price list the ERP publishes once is a *parent* outbound transmission (``direction =
"out"``, no partner, ``channel_ref = "list:<list id>:<ERP ref>"``) whose archived bytes are
the full list as the ERP sent it. Each subscribed partner's copy is a *child* outbound
transmission of channel ``price-list`` with ``channel_ref = "<list id>:<parent id>:<partner
id>"`` (the whole list, or the changes since the version it holds), rendered and delivered
like any outbound document.

``price_list_holdings`` keeps, per partner and list, the version last **sent** (written when
its copy was rendered) and the version **held** (its copy DELIVERED). The held columns are
settled lazily from the children's statuses (``settle_price_list_holdings``), by whoever
needs them — the distributor before it computes a difference, the CLI and the console before
they show it — so the dispatcher, which knows nothing of price lists, needs no hook; a
delivery confirmed late (an asynchronous MDN, a CONTRL) is seen the next time anyone looks.
A version is held only when DELIVERED: a copy still SENT (a receipt may yet come, or never
will) is not, so a changes-only partner's next difference is computed against the last list
it confirmed — re-stating an item it may already have is harmless, missing one is not. The
newest version wins: a late delivery of an older version never moves the holding back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.status import TransmissionStatus
from gateway.store import schema as s
from gateway.store.engine import StoreEngine, utcnow
from gateway.store.records import TransmissionRow, aware

#: The channel of a partner's copy of a price list.
PRICE_LIST_CHANNEL = "price-list"
#: The statuses in which a partner holds the version it was sent.
HELD_STATUSES = (TransmissionStatus.DELIVERED,)


def parent_ref(list_id: str, ref: str) -> str:
    """The ``channel_ref`` of a distribution (the parent transmission)."""
    return f"list:{list_id}:{ref}"


def child_ref(list_id: str, parent_tid: str, partner_id: str) -> str:
    """The ``channel_ref`` (and intake ref) of one partner's copy."""
    return f"{list_id}:{parent_tid}:{partner_id}"


def split_child_ref(ref: str | None) -> tuple[str, str, str] | None:
    """(list id, parent id, partner id) of a copy's ``channel_ref``; None for another."""
    parts = (ref or "").split(":")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class Holding:
    """Which version of ``list_id`` a partner was last sent and which it holds."""

    partner_id: str
    list_id: str
    sent_number: str | None
    sent_sha: str | None
    sent_transmission: str | None
    sent_at: dt.datetime | None
    held_number: str | None
    held_sha: str | None
    held_transmission: str | None
    held_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Holding:
        data = dict(row._mapping)
        for key in ("sent_at", "held_at"):
            data[key] = aware(data[key])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class PriceListCopy:
    """One partner's copy of a distributed list (a child transmission)."""

    transmission_id: str
    list_id: str
    parent_id: str
    partner_id: str
    status: str
    stage: str | None
    reason: str | None
    received_at: dt.datetime
    updated_at: dt.datetime


class PriceListRepository(StoreEngine):
    """Distributions of price lists and what each partner holds."""

    # -- distributions ------------------------------------------------------------------

    def price_list_distributed(self, tid: str, *, number: str, detail: str,
                               copies: int) -> None:
        """The parent transmission's copies are recorded: PROCESSED, with ``detail``."""
        now = utcnow()
        with self._begin() as conn:
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid).values(
                status=TransmissionStatus.PROCESSED, format="json",
                standard="edigw.price-list/1", document_count=copies, stage=None,
                reason=None, updated_at=now))
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid, at=now, event="distributed",
                detail=f"price list {number}: {detail}"[:4000]))

    def price_list_event(self, tid: str, event: str, detail: str) -> None:
        """A line on a distribution's timeline (a partner with nothing new …)."""
        with self._begin() as conn:
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid, at=utcnow(), event=event[:32], detail=detail[:4000]))

    def price_list_copies(self, parent_tid: str) -> list[PriceListCopy]:
        """The partners' copies of one distribution, oldest first."""
        t = s.transmissions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(
                t.c.direction == "out", t.c.channel == PRICE_LIST_CHANNEL,
                t.c.channel_ref.contains(f":{parent_tid}:", autoescape=True))
                .order_by(t.c.id)).all()
        return [c for c in (_copy(r) for r in rows) if c is not None and c.parent_id == parent_tid]

    def price_list_distributions_to_resume(self, older_than: dt.datetime, limit: int = 100
                                           ) -> list[TransmissionRow]:
        """Distributions a crash left RECEIVED (their copies partly recorded)."""
        t = s.transmissions
        q = (sa.select(t).where(t.c.direction == "out", t.c.status == s.RECEIVED,
                                t.c.partner_id.is_(None),
                                t.c.channel_ref.startswith("list:", autoescape=True),
                                t.c.received_at < older_than)
             .order_by(t.c.received_at).limit(limit))
        with self.engine.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    def failed_price_list_copies(self, list_id: str | None = None, *,
                                 limit: int = 200) -> list[PriceListCopy]:
        """Copies that failed (not rendered, not delivered, refused), newest first."""
        t = s.transmissions
        q = sa.select(t).where(t.c.direction == "out", t.c.channel == PRICE_LIST_CHANNEL,
                               t.c.status == s.FAILED)
        if list_id is not None:
            q = q.where(t.c.channel_ref.startswith(f"{list_id}:", autoescape=True))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.id.desc()).limit(limit)).all()
        return [c for c in (_copy(r) for r in rows)
                if c is not None and (list_id is None or c.list_id == list_id)]

    # -- holdings -----------------------------------------------------------------------

    def price_list_holding(self, partner_id: str, list_id: str) -> Holding | None:
        h = s.price_list_holdings
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(h).where(h.c.partner_id == partner_id,
                                                  h.c.list_id == list_id)).first()
        return Holding.from_row(row) if row is not None else None

    def price_list_holdings(self, list_id: str | None = None) -> list[Holding]:
        h = s.price_list_holdings
        q = sa.select(h).order_by(h.c.list_id, h.c.partner_id)
        if list_id is not None:
            q = q.where(h.c.list_id == list_id)
        with self.engine.connect() as conn:
            return [Holding.from_row(r) for r in conn.execute(q)]

    def record_price_list_sent(self, partner_id: str, list_id: str, *, number: str, sha: str,
                               transmission_id: str) -> None:
        """``partner_id``'s copy of the list whose full text is archived under ``sha``
        was rendered as ``transmission_id``: the version sent."""
        h = s.price_list_holdings
        now = utcnow()
        values = dict(sent_number=number[:128], sent_sha=sha,
                      sent_transmission=transmission_id, sent_at=now)
        with self._begin() as conn:
            done = conn.execute(h.update().where(h.c.partner_id == partner_id,
                                                 h.c.list_id == list_id).values(**values))
            if not done.rowcount:
                conn.execute(h.insert().values(partner_id=partner_id, list_id=list_id,
                                               **values))

    def settle_price_list_holdings(self, *, list_id: str | None = None,
                                   partner_id: str | None = None) -> int:
        """Bring the held columns up to the copies DELIVERED since: for each partner and
        list, the newest distributed version among them (by its distribution, not by
        when the receipt came) becomes held, never an older one. Returns how many moved."""
        h, t, d = s.price_list_holdings, s.transmissions, s.documents
        q = sa.select(h)
        if list_id is not None:
            q = q.where(h.c.list_id == list_id)
        if partner_id is not None:
            q = q.where(h.c.partner_id == partner_id)
        with self.engine.connect() as conn:
            holdings = [Holding.from_row(r) for r in conn.execute(q)]
        if not holdings:
            return 0
        # Only copies newer than the oldest held one can change anything (ids sort by time).
        floor = min((x.held_transmission or "") for x in holdings)
        c = (sa.select(t.c.id, t.c.channel_ref, t.c.partner_id, t.c.updated_at)
             .where(t.c.direction == "out", t.c.channel == PRICE_LIST_CHANNEL,
                    t.c.status.in_(HELD_STATUSES), t.c.id > floor))
        if list_id is not None:
            c = c.where(t.c.channel_ref.startswith(f"{list_id}:", autoescape=True))
        if partner_id is not None:
            c = c.where(t.c.partner_id == partner_id)
        held_ids = [x.held_transmission for x in holdings if x.held_transmission]
        with self.engine.connect() as conn:
            delivered = conn.execute(c).all()
            held_refs = dict(conn.execute(sa.select(t.c.id, t.c.channel_ref)
                                          .where(t.c.id.in_(held_ids))).all()) if held_ids else {}
        # (partner, list) -> (parent id, copy id, delivered at) of the newest version.
        best: dict[tuple[str, str], tuple[str, str, dt.datetime]] = {}
        for row in delivered:
            parts = split_child_ref(row.channel_ref)
            if parts is None:
                continue
            lid, parent, pid = parts
            seen = best.get((pid, lid))
            if seen is None or parent > seen[0]:
                best[(pid, lid)] = (parent, row.id, aware(row.updated_at))
        moves: list[tuple[Holding, str, str, dt.datetime]] = []
        for x in holdings:
            found = best.get((x.partner_id, x.list_id))
            if found is None or found[1] == x.held_transmission:
                continue
            current = split_child_ref(held_refs.get(x.held_transmission or ""))
            if current is not None and current[1] >= found[0]:
                continue  # an older version delivered late: the holding stays
            moves.append((x, found[0], found[1], found[2]))
        if not moves:
            return 0
        parents = {m[1] for m in moves}
        copies = {m[2] for m in moves}
        with self._begin() as conn:
            shas = dict(conn.execute(sa.select(t.c.id, t.c.sha256)
                                     .where(t.c.id.in_(parents))).all())
            numbers = dict(conn.execute(sa.select(d.c.transmission_id, d.c.business_number)
                                        .where(d.c.transmission_id.in_(copies))).all())
            for x, parent, copy, at in moves:
                conn.execute(h.update().where(h.c.partner_id == x.partner_id,
                                              h.c.list_id == x.list_id).values(
                    held_number=(numbers.get(copy) or "")[:128] or None,
                    held_sha=shas.get(parent), held_transmission=copy, held_at=at))
        return len(moves)

    def price_list_parent_of(self, copy_tid: str) -> str | None:
        """The distribution (parent transmission) a partner's copy belongs to."""
        t = s.transmissions
        with self.engine.connect() as conn:
            ref = conn.execute(sa.select(t.c.channel_ref).where(t.c.id == copy_tid)).scalar()
        parts = split_child_ref(ref)
        return parts[1] if parts else None


def _copy(r: Any) -> PriceListCopy | None:
    parts = split_child_ref(r.channel_ref)
    if parts is None:
        return None
    return PriceListCopy(transmission_id=r.id, list_id=parts[0], parent_id=parts[1],
                         partner_id=parts[2], status=r.status, stage=r.stage, reason=r.reason,
                         received_at=aware(r.received_at), updated_at=aware(r.updated_at))


def holdings_by_key(holdings: Iterable[Holding]) -> dict[tuple[str, str], Holding]:
    """Holdings by (list id, partner id)."""
    return {(x.list_id, x.partner_id): x for x in holdings}
