"""Schema migrations with Alembic, run programmatically (no alembic.ini needed).

``upgrade(engine)`` brings any store (a new SQLite file, an existing PostgreSQL database) to
the newest schema; the gateway calls it at start-up, ``edigw db upgrade`` calls it by hand.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


#: The PostgreSQL advisory lock key held while migrating ("edigw" in ASCII): instances
#: starting together on one database migrate it one after the other.
MIGRATION_LOCK = 0x6564696777


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``. On PostgreSQL under an advisory lock:
    several instances starting at once migrate one at a time (the later ones find the
    schema current)."""
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
