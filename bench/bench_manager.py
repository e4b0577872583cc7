#!/usr/bin/env python3
"""Benchmark of the manager page's figures over a big store.

Fills a store with --transmissions inbound transmissions (one order each, some invoices
sent back, 200 partners, spread over --days days up to now; a bulk day of 20,000 orders),
then times, for the default range (13 weeks) and a year:

  - the first values query (the rollup of document values filled for the range: once),
  - the same query again (the rollup current: what every later request costs),
  - the electronic share, the forecasts against actual, the dropped clients.

Usage:  python bench/bench_manager.py [--transmissions N] [--days N] [--store URL]

A SQLite file in a temporary folder by default; a PostgreSQL --store URL gets a schema of its
own, dropped afterwards. Nothing asserts: it prints figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from gateway.store import schema as s  # noqa: E402
from gateway.store.db import Store  # noqa: E402
from gateway.store.forecasts import ForecastBook, check_forecast  # noqa: E402
from gateway.store.read import manager  # noqa: E402

ZONE = ZoneInfo("Europe/Paris")
BATCH = 20000


def fill(store: Store, n: int, days: int) -> None:
    """``n`` inbound transmissions with one order each over ``days`` days up to now, one
    invoice sent per 10 orders, a bulk day of 20,000 orders 10 days ago."""
    rnd = random.Random(18)
    now = dt.datetime.now(dt.UTC)
    partners = [f"p{i:03d}" for i in range(200)]
    bulk = now - dt.timedelta(days=10)
    t_rows, d_rows = [], []

    def flush() -> None:
        with store.engine.begin() as conn:
            conn.execute(s.transmissions.insert(), t_rows)
            conn.execute(s.documents.insert(), d_rows)
        t_rows.clear()
        d_rows.clear()

    for i in range(n):
        at = bulk if i < 20000 else now - dt.timedelta(seconds=rnd.randrange(days * 86400))
        pid = partners[rnd.randrange(len(partners)) if i >= 20000 else 0]
        out = i % 10 == 9
        tid = uuid.uuid4().hex
        t_rows.append(dict(id=tid, channel="folder", channel_ref=None, filename=f"f{i}",
                           size=900, sha256=f"{i:064x}", status="PUBLISHED", received_at=at,
                           updated_at=at, partner_id=pid,
                           format="sms" if i % 17 == 0 else "edifact", document_count=1,
                           direction="out" if out else "in"))
        kind = "invoice" if out else "order"
        body = ({"currency": "EUR", "invoice_type": "381" if i % 50 == 49 else "380",
                 "totals": {"tax_exclusive": f"{rnd.randrange(100, 90000) / 100:.2f}"}}
                if out else
                {"currency": "EUR" if i % 7 else "CHF", "lines": [
                    {"quantity": str(rnd.randrange(1, 20)),
                     "unit_price": f"{rnd.randrange(100, 5000) / 100:.2f}"}
                    for _ in range(5)]})
        d_rows.append(dict(id=uuid.uuid4().hex, transmission_id=tid, partner_id=pid,
                           doc_type=kind, schema_version="1", business_number=f"N{i}",
                           message_id=f"m{i}", status="OUTBOUND" if out else "PUBLISHED",
                           created_at=at, payload=json.dumps(body).encode()))
        if len(t_rows) >= BATCH:
            flush()
    if t_rows:
        flush()


def timed(label: str, fn) -> object:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    print(f"  {label:<58} {1000 * (time.perf_counter() - t0):9.1f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transmissions", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    schema = None
    url = args.store or f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
    if url.startswith("postgresql"):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        eng.dispose()
        url = f"{url}?options=-csearch_path%3D{schema}"
    store = Store.from_url(url)
    try:
        t0 = time.perf_counter()
        fill(store, args.transmissions, args.days)
        print(f"filled {args.transmissions:,} transmissions in {time.perf_counter() - t0:.0f} s "
              f"({store.engine.dialect.name})")
        today = dt.datetime.now(ZONE).date()
        ForecastBook(store).put([check_forecast(f"p{i:03d}", today.strftime("%Y-%m"), "EUR",
                                                "5000") for i in range(200)], by="bench")
        for label, first in (("13 weeks", today - dt.timedelta(days=90)),
                             ("a year", today - dt.timedelta(days=364))):
            print(f"{label}:")
            timed("values per week, first time (rollup filled)", lambda f=first: manager.values(
                store, ZONE, f, today, "week"))
            timed("values per week, again", lambda f=first: manager.values(
                store, ZONE, f, today, "week"))
            timed("values per week in total, again", lambda f=first: manager.values(
                store, ZONE, f, today, "week", by_partner=False))
            timed("values per partner over the range, again",
                  lambda f=first: manager.range_values(store, ZONE, f, today))
            timed("electronic share per week", lambda f=first: manager.electronic_share(
                store, ZONE, f, today, manual={"sms", "pdf"}))
            timed("forecasts against actual (this month, 200 partners)",
                  lambda: manager.forecast_gaps(store, ZONE, today.strftime("%Y-%m"),
                                                today.strftime("%Y-%m"), today=today))
            timed("dropped clients (5 weeks of transmissions)",
                  lambda: manager.dropped_clients(store, ZONE, today))
    finally:
        store.close()
        if schema:
            eng = sa.create_engine(args.store)
            with eng.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            eng.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
