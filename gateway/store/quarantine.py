"""Files quarantined because no partner profile matched their sender, and not replayed
since: grouped by the reason they were quarantined with (one sender, one reason), and the
transmissions of given reasons. Which sender a reason names is ``core.senders``; what is
done with them is ``gateway.web.adopt``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.core.status import TransmissionStatus as T
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.engine import utcnow
from gateway.store.records import aware

#: The stage ``core.identify`` quarantines an unknown sender's file at.
STAGE = "identify"


@dataclass(frozen=True, slots=True)
class ReasonGroup:
    """Quarantined files sharing one reason: how many, first and last received."""

    reason: str
    count: int
    first_at: dt.datetime
    last_at: dt.datetime


@dataclass(frozen=True, slots=True)
class HeldFile:
    """One quarantined transmission of an unknown sender."""

    id: str
    filename: str | None
    channel: str
    received_at: dt.datetime
    reason: str


def _waiting() -> list[sa.ColumnElement[bool]]:
    """Quarantined at identify, received (not sent), and no attempt made since."""
    t = s.transmissions
    replay = t.alias("replay")
    return [t.c.status == T.QUARANTINED, t.c.stage == STAGE, t.c.direction == "in",
            t.c.reason.is_not(None),
            ~sa.exists().where(replay.c.reprocess_of == t.c.id)]


def quarantine_reasons(store: Store, limit: int = 10_000) -> list[ReasonGroup]:
    """The reasons of waiting quarantined files, most recent last file first."""
    t = s.transmissions
    last = sa.func.max(t.c.received_at)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.reason, sa.func.count(), sa.func.min(t.c.received_at), last)
            .where(*_waiting()).group_by(t.c.reason).order_by(last.desc()).limit(limit)).all()
    return [ReasonGroup(str(r[0]), int(r[1]), aware(r[2]), aware(r[3])) for r in rows]


def quarantined_with(store: Store, reasons: Sequence[str], *, limit: int = 100_000
                     ) -> list[HeldFile]:
    """The waiting quarantined files quarantined with one of ``reasons``, oldest first."""
    if not reasons:
        return []
    t = s.transmissions
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.id, t.c.filename, t.c.channel, t.c.received_at, t.c.reason)
            .where(*_waiting(), t.c.reason.in_(list(reasons)))
            .order_by(t.c.received_at, t.c.id).limit(limit)).all()
    return [HeldFile(r.id, r.filename, r.channel, aware(r.received_at), r.reason) for r in rows]


def attribute(store: Store, transmission_ids: Sequence[str], partner_id: str) -> int:
    """Name ``partner_id`` as the channel's partner of waiting quarantined files that have
    none (what the mail channel does for a known From address at receive time); how many.
    Their ``updated_at`` moves: the traffic rollup (``gateway.store.traffic``) counts them
    again under that partner."""
    if not transmission_ids:
        return 0
    t = s.transmissions
    with store._begin() as conn:
        done = conn.execute(t.update().where(*_waiting(), t.c.partner_id.is_(None),
                                             t.c.id.in_(list(transmission_ids)))
                            .values(partner_id=partner_id, updated_at=utcnow()))
    return int(done.rowcount or 0)
