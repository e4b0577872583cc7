"""Where password-reset links are kept: the ``password_resets`` table.

A link's token is never stored, only its sha256 (``token_hash``). A row is *open* while
``used_at`` is empty and ``expires_at`` is ahead; using it, or voiding it (another reset
went through, the e-mail address changed), sets ``used_at``. The rules (who may ask, how
often, how long a link lives) are ``gateway.web.account``'s; this module keeps the rows and
makes the two steps that must not race atomic: counting a user's recent requests with
adding one, and taking a link (once, whatever runs in parallel).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

#: Rows expired this long ago are dropped when a new one is added (the throttle looks back
#: one hour, the audit trail keeps what happened).
KEEP_EXPIRED = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class PasswordReset:
    """One e-mailed link, known by the sha256 of its token."""

    token_hash: str
    user_id: int
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    remote: str | None

    @classmethod
    def from_row(cls, row: Any) -> PasswordReset:
        return cls(token_hash=row.token_hash, user_id=row.user_id,
                   created_at=aware(row.created_at), expires_at=aware(row.expires_at),
                   used_at=aware(row.used_at), remote=row.remote)

    def open_at(self, now: dt.datetime) -> bool:
        """Whether the link may still be used at ``now``."""
        return self.used_at is None and now < self.expires_at


class ResetRecords:
    """The ``password_resets`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_unless_over(self, reset: PasswordReset, *, since: dt.datetime,
                        limit: int | None) -> bool:
        """Keep ``reset`` unless its user already has ``limit`` links created since
        ``since`` (False then; ``limit`` None: always kept). Counting and adding are one
        transaction holding the user's row, so parallel requests cannot pass the limit."""
        r, u = s.password_resets, s.users
        with self.store._begin() as conn:
            # FOR UPDATE on PostgreSQL; SQLite's writers already take turns (Store._begin).
            conn.execute(sa.select(u.c.id).where(u.c.id == reset.user_id).with_for_update())
            if limit is not None:
                recent = conn.execute(sa.select(sa.func.count()).select_from(r).where(
                    r.c.user_id == reset.user_id, r.c.created_at >= since)).scalar_one()
                if recent >= limit:
                    return False
            conn.execute(r.delete().where(r.c.expires_at < reset.created_at - KEEP_EXPIRED))
            conn.execute(r.insert().values(
                token_hash=reset.token_hash, user_id=reset.user_id,
                created_at=reset.created_at, expires_at=reset.expires_at, used_at=None,
                remote=reset.remote[:128] if reset.remote else None))
        return True

    def get(self, token_hash: str) -> PasswordReset | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(s.password_resets).where(
                s.password_resets.c.token_hash == token_hash)).first()
        return PasswordReset.from_row(row) if row else None

    def take(self, token_hash: str, now: dt.datetime) -> bool:
        """Mark the link used if it is still open at ``now``: True for the one caller that
        did (a conditional update: a second taker, even in parallel, gets False)."""
        r = s.password_resets
        with self.store._begin() as conn:
            done = conn.execute(r.update().where(
                r.c.token_hash == token_hash, r.c.used_at.is_(None),
                r.c.expires_at > now).values(used_at=now)).rowcount
        return bool(done)

    def void_open(self, user_id: int, now: dt.datetime) -> int:
        """Close every open link of the user; how many there were."""
        r = s.password_resets
        with self.store._begin() as conn:
            done = conn.execute(r.update().where(
                r.c.user_id == user_id, r.c.used_at.is_(None),
                r.c.expires_at > now).values(used_at=now)).rowcount
        return int(done)

    def of_user(self, user_id: int) -> list[PasswordReset]:
        """The user's links, oldest first."""
        r = s.password_resets
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(r).where(r.c.user_id == user_id)
                                .order_by(r.c.created_at)).all()
        return [PasswordReset.from_row(x) for x in rows]
