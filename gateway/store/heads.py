"""Whether a store's schema is at the newest revision, without loading Alembic: a command
that only reads (``edigw log``, ``find``) opens the store in a few milliseconds when it is
current, and migrates it (``gateway.store.migrate.upgrade``) only when it is not.

The newest revision is read from the migration files' ``revision`` and ``down_revision``
lines; when they do not give exactly one head, the answer is "not known to be current" and
the caller runs the real migration, which then decides.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

VERSIONS = Path(__file__).with_name("migrations") / "versions"
_LINE = re.compile(r'^(revision|down_revision)\s*(?::[^=]*)?=\s*["\']([^"\']+)["\']', re.M)


def head_revision(versions: Path = VERSIONS) -> str | None:
    """The one revision no other revision revises, or None when there is not exactly one."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in versions.glob("*.py"):
        found = dict(_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions.add(found["revision"])
            if "down_revision" in found:
                revised.add(found["down_revision"])
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


def is_current(engine: sa.Engine) -> bool:
    """True when the store's ``alembic_version`` holds exactly the head revision."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:  # no such table yet: a new store
        return False
    return [r[0] for r in rows] == [head]
