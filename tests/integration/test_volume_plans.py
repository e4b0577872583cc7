"""The console's pages read the big tables through indexes: every statement a page runs is
recorded, then explained (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN`` with
sequential scans and whole-table joins discouraged, as a million rows would make the planner
do), and none reads the whole of ``transmissions``, ``documents`` or ``transmission_events``:
a scan of one of them is allowed only in a statement with a LIMIT (the newest rows, in index
order) or of a partial index (a few rows), and so is not a SQLite "search" on one column of
a handful of values (``direction = 'in'``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from gateway.app import Gateway
from gateway.config import (
    DocumentSettings,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    UnbIdentifier,
)
from gateway.http.server import build_app
from gateway.store.db import NewDocument, Store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIG = ("transmissions", "documents", "transmission_events")
#: Partial indexes: they hold a few rows (``test`` events), so reading all of one is small.
PARTIAL = ("ix_transmission_events_test",)
FEW_VALUES = ("direction", "status", "doc_type", "channel", "format")
PAGES = ("/", "/transmissions", "/transmissions?partner=acme", "/partners", "/partners/acme",
         "/alerts", "/conflicts", "/audit")


def _partners() -> PartnerDirectory:
    return PartnerDirectory([Partner(
        id=pid, name=pid.title(),
        identifiers=Identifiers(unb=[UnbIdentifier(id=f"54012340000{i}2", qualifier="14")]),
        documents=[DocumentSettings(type="order", format="edifact",
                                    mapping="eancom-orders-d96a")])
        for i, pid in enumerate(("acme", "kiosk"))])


def _fill(store: Store) -> None:
    for n in range(6):
        partner = ("acme", "kiosk")[n % 2]
        tid = store.record_received(channel="sftp", channel_ref=f"/in/{n}", filename=f"{n}.edi",
                                    size=10, sha256=f"{n:064x}", partner_id=partner)
        if n == 5:
            store.record_failed(tid, stage="map", reason="broken", partner_id=partner,
                                fmt="edifact")
            continue
        payload = json.dumps({"order_number": f"PO{n}", "currency": "EUR",
                              "lines": [{"quantity": "1", "line_amount": "2"}]}).encode()
        store.record_processed(tid, partner_id=partner, fmt="edifact", standard=None, docs=[
            NewDocument(doc_type="order", schema_version="edigw.order/1",
                        business_number=f"PO{n}", interchange_ref=None, message_ref=None,
                        message_id=f"m{n}", payload=payload, routing_key="order")])


@pytest.fixture
def console(tmp_path: Path, store_url: str) -> Iterator[dict[str, Any]]:
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    gw = Gateway.open(settings, partners=_partners())
    _fill(gw.store)
    routes, state = gw.console_routes()
    auth = state["auth"]
    auth.users.create("plans", "plans-password-long-enough", "admin")
    token = auth.tokens.create(auth.users.by_username("plans"), "plans")[0]
    client = TestClient(build_app(routes=routes, state=state),
                        headers={"Authorization": f"Bearer {token}"})
    try:
        yield {"gw": gw, "client": client}
    finally:
        client.close()
        gw.close()


@contextmanager
def _recorded(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and not executemany:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _reads_big(statement: str) -> bool:
    return any(re.search(rf"\b{t}\b", statement) for t in BIG)


def _whole_reads_sqlite(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    raw = engine.raw_connection()
    try:
        plan = [row[3] for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + statement,
                                                        parameters or ())]
    finally:
        raw.close()
    if re.search(r"\bLIMIT\b", statement, re.I):
        return []
    return [step for step in plan
            if ((m := re.match(r"SCAN (\w+)", step)) and m.group(1) in BIG
                and not any(p in step for p in PARTIAL))
            # a "search" on a column of a handful of values reads most of the table
            or ((m := re.match(r"SEARCH (\w+) USING .*\((\w+)=\?\)$", step))
                and m.group(1) in BIG and m.group(2) in FEW_VALUES)]


def _whole_reads_postgres(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # What the planner does when the tables are big: no sequential scan, and joins
        # that look the few rows up rather than merge or hash whole tables.
        for setting in ("enable_seqscan", "enable_mergejoin", "enable_hashjoin"):
            cur.execute(f"SET {setting} = off")
        cur.execute("EXPLAIN " + statement, parameters or None)
        plan = [row[0] for row in cur.fetchall()]
        raw.rollback()
    finally:
        raw.close()
    limited = any("Limit" in line for line in plan)
    bad = []
    for i, line in enumerate(plan):
        m = re.search(r"(Seq Scan|Index Scan|Index Only Scan) (?:Backward )?(?:using \w+ )?"
                      r"on (\w+)", line)
        if not m or m.group(2) not in BIG or any(p in line for p in PARTIAL):
            continue
        if m.group(1) == "Seq Scan":
            bad.append(line.strip())
            continue
        block = []
        for nxt in plan[i + 1:]:
            if "->" in nxt:
                break
            block.append(nxt)
        if not limited and not any("Cond:" in b for b in block):
            bad.append(line.strip())
    return bad


def test_console_pages_read_the_big_tables_through_indexes(console):
    """Each page answers 200; of the statements it ran, those reading transmissions,
    documents or their events seek or range-scan an index (or take the newest few)."""
    gw, client = console["gw"], console["client"]
    engine = gw.store.engine
    explain = (_whole_reads_postgres if engine.dialect.name == "postgresql"
               else _whole_reads_sqlite)
    checked = 0
    for path in PAGES:
        for _ in range(2):  # the first fills the per-day aggregates, the second reads them
            with _recorded(engine) as seen:
                r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            for statement, parameters in seen:
                if not _reads_big(statement):
                    continue
                checked += 1
                whole = explain(engine, statement, parameters)
                assert whole == [], f"{path} reads a whole table: {whole}\n{statement}"
    assert checked >= len(PAGES)


def test_a_page_view_after_the_first_reads_only_what_changed(console):
    """The dashboard's second view reads no transmission row for its charts: only the
    events written since the first (none), and the last contacts by seek."""
    gw, client = console["gw"], console["client"]
    assert client.get("/").status_code == 200
    with _recorded(gw.store.engine) as seen:
        assert client.get("/").status_code == 200
    ranges = [st for st, _ in seen if re.search(r"received_at >=", st)]
    assert ranges == [], ranges
