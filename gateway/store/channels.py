"""What channels record beside transmissions: their health, and the remote files they leave.

``ChannelRecords`` works on a ``Store`` (same engine, same write lock). A channel calls
``ok`` after each successful round (a poll, a delivery) and ``failed`` after each failed
one; ``health`` is what ``edigw channels`` prints and what the tracker alerts on (a channel
failing repeatedly). ``remembered`` / ``remember`` serve SFTP folders whose files are left
in place (``after = "leave"``): a file is known by its path, size and modification time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, utcnow
from gateway.store.records import aware


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    channel: str
    kind: str
    partner_id: str | None
    last_attempt_at: dt.datetime | None
    last_success_at: dt.datetime | None
    consecutive_failures: int
    last_error: str | None
    detail: str | None
    updated_at: dt.datetime

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0 and self.last_success_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class ChannelRecords:
    """Channel health and remembered remote files, in the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- health -----------------------------------------------------------------------------

    def ok(self, channel: str, kind: str, *, partner_id: str | None = None,
           detail: str | None = None) -> None:
        """A round of ``channel`` succeeded: failures reset, last success now."""
        now = utcnow()
        self._upsert(channel, dict(kind=kind, partner_id=partner_id, last_attempt_at=now,
                                   last_success_at=now, consecutive_failures=0,
                                   last_error=None, detail=detail, updated_at=now))

    def failed(self, channel: str, kind: str, error: str, *,
               partner_id: str | None = None) -> int:
        """A round of ``channel`` failed; returns the consecutive failures so far."""
        now = utcnow()
        h = s.channel_health
        with self.store._begin() as conn:
            row = conn.execute(sa.select(h.c.consecutive_failures)
                               .where(h.c.channel == channel)).first()
            count = (row.consecutive_failures if row else 0) + 1
            values = dict(kind=kind, partner_id=partner_id, last_attempt_at=now,
                          consecutive_failures=count, last_error=error[:2000], updated_at=now)
            if row is None:
                conn.execute(h.insert().values(channel=channel, **values))
            else:
                conn.execute(h.update().where(h.c.channel == channel).values(**values))
        return count

    def _upsert(self, channel: str, values: dict[str, Any]) -> None:
        h = s.channel_health
        with self.store._begin() as conn:
            done = conn.execute(h.update().where(h.c.channel == channel).values(**values))
            if done.rowcount == 0:
                conn.execute(h.insert().values(channel=channel, **values))

    def health(self) -> list[ChannelHealth]:
        h = s.channel_health
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(h).order_by(h.c.channel)).all()
        return [ChannelHealth(**{**dict(r._mapping),
                                 "last_attempt_at": aware(r.last_attempt_at),
                                 "last_success_at": aware(r.last_success_at),
                                 "updated_at": aware(r.updated_at)}) for r in rows]

    def get(self, channel: str) -> ChannelHealth | None:
        return next((c for c in self.health() if c.channel == channel), None)

    # -- remote files left in place ------------------------------------------------------------

    def remembered(self, channel: str, files: Iterable[tuple[str, int, int]]
                   ) -> set[tuple[str, int, int]]:
        """Of ``(path, size, mtime)``, those already taken by ``channel``."""
        r = s.remote_files
        wanted = list(files)
        found: set[tuple[str, int, int]] = set()
        paths = sorted({p for p, _, _ in wanted})
        with self.store.engine.connect() as conn:
            for start in range(0, len(paths), 500):
                rows = conn.execute(sa.select(r.c.path, r.c.size, r.c.mtime)
                                    .where(r.c.channel == channel)
                                    .where(r.c.path.in_(paths[start:start + 500]))).all()
                found.update((row.path, row.size, row.mtime) for row in rows)
        return {f for f in wanted if f in found}

    def remember(self, channel: str,
                 files: Sequence[tuple[str, int, int, str | None]]) -> None:
        """Record ``(path, size, mtime, transmission id)`` as taken (idempotent)."""
        if not files:
            return
        already = self.remembered(channel, [(p, z, m) for p, z, m, _ in files])
        now = utcnow()
        rows = [dict(channel=channel, path=p, size=z, mtime=m, transmission_id=t, seen_at=now)
                for p, z, m, t in files if (p, z, m) not in already]
        if rows:
            with self.store._begin() as conn:
                conn.execute(s.remote_files.insert(), rows)
