"""Where the console's users, browser sessions and API tokens are kept.

The records and the queries only: ``gateway.web.auth`` decides who may log in, hashes
passwords and checks roles, then reads and writes through ``UserRecords``,
``SessionRecords`` and ``TokenRecords``. Datetimes come back timezone-aware (UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware


@dataclass(frozen=True, slots=True)
class User:
    """A console user (never its password hash)."""

    id: int
    username: str
    display_name: str | None
    email: str | None
    role: str
    disabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    last_login_at: dt.datetime | None
    failed_logins: int
    #: The partner a client user belongs to (None for staff).
    partner_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(id=row.id, username=row.username, display_name=row.display_name,
                   email=row.email, role=row.role, disabled=bool(row.disabled),
                   created_at=aware(row.created_at), updated_at=aware(row.updated_at),
                   last_login_at=aware(row.last_login_at), failed_logins=row.failed_logins,
                   partner_id=row.partner_id)

    def as_dict(self) -> dict[str, Any]:
        """The user as the API shows it (never the hash)."""
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "email": self.email, "role": self.role, "disabled": self.disabled,
                "created_at": self.created_at.isoformat(),
                "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
                "failed_logins": self.failed_logins, "partner_id": self.partner_id}


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user with its password hash, for checking a login."""

    user: User
    password_hash: str


class UserRecords:
    """The ``users`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, *, username: str, display_name: str | None, email: str | None, role: str,
               password_hash: str, now: dt.datetime, partner_id: str | None = None) -> None:
        with self.store._begin() as conn:
            conn.execute(s.users.insert().values(
                username=username, display_name=display_name, email=email, role=role,
                password_hash=password_hash, disabled=False, created_at=now,
                updated_at=now, failed_logins=0, partner_id=partner_id))

    def get(self, user_id: int) -> User | None:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(s.users).where(s.users.c.id == user_id)).first()
        return User.from_row(row) if row else None

    def by_username(self, username: str) -> User | None:
        found = self.credentials(username)
        return found.user if found else None

    def credentials(self, username: str) -> Credentials | None:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(s.users).where(s.users.c.username == username)).first()
        return Credentials(User.from_row(row), row.password_hash) if row else None

    def by_email(self, email: str) -> list[User]:
        """The users with this e-mail address (compared without case)."""
        with self.store.connect() as conn:
            rows = conn.execute(sa.select(s.users).where(
                sa.func.lower(s.users.c.email) == email.strip().lower())).all()
        return [User.from_row(r) for r in rows]

    def list(self, *, partner_id: str | None = None) -> list[User]:
        query = sa.select(s.users).order_by(s.users.c.username)
        if partner_id is not None:
            query = query.where(s.users.c.partner_id == partner_id)
        with self.store.connect() as conn:
            rows = conn.execute(query).all()
        return [User.from_row(r) for r in rows]

    def update(self, username: str, now: dt.datetime, **values: Any) -> bool:
        """Set ``values`` (and ``updated_at``) on the user; False when there is no such user."""
        with self.store._begin() as conn:
            done = conn.execute(s.users.update().where(s.users.c.username == username)
                                .values(updated_at=now, **values)).rowcount
        return bool(done)

    def count_attempt(self, user: User, now: dt.datetime) -> bool:
        """Count a login attempt, only if no other attempt was counted since ``user`` was
        read (False then): parallel guesses cannot outrun a lock."""
        u = s.users
        with self.store._begin() as conn:
            taken = conn.execute(u.update().where(
                u.c.id == user.id, u.c.failed_logins == user.failed_logins).values(
                failed_logins=u.c.failed_logins + 1, updated_at=now)).rowcount
        return bool(taken)

    def set_by_id(self, user_id: int, **values: Any) -> None:
        """Set ``values`` on the user, leaving ``updated_at`` (a successful login)."""
        with self.store._begin() as conn:
            conn.execute(s.users.update().where(s.users.c.id == user_id).values(**values))


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session, known by the sha256 of its cookie's token."""

    token_hash: str
    user_id: int
    csrf_token: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    remote: str | None


