"""What partners, alerts and queues look like right now: the console's dashboard, partner
pages and the metrics scrape read it here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.core import clock
from gateway.core.status import AlertState, DocumentStatus, OutboundStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.read import daily
from gateway.store.records import aware

#: Errors of the database itself (unreachable, locked …): a scrape reports them, not a 500.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError,)

_ACTIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)


def last_contact(store: Store, partner_ids: Iterable[str] | None = None,
                 channels: Iterable[str] | None = None
                 ) -> dict[str, dict[str, dt.datetime]]:
    """Per partner and channel, when the last transmission came from it (all partners, or
    those); what we send them is not their contact.

    Given both the partners and the channels, each pair is one seek at the end of
    ``ix_transmissions_partner_channel`` (a query per partner), whatever the volume;
    otherwise every matching transmission is read."""
    t = s.transmissions
    out: dict[str, dict[str, dt.datetime]] = {}
    if partner_ids is not None and channels is not None:
        names = sorted(set(channels))
        with store.engine.connect() as conn:
            for pid in sorted(set(partner_ids)):
                row = conn.execute(sa.select(*[
                    sa.select(sa.func.max(t.c.received_at))
                    .where(t.c.partner_id == pid, t.c.channel == name, t.c.direction == "in")
                    .scalar_subquery().label(f"c{i}") for i, name in enumerate(names)])).one()
                found = {name: aware(at) for name, at in zip(names, row, strict=True)
                         if at is not None}
                if found:
                    out[pid] = found
        return out
    q = (sa.select(t.c.partner_id, t.c.channel, sa.func.max(t.c.received_at).label("at"))
         .where(t.c.partner_id.is_not(None), t.c.direction == "in")
         .group_by(t.c.partner_id, t.c.channel))
    if partner_ids is not None:
        q = q.where(t.c.partner_id.in_(list(partner_ids)))
    with store.engine.connect() as conn:
        for row in conn.execute(q):
            out.setdefault(row.partner_id, {})[row.channel] = aware(row.at)
    return out


def open_alerts_by_partner(store: Store, partner_ids: Iterable[str] | None = None
                           ) -> dict[str, int]:
    """Per partner, how many of its alerts are open or acknowledged (partners with none are
    left out)."""
    a = s.alerts
    q = (sa.select(a.c.partner_id, sa.func.count().label("n"))
         .where(a.c.status.in_(_ACTIVE), a.c.partner_id.is_not(None))
         .group_by(a.c.partner_id))
    if partner_ids is not None:
        q = q.where(a.c.partner_id.in_(list(partner_ids)))
    with store.engine.connect() as conn:
        return {row.partner_id: int(row.n) for row in conn.execute(q)}


def open_alert_count(store: Store) -> int:
    """How many alerts are open (not yet acknowledged)."""
    a = s.alerts
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(a)
                                .where(a.c.status == AlertState.OPEN.value)).scalar_one())


def active_alerts_by_kind(store: Store) -> list[tuple[str, int]]:
    """(kind, how many open or acknowledged) for each kind with any, by kind."""
    a = s.alerts
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.kind, sa.func.count()).where(a.c.status.in_(_ACTIVE))
                            .group_by(a.c.kind).order_by(a.c.kind)).all()
    return [(str(kind), int(n)) for kind, n in rows]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one metrics scrape reports: transmissions by (channel, partner, status),
    (created, published) times of the documents published since the window began, queue
    depths, active alerts by (kind, status) and channels' failures in a row."""

    transmissions: list[tuple[str, str | None, str, int]]
    published: list[tuple[dt.datetime | None, dt.datetime | None]]
    outbox: int
    outbound_pending: int
    alerts: list[tuple[str, str, int]]
    channels: list[tuple[str, str, int | None]]


def snapshot(store: Store, published_since: dt.datetime) -> Snapshot:
    """The counts a metrics scrape reports (see ``Snapshot``). Transmissions by status come
    from the per-day aggregates (``gateway.store.read.daily``): a scrape reads the days that
    changed since the last, not every transmission."""
    d, a, h = s.documents, s.alerts, s.channel_health
    by_status = [(c, p, st, n) for (c, p, st), n in daily.status_totals(
        store, clock.now().astimezone(dt.UTC).date()).items()]
    with store.engine.connect() as conn:
        published = conn.execute(
            sa.select(d.c.created_at, d.c.published_at)
            .where(d.c.status == DocumentStatus.PUBLISHED.value)
            .where(d.c.published_at >= published_since)).all()
        outbox = conn.execute(sa.select(sa.func.count()).select_from(s.outbox)).scalar_one()
        outbound = conn.execute(sa.select(sa.func.count()).select_from(s.outbound)
                                .where(s.outbound.c.status == OutboundStatus.PENDING.value)
                                ).scalar_one()
        alerts = conn.execute(
            sa.select(a.c.kind, a.c.status, sa.func.count())
            .where(a.c.status.in_(_ACTIVE))
            .group_by(a.c.kind, a.c.status)).all()
        channels = conn.execute(sa.select(h.c.channel, h.c.kind,
                                          h.c.consecutive_failures)).all()
    return Snapshot(
        transmissions=[(c, p, st, int(n)) for c, p, st, n in by_status],
        published=[(aware(c), aware(p)) for c, p in published],
        outbox=int(outbox), outbound_pending=int(outbound),
        alerts=[(k, st, int(n)) for k, st, n in alerts],
        channels=[(c, k, n) for c, k, n in channels])
