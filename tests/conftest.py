"""Fixtures shared by every test folder: store URLs (SQLite and PostgreSQL) and the corpus."""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path

import pytest

from tests.services import require_service

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = os.environ.get("EDIGW_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("EDIGW_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("EDIGW_TEST_PG_USER", "postgres")


def corpus_dir() -> Path | None:
    """The shared corpus folder (``$EDIGW_CORPUS`` or ``../shared/corpus``), if present."""
    path = Path(os.environ.get("EDIGW_CORPUS", ROOT.parent / "shared" / "corpus"))
    return path if (path / "MANIFEST.tsv").exists() else None


def shared_dir(name: str) -> Path | None:
    """A folder of ``../shared`` (or ``$EDIGW_SHARED/<name>``), if present."""
    base = Path(os.environ.get("EDIGW_SHARED", ROOT.parent / "shared"))
    path = base / name
    return path if path.is_dir() else None


def manifest_rows() -> list[dict[str, str]]:
    folder = corpus_dir()
    if folder is None:
        return []
    with (folder / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def require_corpus() -> Path:
    folder = corpus_dir()
    if folder is None:
        reason = "shared corpus not found (set EDIGW_CORPUS or place it at ../shared/corpus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; in CI the corpus tests must run")
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import sqlalchemy as sa

    name = f"edigw_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A store URL on a new SQLite file, then on a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edigw.sqlite3'}"
        return
    base = request.getfixturevalue("pg_database")
    import sqlalchemy as sa

    schema = f"s_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    yield f"{base}?options=-csearch_path%3D{schema}"
    eng = sa.create_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """Commands under test configure logging for the process; give every test the defaults."""
    import structlog

    yield
    structlog.reset_defaults()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the corpus outcome counts of every corpus test module that ran and keeps them
    (``summary_lines()``): the issues ask for the counts per outcome in the test run."""
    import sys

    for name, module in sorted(sys.modules.items()):
        if not name.startswith("tests.corpus.") or not hasattr(module, "summary_lines"):
            continue
        lines = module.summary_lines()
        if lines:
            terminalreporter.section(f"corpus outcomes: {name.rsplit('.', 1)[-1]}")
            for line in lines:
                terminalreporter.write_line(line)
