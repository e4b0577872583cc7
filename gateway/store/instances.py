"""Several ``edigw serve`` on one store: the instances, their heartbeats and their leases.

Each ``serve`` registers an instance row and beats it (``instance_beat``) every few seconds.
An instance whose heartbeat is older than ``dead_after`` (or which said it stopped) is dead:
what it had claimed (transmissions RECEIVED, outbox rows, files of a shared inbox) is taken
over by the others, and its leases expire.

A lease names work that must run on one instance at a time (an SFTP poller, a mailbox, the
tracker …). ``take_lease`` gives it to the caller when it is free, expired or already the
caller's (then it is renewed): a compare-and-set in one statement, so two instances never
both win. The holder renews it well before ``expires_at``; if it cannot (it died, or lost the
store), another takes it once expired.

Times are the gateway hosts' clocks (UTC): keep them synchronised (NTP) to well within the
lease's time to live.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.engine import StoreEngine, utcnow
from gateway.store.records import aware

#: Seconds without a heartbeat after which an instance counts as dead.
DEAD_AFTER = 20.0
#: Days after its last heartbeat an instance's row is removed.
FORGET_AFTER_DAYS = 7


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One ``serve`` that ran on this store."""

    id: str
    host: str
    pid: int
    version: str | None
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    stopped_at: dt.datetime | None

    def alive(self, now: dt.datetime, dead_after: float = DEAD_AFTER) -> bool:
        return self.stopped_at is None and (now - self.heartbeat_at).total_seconds() < dead_after


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who holds one lease, since when and until when."""

    name: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime


def live_instances(now: dt.datetime, dead_after: float = DEAD_AFTER) -> sa.Select[tuple[str]]:
    """The ids of the instances alive at ``now`` (a subquery for claims)."""
    i = s.instances
    return sa.select(i.c.id).where(
        i.c.stopped_at.is_(None), i.c.heartbeat_at >= now - dt.timedelta(seconds=dead_after))


class InstanceRepository(StoreEngine):
    """Instances and leases."""

    def register_instance(self, instance_id: str, *, host: str, pid: int,
                          version: str | None, exclusive: bool = False) -> None:
        """A new instance, alive from now. ``exclusive``: this one holds the store alone
        (SQLite, under its file lock), so every other instance is recorded stopped and what
        they held is free at once."""
        now = utcnow()
        i = s.instances
        gone = now - dt.timedelta(days=FORGET_AFTER_DAYS)
        with self._begin() as conn:
            # Instances silent for a week are forgotten (each start adds one).
            conn.execute(i.delete().where(i.c.heartbeat_at < gone))
            if exclusive:
                conn.execute(i.update().where(i.c.stopped_at.is_(None)).values(stopped_at=now))
                conn.execute(s.leases.delete())
            conn.execute(i.insert().values(id=instance_id, host=host[:255], pid=pid,
                                           version=version, started_at=now, heartbeat_at=now,
                                           stopped_at=None))

    def instance_beat(self, instance_id: str) -> None:
        """This instance is alive (raises ``StoreError`` when the store cannot be reached)."""
        i = s.instances
        with self._begin() as conn:
            conn.execute(i.update().where(i.c.id == instance_id).values(heartbeat_at=utcnow()))

    def instance_stopped(self, instance_id: str) -> None:
        """A clean stop: the instance is dead at once and its leases are free."""
        i = s.instances
        with self._begin() as conn:
            conn.execute(i.update().where(i.c.id == instance_id).values(stopped_at=utcnow()))
            conn.execute(s.leases.delete().where(s.leases.c.holder == instance_id))

    def list_instances(self, *, stopped: bool = False) -> list[InstanceRow]:
        """The instances, newest first; the stopped ones only with ``stopped``."""
        i = s.instances
        q = sa.select(i).order_by(i.c.started_at.desc())
        if not stopped:
            q = q.where(i.c.stopped_at.is_(None))
        with self.engine.connect() as conn:
            return [InstanceRow(id=r.id, host=r.host, pid=r.pid, version=r.version,
                                started_at=aware(r.started_at),
                                heartbeat_at=aware(r.heartbeat_at),
                                stopped_at=aware(r.stopped_at)) for r in conn.execute(q)]

    def take_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl`` seconds; False when another instance
        holds it and it has not expired."""
        now = utcnow()
        until = now + dt.timedelta(seconds=ttl)
        lease = s.leases
        with self._begin() as conn:
            renewed = conn.execute(
                lease.update().where(lease.c.name == name, lease.c.holder == holder)
                .values(expires_at=until)).rowcount
            if renewed:
                return True
            taken = conn.execute(
                lease.update().where(lease.c.name == name, lease.c.expires_at < now)
                .values(holder=holder, acquired_at=now, expires_at=until)).rowcount
            if taken:
                return True
            exists = conn.execute(sa.select(lease.c.name).where(lease.c.name == name)).first()
        if exists is not None:
            return False
        try:
            with self._begin() as conn:
                conn.execute(lease.insert().values(name=name, holder=holder, acquired_at=now,
                                                   expires_at=until))
        except sa.exc.IntegrityError:
            return False  # another instance created it first
        return True

    def release_leases(self, holder: str, names: Iterable[str] | None = None) -> None:
        """Give leases up (all of the holder's without ``names``)."""
        lease = s.leases
        q = lease.delete().where(lease.c.holder == holder)
        if names is not None:
            q = q.where(lease.c.name.in_(list(names)))
        with self._begin() as conn:
            conn.execute(q)

    def list_leases(self) -> list[LeaseRow]:
        lease = s.leases
        with self.engine.connect() as conn:
            return [LeaseRow(name=r.name, holder=r.holder, acquired_at=aware(r.acquired_at),
                             expires_at=aware(r.expires_at))
                    for r in conn.execute(sa.select(lease).order_by(lease.c.name))]
