"""The audit trail of the operator console: who changed what, when, before and after.

``AuditLog`` works on a ``Store`` (same engine, same write lock). ``record`` writes one row
per change; ``before`` and ``after`` are the changed part as JSON with secrets masked: a value
whose key names a secret (password, passphrase, secret, token, private key …) becomes
``"***"`` (``None`` stays ``None``: "not set" is no secret), and so does any string holding a
PEM private key whatever its key. Paths to secret files (keys ending in ``_file``) are kept:
where a secret lives is no secret.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core import clock
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.records import aware

MASK = "***"
_SECRET_KEY = re.compile(r"password|passphrase|secret|token|private|key_material|key_pem"
                         r"|^key$|credential", re.IGNORECASE)
_PRIVATE_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def is_secret_key(name: str) -> bool:
    """Whether a value under this key name is a secret (paths ``*_file`` are not)."""
    return not name.lower().endswith("_file") and bool(_SECRET_KEY.search(name))


def mask_secrets(value: Any, *, key: str = "") -> Any:
    """``value`` (dicts, lists, scalars) with every secret replaced by ``"***"``."""
    if key and value is not None and is_secret_key(key):
        return MASK
    if isinstance(value, dict):
        return {k: mask_secrets(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return MASK
    if isinstance(value, str) and _PRIVATE_PEM.search(value):
        return MASK
    return value


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(mask_secrets(value), ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    before: Any
    after: Any
    remote: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor,
                "action": self.action, "target": self.target, "before": self.before,
                "after": self.after, "remote": self.remote}


class AuditLog:
    """Changes made through the console (and the CLI), in the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, actor: str, action: str, target: str | None = None, *,
               before: Any = None, after: Any = None, remote: str | None = None) -> int:
        """Record one change (``action`` like ``partner.disable``, ``target`` like
        ``partner:acme``); returns the entry's id."""
        row = dict(at=clock.now().astimezone(dt.UTC), actor=actor[:64], action=action[:64],
                   target=target[:160] if target else None, before=_to_json(before),
                   after=_to_json(after), remote=remote[:128] if remote else None)
        with self.store._begin() as conn:
            result = conn.execute(s.audit_log.insert().values(**row))
            key = result.inserted_primary_key
            assert key is not None  # an insert of one row
            return int(key[0])

    def list(self, *, target: str | None = None, actor: str | None = None,
             action: str | None = None, since: dt.datetime | None = None,
             until: dt.datetime | None = None, limit: int = 100,
             offset: int = 0) -> list[AuditEntry]:
        """Entries, newest first. ``action`` ending in ``.*`` matches a family
        (``partner.*``); ``since`` is inclusive, ``until`` exclusive."""
        a = s.audit_log
        q = _filtered(sa.select(a), target=target, actor=actor, action=action, since=since,
                      until=until).order_by(a.c.at.desc(), a.c.id.desc())
        q = q.limit(max(0, min(limit, 1000))).offset(max(0, offset))
        with self.store.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def count(self, *, target: str | None = None, actor: str | None = None,
              action: str | None = None, since: dt.datetime | None = None,
              until: dt.datetime | None = None) -> int:
        """How many entries ``list`` pages through with the same filters."""
        q = _filtered(sa.select(sa.func.count()).select_from(s.audit_log), target=target,
                      actor=actor, action=action, since=since, until=until)
        with self.store.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())


def _filtered(q: sa.Select[Any], *, target: str | None, actor: str | None,
              action: str | None, since: dt.datetime | None,
              until: dt.datetime | None) -> sa.Select[Any]:
    a = s.audit_log
    if target is not None:
        q = q.where(a.c.target == target)
    if actor is not None:
        q = q.where(a.c.actor == actor)
    if action is not None:
        if action.endswith(".*"):
            q = q.where(a.c.action.startswith(action[:-1], autoescape=True))
        else:
            q = q.where(a.c.action == action)
    # Bound in UTC: SQLite compares the stored text without its offset.
    if since is not None:
        q = q.where(a.c.at >= _utc(since))
    if until is not None:
        q = q.where(a.c.at < _utc(until))
    return q


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("audit bounds must be timezone-aware")
    return when.astimezone(dt.UTC)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(id=row.id, at=aware(row.at), actor=row.actor,
                      action=row.action, target=row.target,
                      before=json.loads(row.before) if row.before else None,
                      after=json.loads(row.after) if row.after else None, remote=row.remote)
