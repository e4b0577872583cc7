"""The lookups of "where is order X" and the one search are index seeks on SQLite and
PostgreSQL: every statement ``explain`` and ``answer`` run, replayed under EXPLAIN (QUERY
PLAN), reads transmissions, documents, interchanges and outbound rows through an index,
never a full scan (a million transmissions make a scan cost 200 ms; a seek does not)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.config import Identifiers, Partner, PartnerDirectory, TrackerSettings, UnbIdentifier
from gateway.core import clock
from gateway.store.db import Store
from gateway.tracker import explain as ex
from gateway.tracker.search import answer

ROWS = 20_000
BIG_TABLES = ("transmissions", "documents", "interchanges", "outbound")
NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def _fill(store: Store, n: int) -> None:
    """``n`` transmissions of 20 partners with an order each (1 in 100 failed, 1 in 200
    quarantined without a partner), their interchanges, one AS2 message and one reprocess."""
    pg = store.engine.dialect.name == "postgresql"
    if pg:
        pre, series = "", f"SELECT g AS n FROM generate_series(1, {n}) g"
        ts = "(timestamptz '2026-11-20 00:00:00+00' + (n || ' seconds')::interval)"
        hexid, sha, blob = "lpad(to_hex(n), 24, '0')", "lpad(to_hex(n), 64, '0')", "'\\x7b7d'::bytea"
    else:
        pre = f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) "
        series = "SELECT n FROM s"
        ts = "datetime('2026-11-20 00:00:00', '+' || n || ' seconds')"
        hexid, sha, blob = "printf('%024x', n)", "printf('%064x', n)", "x'7b7d'"
    bad = "(n % 100 = 7 OR n % 200 = 13)"
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            f"{pre}INSERT INTO transmissions (id, channel, channel_ref, partner_id, filename, "
            "size, sha256, received_at, status, stage, reason, document_count, updated_at, "
            f"attempts, direction) SELECT {hexid}, CASE n % 2 WHEN 0 THEN 'folder' ELSE 'as2' "
            f"END, '/in/o-' || n || '.edi', CASE WHEN n % 200 = 13 THEN NULL ELSE "
            f"'p' || (n % 20) END, 'o-' || n || '.edi', 100, {sha}, {ts}, CASE WHEN n % 100 = 7 "
            "THEN 'FAILED' WHEN n % 200 = 13 THEN 'QUARANTINED' ELSE 'PUBLISHED' END, NULL, "
            f"NULL, 1, {ts}, 1, 'in' FROM ({series}) x"))
        conn.execute(sa.text(
            f"{pre}INSERT INTO documents (id, transmission_id, partner_id, doc_type, "
            "schema_version, business_number, interchange_ref, message_ref, message_id, "
            "status, created_at, published_at, payload) SELECT "
            f"{hexid}, {hexid}, 'p' || (n % 20), 'order', 'edigw.order/1', 'PO-' || n, '' || n, "
            f"'1', {sha}, 'PUBLISHED', {ts}, {ts}, {blob} FROM ({series}) x WHERE NOT {bad}"))
        conn.execute(sa.text(
            f"{pre}INSERT INTO interchanges (transmission_id, partner_id, control_ref, "
            f"received_at, message_count, status) SELECT {hexid}, 'p' || (n % 20), "
            f"'IC' || n, {ts}, 1, 'ACCEPTED' FROM ({series}) x WHERE NOT {bad}"))
        conn.execute(sa.text(
            "INSERT INTO as2_messages (id, message_id, partner_id, as2_from, as2_to, "
            "transmission_id, received_at, disposition, mdn_mode, mdn_state) VALUES ('a1', "
            "'m-1@p1', 'p1', 'P1', 'US', :tid, :at, 'processed', 'sync', 'sent')"),
            {"tid": f"{21:024x}", "at": NOW})
        conn.execute(sa.text(
            "UPDATE transmissions SET reprocess_of = :of WHERE id = :id"),
            {"of": f"{7:024x}", "id": f"{107:024x}"})
        conn.execute(sa.text("ANALYZE"))


@pytest.fixture
def filled(store_url: str) -> Iterator[Store]:
    store = Store.from_url(store_url)
    _fill(store, ROWS)
    clock.set_clock(clock.FixedClock(NOW))
    yield store
    clock.set_clock(None)


def _statements(store: Store, ask: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Every SELECT that ``ask`` runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
               many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, params))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        ask()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    return seen


def _full_scans(store: Store, statements: list[tuple[str, Any]]) -> list[str]:
    """The plans' lines that read a big table whole, with the statement they belong to."""
    pg = store.engine.dialect.name == "postgresql"
    found = []
    with store.engine.connect() as conn:
        # A table of a few rows (no outbound traffic here) is rightly read whole.
        big = [t for t in BIG_TABLES
               if conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() >= 1000]
        for statement, params in statements:
            prefix = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            lines = [str(r[0]) if pg else str(r[-1]) for r in rows]
            for line in lines:
                if pg:
                    bad = any(f"Seq Scan on {t}" in line for t in big)
                else:
                    bad = any(line.startswith(f"SCAN {t}") for t in big)
                if bad:
                    found.append(f"{line.strip()}  <-  {' '.join(statement.split())[:400]}")
    return found


