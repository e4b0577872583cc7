"""Fixtures shared by every test folder: store URLs (SQLite and PostgreSQL) and the corpus.

The corpus tier (tests/corpus/, tests marked ``corpus`` or ``shared(NAME)``) reads
``../shared`` (``$EDIGW_CORPUS``, ``$EDIGW_SHARED``): without it those tests are not run and
one line per missing folder says so, a skip, or under CI=true a failure (see below)."""

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
    path = Path(os.environ.get("EDIGW_CORPUS") or _shared_base() / "corpus")
    return path if (path / "MANIFEST.tsv").exists() else None


def _shared_base() -> Path:
    return Path(os.environ.get("EDIGW_SHARED") or ROOT.parent / "shared")


#: Older variables naming one folder of ../shared, still honoured.
_SHARED_OVERRIDES = {"fuzz-regressions": "EDIGW_FUZZ_REGRESSIONS"}


def shared_dir(name: str) -> Path | None:
    """A folder of ``../shared`` (or ``$EDIGW_SHARED/<name>``), if present."""
    override = os.environ.get(_SHARED_OVERRIDES.get(name, ""), "")
    path = Path(override) if override else _shared_base() / name
    return path if path.is_dir() else None


def manifest_rows() -> list[dict[str, str]]:
    folder = corpus_dir()
    if folder is None:
        return []
    with (folder / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def require_corpus() -> Path:
    """The corpus folder, for a test of the corpus tier (which does not run without it)."""
    folder = corpus_dir()
    if folder is None:
        pytest.fail("this test reads the shared corpus but is not in the corpus tier: mark it "
                    "@pytest.mark.corpus (or move it to tests/corpus/)")
    return folder


# -- the corpus tier -------------------------------------------------------------------------
#
# The tests of tests/corpus/, those marked ``corpus`` (the corpus, ``$EDIGW_CORPUS``) and those
# marked ``shared(NAME)`` (``../shared/NAME``, ``$EDIGW_SHARED``) read material that is not in
# the repository. When it is there they run; when it is not, they are deselected at collection
# and one item per missing folder reports it: skipped, or failed under CI=true (CI requires
# the tier).

def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test of the tier carries the ``corpus`` mark (so ``-m "not corpus"`` leaves the
    whole tier out): those of tests/corpus/ and those marked ``shared``."""
    in_folder = (ROOT / "tests" / "corpus") in item.path.parents
    if item.get_closest_marker("corpus") is None and (
            in_folder or item.get_closest_marker("shared") is not None):
        item.add_marker(pytest.mark.corpus)


def _tier_needs(item: pytest.Item) -> list[str]:
    """The folders a test needs: the names of its ``shared`` marks (``shared("corpus")`` for
    the corpus too), else "corpus" for a test of the tier; nothing outside the tier."""
    if item.get_closest_marker("corpus") is None:
        return []
    return [str(m.args[0]) for m in item.iter_markers("shared")] or ["corpus"]


def _missing_reason(name: str) -> str | None:
    """Why the tier's folder ``name`` is unusable, or None when it is there."""
    if name == "corpus":
        if corpus_dir() is not None:
            return None
        if os.environ.get("EDIGW_CORPUS"):
            return f"$EDIGW_CORPUS ({os.environ['EDIGW_CORPUS']}) has no MANIFEST.tsv"
        where = (f"$EDIGW_SHARED/corpus ({_shared_base() / 'corpus'})"
                 if os.environ.get("EDIGW_SHARED") else "../shared/corpus")
        return f"{where} not found (set EDIGW_CORPUS)"
    if shared_dir(name) is not None:
        return None
    where = (f"$EDIGW_SHARED/{name} ({_shared_base() / name})"
             if os.environ.get("EDIGW_SHARED") else f"../shared/{name}")
    return f"{where} not found (set EDIGW_SHARED)"


class CorpusTierMissing(pytest.Item):
    """Stands for the tier's tests that could not run: a skip, or under CI=true a failure."""

    def __init__(self, *, reason: str, count: int, **kw) -> None:
        super().__init__(**kw)
        self.reason, self.count = reason, count

    def runtest(self) -> None:
        if _in_ci():
            pytest.fail(f"corpus tier cannot run: {self.reason}; CI=true requires it "
                        f"({self.count} tests not run)", pytrace=False)
        pytest.skip(f"corpus tier skipped: {self.reason}; {self.count} tests not run")

    def reportinfo(self):
        return self.path, None, self.name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared(name): reads ../shared/NAME ($EDIGW_SHARED) "
                                       "instead of the corpus; in the corpus tier")


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what they do
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}  # folder name -> why it is missing (None: there)
    keep: list[pytest.Item] = []
    dropped: dict[str, list[pytest.Item]] = {}
    for item in items:
        for name in _tier_needs(item):
            if name not in reasons:
                reasons[name] = _missing_reason(name)
            if reasons[name]:
                dropped.setdefault(name, []).append(item)
                break
        else:
            keep.append(item)
    if not dropped:
        return
    config.hook.pytest_deselected(items=[i for group in dropped.values() for i in group])
    standins: list[pytest.Item] = [
        CorpusTierMissing.from_parent(session, name=f"corpus-tier[{name}]",
                                      nodeid=f"tests/corpus::corpus-tier[{name}]",
                                      path=ROOT / "tests" / "conftest.py",
                                      reason=reasons[name], count=len(group))
        for name, group in dropped.items()]
    items[:] = standins + keep


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name in ("corpus", "fuzz-regressions"):
        reason = _missing_reason(name)
        found = corpus_dir() if name == "corpus" else shared_dir(name)
        lines.append(f"corpus tier, {name}: {reason or found}")
    return lines


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
