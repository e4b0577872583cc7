"""What retention asks of the store (``gateway.tracker.retention``): transmissions whose raw
payload may go, what still needs a payload's bytes, and recording a purge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.core.status import TransmissionStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware


@dataclass(frozen=True, slots=True)
class PurgeCandidate:
    """A transmission whose raw payload is old enough to be purged."""

    id: str
    partner_id: str | None
    received_at: dt.datetime
    sha256: str
    size: int


def purge_candidates(store: Store, partner_id: str | None, known: Sequence[str],
                     cutoff: dt.datetime, after: tuple[dt.datetime, str] | None,
                     limit: int) -> list[PurgeCandidate]:
    """Up to ``limit`` transmissions received before ``cutoff`` (and after ``after``, by
    time then id), not yet purged and not waiting RECEIVED, oldest first: those of
    ``partner_id``, or with None those of no partner in ``known``."""
    t = s.transmissions
    q = (sa.select(t.c.id, t.c.partner_id, t.c.received_at, t.c.sha256, t.c.size)
         .where(t.c.purged_at.is_(None)).where(t.c.received_at < cutoff)
         .where(t.c.status != TransmissionStatus.RECEIVED)
         .order_by(t.c.received_at, t.c.id).limit(limit))
    # A repeat of identical bytes is recorded before its sender is identified: it follows
    # the partner of the transmission it repeats.
    first = t.alias("first")
    owner = sa.func.coalesce(t.c.partner_id, sa.select(first.c.partner_id)
                             .where(first.c.id == t.c.duplicate_of).scalar_subquery())
    if partner_id is not None:
        q = q.where(owner == partner_id)
    else:  # nobody's, or a partner no profile describes any more: the defaults
        q = q.where(sa.or_(owner.is_(None), owner.not_in(list(known)) if known else sa.true()))
    if after is not None:
        q = q.where(sa.or_(t.c.received_at > after[0],
                           sa.and_(t.c.received_at == after[0], t.c.id > after[1])))
    with store.engine.connect() as conn:
        return [PurgeCandidate(r.id, r.partner_id, aware(r.received_at), r.sha256, r.size)
                for r in conn.execute(q)]


def byte_holders(store: Store, digests: Iterable[str], *, exclude: set[str],
                 chunk: int) -> dict[str, str]:
    """Digest -> something that still needs those bytes: a transmission not purged (and not
    in ``exclude``; the latest received), else ``outbound:<id>`` or ``as2:<id>``."""
    t, o, a = s.transmissions, s.outbound, s.as2_messages
    wanted = sorted(set(digests))
    found: dict[str, str] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), chunk):
            part = wanted[start:start + chunk]
            for sha, tid in conn.execute(sa.select(t.c.sha256, t.c.id)
                                         .where(t.c.sha256.in_(part))
                                         .where(t.c.purged_at.is_(None))
                                         .order_by(t.c.received_at.desc())):
                if tid not in exclude:
                    found.setdefault(sha, tid)
            for sha, oid in conn.execute(sa.select(o.c.sha256, o.c.id)
                                         .where(o.c.sha256.in_(part))):
                found.setdefault(sha, f"outbound:{oid}")
            for sha, aid in conn.execute(sa.select(a.c.mdn_archive_key, a.c.id)
                                         .where(a.c.mdn_archive_key.in_(part))):
                found.setdefault(sha, f"as2:{aid}")
    return found


def mark_purged(store: Store, details: Mapping[str, str], now: dt.datetime) -> None:
    """``purged_at`` on each transmission of ``details`` not yet marked, and a ``purged``
    event with its detail for those, in one commit."""
    t = s.transmissions
    with store._begin() as conn:
        done = set(conn.execute(
            t.update().where(t.c.id.in_(list(details))).where(t.c.purged_at.is_(None))
            .values(purged_at=now, updated_at=now).returning(t.c.id)).scalars())
        events = [dict(transmission_id=tid, at=now, event="purged", detail=detail)
                  for tid, detail in details.items() if tid in done]
        if events:
            conn.execute(s.transmission_events.insert(), events)