PARTNERS = PartnerDirectory([
    Partner(id=f"p{i}", name=f"P{i}",
            identifiers=Identifiers(unb=[UnbIdentifier(id=f"54000000{i:05d}")]))
    for i in range(20)])
TRACKER = TrackerSettings(timezone="Europe/Paris")

QUESTIONS: dict[str, Callable[[Store], Any]] = {
    "order, with partner": lambda s: ex.explain(s, PARTNERS, TRACKER, partner="p1",
                                                number="PO-1001", doc_type="order"),
    "order, without partner": lambda s: ex.explain(s, PARTNERS, TRACKER, number="po-1001"),
    "never received, with partner": lambda s: ex.explain(s, PARTNERS, TRACKER, partner="p3",
                                                         number="NOPE-1", doc_type="order"),
    "never received, without partner": lambda s: ex.explain(s, PARTNERS, TRACKER,
                                                            number="NOPE-1"),
    "failed file with a reprocess": lambda s: answer(s, PARTNERS, TRACKER, "o-7.edi"),
    "q: number": lambda s: answer(s, PARTNERS, TRACKER, "PO-2002", partner="p2"),
    "q: file name": lambda s: answer(s, PARTNERS, TRACKER, "O-3003.EDI"),
    "q: interchange": lambda s: answer(s, PARTNERS, TRACKER, "IC4004"),
    "q: transmission id": lambda s: answer(s, PARTNERS, TRACKER, f"{5005:024x}"),
    "q: AS2 Message-ID": lambda s: answer(s, PARTNERS, TRACKER, "<m-1@p1>"),
    "q: nothing": lambda s: answer(s, PARTNERS, TRACKER, "nothing-at-all", partner="p4"),
}


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_where_is_order_x_reads_big_tables_only_through_indexes(filled, question):
    """No statement of the question's answer scans transmissions, documents, interchanges
    or the outbound rows (SQLite: no "SCAN <table>"; PostgreSQL: no "Seq Scan on")."""
    statements = _statements(filled, lambda: QUESTIONS[question](filled))
    assert statements, "the question ran no query"
    assert _full_scans(filled, statements) == []


def test_the_questions_answer_what_was_filled(filled):
    """The plans checked are those of real answers: found, failed, never received."""
    assert QUESTIONS["order, with partner"](filled).verdict == "waiting-erp"
    assert QUESTIONS["never received, with partner"](filled).verdict == "never-received"
    assert QUESTIONS["failed file with a reprocess"](filled).kind == "file-name"
    assert QUESTIONS["q: AS2 Message-ID"](filled).kind == "as2-message-id"
    assert QUESTIONS["q: interchange"](filled).kind == "interchange-ref"