class SessionRecords:
    """The ``sessions`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, session: Session) -> None:
        """Keep ``session``, dropping the sessions expired by its creation."""
        with self.store._begin() as conn:
            conn.execute(s.sessions.delete().where(s.sessions.c.expires_at < session.created_at))
            conn.execute(s.sessions.insert().values(
                token_hash=session.token_hash, user_id=session.user_id,
                csrf_token=session.csrf_token, created_at=session.created_at,
                last_seen_at=session.last_seen_at, expires_at=session.expires_at,
                remote=session.remote))

    def get(self, token_hash: str) -> Session | None:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(s.sessions)
                               .where(s.sessions.c.token_hash == token_hash)).first()
        if row is None:
            return None
        return Session(token_hash=row.token_hash, user_id=row.user_id, csrf_token=row.csrf_token,
                       created_at=aware(row.created_at), last_seen_at=aware(row.last_seen_at),
                       expires_at=aware(row.expires_at), remote=row.remote)

    def touch(self, token_hash: str, now: dt.datetime) -> None:
        with self.store._begin() as conn:
            conn.execute(s.sessions.update().where(s.sessions.c.token_hash == token_hash)
                         .values(last_seen_at=now))

    def delete(self, token_hash: str) -> None:
        with self.store._begin() as conn:
            conn.execute(s.sessions.delete().where(s.sessions.c.token_hash == token_hash))

    def delete_for_user(self, user_id: int) -> None:
        with self.store._begin() as conn:
            conn.execute(s.sessions.delete().where(s.sessions.c.user_id == user_id))


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token's record (never the token itself)."""

    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        def iso(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {"id": self.id, "user": self.username, "name": self.name, "prefix": self.prefix,
                "created_at": iso(self.created_at), "last_used_at": iso(self.last_used_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at)}


class TokenRecords:
    """The ``api_tokens`` table, each token with its user's name."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _select() -> sa.Select[Any]:
        t, u = s.api_tokens, s.users
        return (sa.select(t, u.c.username).select_from(t.join(u, t.c.user_id == u.c.id))
                .order_by(t.c.id))

    @staticmethod
    def _row(r: Any) -> ApiToken:
        return ApiToken(id=r.id, user_id=r.user_id, username=r.username, name=r.name,
                        prefix=r.prefix, created_at=aware(r.created_at),
                        last_used_at=aware(r.last_used_at), expires_at=aware(r.expires_at),
                        revoked_at=aware(r.revoked_at))

    def insert(self, *, user_id: int, name: str, token_hash: str, prefix: str,
               created_at: dt.datetime, expires_at: dt.datetime | None) -> int:
        """Keep a new token; its id."""
        with self.store._begin() as conn:
            tid = conn.execute(s.api_tokens.insert().values(
                user_id=user_id, name=name, token_hash=token_hash, prefix=prefix,
                created_at=created_at, expires_at=expires_at)
                .returning(s.api_tokens.c.id)).scalar_one()
        return int(tid)

    def get(self, token_id: int) -> ApiToken | None:
        with self.store.connect() as conn:
            row = conn.execute(self._select().where(s.api_tokens.c.id == token_id)).first()
        return self._row(row) if row else None

    def by_hash(self, token_hash: str) -> ApiToken | None:
        with self.store.connect() as conn:
            row = conn.execute(self._select()
                               .where(s.api_tokens.c.token_hash == token_hash)).first()
        return self._row(row) if row else None

    def list(self, *, user_id: int | None = None) -> list[ApiToken]:
        q = self._select()
        if user_id is not None:
            q = q.where(s.api_tokens.c.user_id == user_id)
        with self.store.connect() as conn:
            return [self._row(r) for r in conn.execute(q)]

    def revoke(self, token_id: int, now: dt.datetime) -> None:
        """Mark the token revoked (once: a revoked token keeps its first date)."""
        with self.store._begin() as conn:
            conn.execute(s.api_tokens.update().where(s.api_tokens.c.id == token_id)
                         .where(s.api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))

    def touch(self, token_id: int, now: dt.datetime) -> None:
        with self.store._begin() as conn:
            conn.execute(s.api_tokens.update().where(s.api_tokens.c.id == token_id)
                         .values(last_used_at=now))
