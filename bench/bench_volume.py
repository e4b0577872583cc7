#!/usr/bin/env python3
"""Benchmark of edigw at volume: a store of N transmissions (1 M by default), then the
figures issue 18 sets targets for.

  1. fills a store with N inbound transmissions over the last ~90 days, spread over 40
     partners (a few big, many small), channels, formats and statuses (most PUBLISHED, some
     FAILED, QUARANTINED, DUPLICATE, PARTIAL, HELD), with their documents (mostly one order,
     some with many, and one 20,000-order interchange today), events and interchanges, in big
     bulk batches (sqlite3 ``executemany``; PostgreSQL ``COPY``);
  2. "where is order X": ``gateway.tracker.explain.explain`` for a random existing order
     number, with and without its partner, and the ``edigw find`` lookup
     (``Store.find_documents``), p50/p95 over --lookups;
  3. the real console app (``Gateway.console_routes`` under uvicorn on loopback, an API
     token): ``/api/search?number=`` and every console page, p50/p95 over --requests each
     (the first, cold request shown apart);
  4. whole ``edigw`` processes: ``--help``, ``log --limit 20``, ``find X``.

Usage:  python bench/bench_volume.py [--transmissions N] [--sqlite] [--postgres]
        [--url URL] [--keep FILE] [--reuse FILE] [--json FILE]

--sqlite (default) fills a SQLite file in a temporary folder; --postgres creates a uniquely
named database on --pg-server (default postgresql://127.0.0.1:5432/test's server) and drops
it afterwards; --url names a store to fill as it is (it must be empty). Nothing here asserts:
the script prints figures and whether the targets are met (pages <= 300 ms, p95 of "where is
order X" <= 20 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAYS = 90
BIG_ORDERS = 20_000  # the one big interchange of today (the "after one 20,000-order")
PAGE_TARGET_MS = 300.0
LOOKUP_TARGET_MS = 20.0
CHANNELS = [("sftp", 40), ("as2", 25), ("folder", 12), ("email", 10), ("portal", 6),
            ("http", 5), ("sms", 2)]
FORMATS = {"sms": ["sms"], "email": ["edifact", "pdf", "xml"], "portal": ["csv", "pdf", "xml"]}
STATUSES = [("PUBLISHED", 9100), ("FAILED", 300), ("QUARANTINED", 200), ("DUPLICATE", 150),
            ("PARTIAL", 100), ("HELD", 50), ("PROCESSED", 100)]
CURRENCIES = [("EUR", 90), ("GBP", 7), ("USD", 3)]


def _pick(pairs: list[tuple[str, int]]) -> Callable[[], str]:
    names, weights = [p[0] for p in pairs], [p[1] for p in pairs]
    cum = [sum(weights[: i + 1]) for i in range(len(weights))]

    def pick() -> str:
        return random.choices(names, cum_weights=cum)[0]

    return pick


# -- the fill ---------------------------------------------------------------------------------


@dataclass
class Rows:
    """One batch of rows per table, as tuples in the column order of ``COLUMNS``."""

    transmissions: list[tuple[Any, ...]]
    documents: list[tuple[Any, ...]]
    transmission_events: list[tuple[Any, ...]]
    interchanges: list[tuple[Any, ...]]


COLUMNS = {
    "transmissions": ["id", "channel", "channel_ref", "partner_id", "filename", "size", "sha256",
                      "received_at", "acknowledged_at", "status", "stage", "reason", "format",
                      "standard", "document_count", "duplicate_of", "updated_at", "attempts",
                      "direction"],
    "documents": ["id", "transmission_id", "partner_id", "doc_type", "schema_version",
                  "business_number", "interchange_ref", "message_ref", "message_id", "status",
                  "created_at", "published_at", "payload", "stage", "reason", "erp_status",
                  "erp_at", "content_sha"],
    "transmission_events": ["transmission_id", "at", "event", "detail"],
    "interchanges": ["transmission_id", "partner_id", "sender_id", "sender_qualifier",
                     "recipient_id", "control_ref", "prepared", "received_at", "message_count",
                     "status", "reason"],
}


class Generator:
    """Realistic rows, newest last; ``orders`` keeps (number, partner) of a sample of the
    order documents written, for the lookups."""

    def __init__(self, n: int, now: dt.datetime, partners: list[str]) -> None:
        self.n, self.now, self.partners = n, now, partners
        # A few big partners and a long tail (Zipf-like weights).
        self.partner = _pick([(p, int(10_000 / (i + 1))) for i, p in enumerate(partners)])
        self.channel = _pick(CHANNELS)
        self.status = _pick(STATUSES)
        self.currency = _pick(CURRENCIES)
        self.orders: list[tuple[str, str]] = []
        self.order_seq = 0
        self.doc_seq = 0
        self.ic_seq: dict[str, int] = {}
        self.start = now - dt.timedelta(days=DAYS)

    def _id(self, at: dt.datetime) -> str:
        self.doc_seq += 1
        return f"{int(at.timestamp() * 1000):012x}{self.doc_seq & 0xFFFF:04x}{random.getrandbits(32):08x}"

    def _payload(self, number: str, partner: str, lines: int) -> bytes:
        cur = self.currency()
        ls = [{"line_number": i + 1, "gtin": f"54{random.getrandbits(36):011d}"[:13],
               "quantity": str(random.randint(1, 48)), "unit_price": f"{random.randint(100, 9999) / 100:.2f}",
               "line_amount": f"{random.randint(100, 99999) / 100:.2f}"} for i in range(lines)]
        return json.dumps({"type": "order", "order_number": number, "partner": partner,
                           "currency": cur, "lines": ls}, separators=(",", ":")).encode()

    def batches(self, size: int) -> Iterator[Rows]:
        span = (self.now - self.start).total_seconds() - 3600
        step = span / self.n
        big_at = self.n - self.n // 200  # the 20,000-order interchange, today
        rows = Rows([], [], [], [])
        for i in range(self.n):
            at = self.start + dt.timedelta(seconds=i * step + random.random() * step)
            self._one(at, rows, big=(i == big_at))
            if len(rows.transmissions) >= size:
                yield rows
                rows = Rows([], [], [], [])
        if rows.transmissions:
            yield rows

    def _one(self, at: dt.datetime, rows: Rows, *, big: bool) -> None:
        tid = self._id(at)
        channel = self.channel()
        fmt = random.choice(FORMATS.get(channel, ["edifact", "edifact", "edifact", "xml", "csv"]))
        status = "PUBLISHED" if big else self.status()
        partner: str | None = self.partners[0] if big else self.partner()
        reason = stage = None
        ndocs = 0
        if status == "QUARANTINED":
            partner, reason, stage = None, "no partner has the sender 5499999000017 (UNB)", "identify"
        elif status == "FAILED":
            reason, stage = "segment LIN at line 14: quantity 'x2' is not a number", "map"
        elif status != "DUPLICATE":
            ndocs = BIG_ORDERS if big else (1 if random.random() < 0.95 else random.randint(2, 12))
        done = at + dt.timedelta(seconds=random.uniform(0.05, 2))
        sha = secrets.token_hex(32)
        name = f"{'ORDERS' if fmt == 'edifact' else 'po'}_{tid[-8:]}.{'edi' if fmt == 'edifact' else fmt}"
        rows.transmissions.append((
            tid, channel, f"/in/{partner or 'unknown'}/{name}", partner, name,
            ndocs * 900 + random.randint(300, 5000), sha, at, at, status, stage, reason, fmt,
            "EANCOM D96A" if fmt == "edifact" else None, ndocs,
            None, done, 1, "in"))
        rows.transmission_events.append((tid, at, "received", f"via {channel}, sha256 {sha[:12]}"))
        rows.transmission_events.append((tid, done, status.lower(), reason))
        if fmt == "edifact" and partner is not None:
            ref = self.ic_seq[partner] = self.ic_seq.get(partner, 1000) + 1
            rows.interchanges.append((tid, partner, "5412345000013", "14", "4012345000016",
                                      str(ref), at.strftime("%y%m%d:%H%M"), at, ndocs,
                                      "ACCEPTED" if status != "FAILED" else "REJECTED", reason))
        for k in range(ndocs):
            self.order_seq += 1
            doc_type = "order" if random.random() < 0.88 or big else "invoice"
            number = f"{'PO' if doc_type == 'order' else 'INV'}{self.order_seq:09d}"
            dstat = {"PUBLISHED": "PUBLISHED", "PARTIAL": "PUBLISHED" if k else "FAILED",
                     "HELD": "CONFLICT", "PROCESSED": "PENDING"}.get(status, "PUBLISHED")
            erp = "ACCEPTED" if dstat == "PUBLISHED" and random.random() < 0.9 else None
            rows.documents.append((
                self._id(at), tid, partner, doc_type, "1.0", number,
                str(self.ic_seq.get(partner or "", 0)), str(k + 1), secrets.token_hex(16),
                dstat, done, done if dstat == "PUBLISHED" else None,
                self._payload(number, partner or "", 2 if big else random.randint(1, 6)),
                "map" if dstat == "FAILED" else None,
                "line 3: unknown GTIN" if dstat == "FAILED" else None,
                erp, done + dt.timedelta(seconds=3) if erp else None, secrets.token_hex(32)))
            if doc_type == "order" and (big and k % 1000 == 0 or not big and random.random() < 0.02):
                self.orders.append((number, partner or ""))


def _sqlite_value(v: Any) -> Any:
    # The format SQLAlchemy's SQLite dialect stores datetimes in (UTC, no offset).
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def fill_sqlite(path: str, gen: Generator, batch: int) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -1000000")
    for rows in gen.batches(batch):
        for table, cols in COLUMNS.items():
            data = getattr(rows, table)
            if data:
                con.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [tuple(_sqlite_value(v) for v in r) for r in data])
        con.commit()
        print(f"  {gen.order_seq:,} documents …", end="\r", flush=True)
    con.execute("ANALYZE")
    con.commit()
    con.close()


def fill_postgres(url: sa.URL, gen: Generator, batch: int) -> None:
    import psycopg

    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                         password=url.password) as con:
        for rows in gen.batches(batch):
            with con.cursor() as cur:
                for table, cols in COLUMNS.items():
                    data = getattr(rows, table)
                    if not data:
                        continue
                    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                        for r in data:
                            copy.write_row(r)
            con.commit()
            print(f"  {gen.order_seq:,} documents …", end="\r", flush=True)
        con.autocommit = True
        con.execute("VACUUM ANALYZE")


# -- measuring --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


@dataclass
class Figure:
    name: str
    samples: list[float]  # milliseconds
    target: float | None = None
    cold: float | None = None

    def line(self) -> str:
        p50, p95 = statistics.median(self.samples), pct(self.samples, 0.95)
        ok = "" if self.target is None else ("ok" if p95 <= self.target else "SLOW")
        cold = f"{self.cold:9.1f}" if self.cold is not None else " " * 9
        return f"{self.name:<44} {p50:9.1f} {p95:9.1f} {cold}  {ok}"


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _partners(ids: list[str]) -> Any:
    from gateway.config import (
        DocumentSettings,
        Identifiers,
        Partner,
        PartnerDirectory,
        UnbIdentifier,
    )

    return PartnerDirectory([Partner(
        id=p, name=p.title(),
        identifiers=Identifiers(unb=[UnbIdentifier(id=f"54{i:011d}", qualifier="14")]),
        documents=[DocumentSettings(type="order", format="edifact", mapping="eancom-orders-d96a")])
        for i, p in enumerate(ids)])


def measure(url: str, tmp: Path, gen: Generator, args: argparse.Namespace) -> list[Figure]:
    import httpx

    from gateway.app import Gateway
    from gateway.config import GatewaySettings
    from gateway.http.server import HttpServer, build_app
    from gateway.tracker.explain import explain

    settings = GatewaySettings(
        store={"url": url}, archive={"path": tmp / "archive", "fsync": False},
        inbox=[{"path": tmp / "inbox"}], mappings=ROOT / "mappings",
        outbound={"path": tmp / "outbound"}, partners=tmp / "partners")
    gw = Gateway.open(settings, partners=_partners(gen.partners))
    figures: list[Figure] = []
    only = set(args.only.split(","))
    sample = [random.choice(gen.orders) for _ in range(args.lookups)]
    it = iter(sample * 3)
    for label, with_partner in () if "lookups" not in only else (("explain (where is order X)", False),
                                ("explain --partner (where is order X)", True)):
        def one(with_partner: bool = with_partner) -> None:
            number, partner = next(it)
            explain(gw.store, gw.partners, gw.settings, number=number,
                    partner=partner if with_partner else None)
        figures.append(Figure(label, timed(one, args.lookups), LOOKUP_TARGET_MS))
        print(figures[-1].line(), flush=True)

    def find() -> None:
        number, _ = next(it)
        gw.store.find_documents(business_number=number, partner=None)
    if "lookups" in only:
        figures.append(Figure("find (Store.find_documents)", timed(find, args.lookups),
                              LOOKUP_TARGET_MS))
        print(figures[-1].line(), flush=True)

    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0)
    server.start_in_thread()
    auth = state["auth"]
    user = f"bench-{secrets.token_hex(3)}"  # a store measured again keeps earlier users
    auth.users.create(user, "bench-password-long-enough", "admin")
    token = auth.tokens.create(auth.users.by_username(user), "bench")[0]
    try:
        with httpx.Client(base_url=server.url, timeout=900,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            def get(path: str) -> Callable[[], None]:
                def go() -> None:
                    r = client.get(path() if callable(path) else path)
                    if r.status_code != 200:
                        raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
                return go

            numbers = iter(sample * 3)
            search = get(lambda: f"/api/search?number={next(numbers)[0]}")  # type: ignore[arg-type]
            if "http" in only:
                cold = timed(search, 1)[0]
                figures.append(Figure("HTTP /api/search?number=",
                                      timed(search, args.lookups // 2), LOOKUP_TARGET_MS, cold))
                print(figures[-1].line(), flush=True)
            tid = _a_transmission(gw)
            pages = [("/", "dashboard /"), ("/transmissions", "/transmissions (log)"),
                     ("/partners", "/partners"), (f"/partners/{gen.partners[0]}",
                                                  "/partners/<biggest>"),
                     (f"/partners/{gen.partners[-1]}", "/partners/<smallest>"),
                     ("/alerts", "/alerts"), ("/conflicts", "/conflicts"), ("/audit", "/audit"),
                     (f"/search?q={sample[0][0]}", "/search?q=<order>"),
                     (f"/api/search?q={sample[1][0]}", "/api/search?q=<order>"),
                     (f"/transmissions?q={sample[2][0]}", "/transmissions?q=<order>"),
                     ("/quarantine", "/quarantine"), ("/manager", "/manager"),
                     (f"/transmissions/{tid}", "/transmissions/<id>"),
                     (f"/transmissions/{_a_transmission(gw, biggest=True)}",
                      "/transmissions/<20,000 orders>"), ("/metrics", "/metrics (scrape)")]
            for path, label in pages if "pages" in only else ():
                go = get(path)
                cold = timed(go, 1)[0]
                figures.append(Figure(label, timed(go, args.requests), PAGE_TARGET_MS, cold))
                print(figures[-1].line(), flush=True)
    finally:
        server.stop()
        gw.close()
    if "cli" in only:
        figures += cli(url, tmp, sample[0][0], args.runs)
    return figures


def _a_transmission(gw: Any, *, biggest: bool = False) -> str:
    """The latest one-document transmission, or the one with the most documents."""
    from gateway.store import schema as s

    t = s.transmissions
    q = (sa.select(t.c.id).order_by(t.c.document_count.desc()) if biggest else
         sa.select(t.c.id).where(t.c.document_count == 1).order_by(t.c.received_at.desc()))
    with gw.store.engine.connect() as conn:
        return str(conn.execute(q.limit(1)).scalar_one())


def cli(url: str, tmp: Path, number: str, runs: int) -> list[Figure]:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "bench.toml"
    config.write_text(f'[store]\nurl = "{url}"\n[archive]\npath = "{tmp / "archive"}"\n'
                      f'[[inbox]]\npath = "{tmp / "inbox"}"\n')
    env = {**os.environ, "EDIGW_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    out = []
    for argv in (["--help"], ["log", "--limit", "20"], ["find", number]):
        def run(argv: list[str] = argv) -> None:
            p = subprocess.run([sys.executable, "-m", "gateway.cli", *argv], env=env,
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"edigw {' '.join(argv)}: {p.returncode} {p.stderr[-500:]}")
        run()  # warm the file cache
        out.append(Figure(f"process: edigw {' '.join(argv)}", timed(run, runs), PAGE_TARGET_MS))
        print(out[-1].line(), flush=True)
    return out


# -- main -------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    server = sa.make_url(PG_SERVER)
    name = f"bench_volume_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _sample_orders(store: Any, n: int) -> list[tuple[str, str]]:
    """Random existing order numbers of a store filled before, with their partner."""
    from gateway.store import schema as s

    d = s.documents
    with store.engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.count()).select_from(d)).scalar_one()
        rows = conn.execute(sa.select(d.c.business_number, d.c.partner_id)
                            .where(d.c.doc_type == "order")
                            .offset(random.randrange(max(1, top - 5 * n))).limit(5 * n)).all()
    return [(r[0], r[1]) for r in random.sample(rows, min(n, len(rows)))]


def run(url: str, tmp: Path, args: argparse.Namespace) -> list[Figure]:
    from gateway.store.db import Store

    random.seed(args.seed)
    now = dt.datetime.now(dt.UTC)
    gen = Generator(args.transmissions, now, [f"partner{i:02d}" for i in range(1, 41)])
    parsed = sa.make_url(url)
    if args.filled or (args.store_file and Path(args.store_file).exists()):
        t0 = time.perf_counter()
        store = Store.from_url(url)  # migrated to this checkout's revision
        gen.orders = _sample_orders(store, args.lookups)
        store.engine.dispose()
        print(f"reusing {args.filled or args.store_file} (opened and migrated in "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"{'':<44} {'p50 ms':>9} {'p95 ms':>9} {'cold ms':>9}")
        return measure(url, tmp, gen, args)
    store = Store.from_url(url)  # creates the tables at the current revision
    store.engine.dispose()
    t0 = time.perf_counter()
    if parsed.get_backend_name() == "sqlite":
        fill_sqlite(str(parsed.database), gen, args.batch)
    else:
        fill_postgres(parsed, gen, args.batch)
    took = time.perf_counter() - t0
    print(f"filled {args.transmissions:,} transmissions, {gen.order_seq:,} documents "
          f"in {took:.0f} s ({parsed.get_backend_name()})", flush=True)
    print(f"{'':<44} {'p50 ms':>9} {'p95 ms':>9} {'cold ms':>9}")
    return measure(url, tmp, gen, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transmissions", type=int, default=1_000_000)
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file (the default)")
    ap.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    ap.add_argument("--url", help="an empty store to fill instead")
    ap.add_argument("--batch", type=int, default=20_000, help="transmissions per bulk batch")
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5, help="runs of each edigw process")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--only", default="lookups,http,pages,cli",
                    help="what to measure: lookups, http, pages, cli (comma-separated)")
    ap.add_argument("--filled", help="a store URL filled by an earlier run: measured, not filled")
    ap.add_argument("--store-file", help="a SQLite file to keep: filled when it does not exist, "
                                         "measured as it is when it does")
    ap.add_argument("--json", help="write the figures there")
    args = ap.parse_args()
    results: dict[str, list[Figure]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-volume-"))
    try:
        if args.filled:
            (tmp / "filled").mkdir()
            results["filled"] = run(args.filled, tmp / "filled", args)
        if args.url:
            (tmp / "url").mkdir()
            results["url"] = run(args.url, tmp / "url", args)
        if args.filled:
            pass
        elif args.store_file:
            (tmp / "file").mkdir()
            results["sqlite"] = run(f"sqlite:///{Path(args.store_file).resolve()}",
                                    tmp / "file", args)
        elif args.sqlite or not (args.url or args.postgres):
            (tmp / "sqlite").mkdir()
            results["sqlite"] = run(f"sqlite:///{tmp / 'sqlite' / 'store.sqlite3'}",
                                    tmp / "sqlite", args)
        if args.postgres:
            with postgres_database() as url:
                results["postgresql"] = run(url, tmp / "postgresql", args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for backend, figures in results.items():
        print(f"\n{backend}, {args.transmissions:,} transmissions")
        print(f"{'':<44} {'p50 ms':>9} {'p95 ms':>9} {'cold ms':>9}")
        for f in figures:
            print(f.line())
    if args.json:
        Path(args.json).write_text(json.dumps({b: [
            {"name": f.name, "p50": statistics.median(f.samples), "p95": pct(f.samples, 0.95),
             "cold": f.cold, "target": f.target} for f in fs] for b, fs in results.items()},
            indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
