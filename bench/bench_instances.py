#!/usr/bin/env python3
"""Benchmark of several ``edigw serve`` on one PostgreSQL store sharing one inbox (issue 15).

Everything is measured in ONE run on the same machine, so that the ratios mean something:

  1. end to end, for each count of instances in --instances (default 1,2,3), --repeat times:
     a FRESH PostgreSQL database, one shared inbox, N ``edigw --config FILE serve``
     subprocesses (as tests/integration/e2e.py's Service); --files one-order EANCOM ORDERS
     files (bench_spine's generator) written under a staging folder, then renamed into the
     inbox at once. Figures: files/s until every transmission is RECEIVED (durable receive)
     and until every one is PUBLISHED (each document confirmed by RabbitMQ and marked, the
     outbox empty); each instance's share of the transmissions (``transmissions.claimed_by``)
     and of the messages it published (its ``documents_published`` log lines); CPU seconds of
     each instance (with its worker process), of the database's PostgreSQL backends, of
     RabbitMQ (the whole node: other users of the broker count too) and of the machine; and
     from PostgreSQL's own statistics (pg_stat_database, pg_stat_user_tables) the committed
     transactions and the rows inserted, updated and deleted per file; the bytes per file
     left in the database (per table) and in the archive.
  2. a statement census (--census N files, one instance, in this process): the SQL
     statements and commits the gateway sends per one-order file, by verb and table
     (SQLAlchemy ``before_cursor_execute`` / ``commit`` events).
  3. store-level micro-benchmarks on the same PostgreSQL (a fresh database): what the claims
     and leases cost, compared with one instance alone:
       - ``pending_outbox(500)`` with ``store.instance_id`` set (SELECT … FOR UPDATE SKIP
         LOCKED + UPDATE of the claims) and None (a plain SELECT);
       - ``claim_received(500)`` (claimed for an instance) vs ``transmissions_to_process(500)``;
       - ``interchange_refs_seen`` asked once per file (as the pipeline does) vs once per 500;
       - the folder channel's ``_claim`` (rename into ``.claimed/<instance>/``) vs none;
       - the lease keeper's round (heartbeat + one ``take_lease`` per lease, every 5 s), as
         holder and as a second instance that does not get the leases; ``list_instances``
         (the folder's look for dead instances' claims, every 5 s);
       - one look (``scan_once``) at an inbox of --scan-sizes files.
     Each is given per file (or row) and as a share of one instance's per-file end-to-end
     time measured in 1.

Usage:  python bench/bench_instances.py [--files 2000] [--instances 1,2,3] [--repeat 1]
        [--census 500] [--only e2e,census,micro] [--json FILE]
        python bench/bench_instances.py --report FILE.json     (print a saved run again)

The machine's other load changes every figure: the report gives, per run, the CPU the other
processes took (``others``) and the CPU per file, which is steadier than files/s.

PostgreSQL at --pg (default postgresql+psycopg://postgres@127.0.0.1:5432, trust): every
database is named edigw_bench_<random> and dropped afterwards. RabbitMQ at --broker: every
exchange and queue is named bench.<random>.* and deleted at the end. Nothing here asserts:
the script prints figures.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import sqlalchemy as sa  # noqa: E402
from bench_spine import (  # noqa: E402
    DEFAULT_BROKER,
    PARTNER_ID,
    SENDER,
    BrokerObjects,
    interchange,
    loadavg,
    machine,
    rabbit_version,
)

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
LEASE_EVERY = 5.0  # gateway.app.Gateway.LEASE_EVERY: one keeper round per instance


# -- a fresh database, a shared inbox, N instances ------------------------------------------

class Database:
    """A fresh PostgreSQL database (dropped by ``drop``)."""

    def __init__(self, pg: str) -> None:
        self.name = f"edigw_bench_{secrets.token_hex(4)}"
        self.admin = sa.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = f"{pg}/{self.name}"
        # the bench's probe: one pooled connection (its backend's CPU is left out)
        self.engine = sa.create_engine(self.url, pool_size=1, max_overflow=2)
        self.probe_pid = self.scalar("SELECT pg_backend_pid()")

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as c:
            return c.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(sa.text(sql), params).all())

    def stats(self) -> dict[str, Any]:
        """This database's counters (pg_stat_database) and row writes per table."""
        with self.admin.connect() as c:
            c.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            db = c.execute(sa.text(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
                "tup_fetched, tup_returned, blks_read, blks_hit FROM pg_stat_database "
                "WHERE datname = :n"), {"n": self.name}).mappings().one()
        with self.engine.connect() as c:
            c.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            tables = {r.relname: {"ins": r.n_tup_ins, "upd": r.n_tup_upd, "del": r.n_tup_del,
                                  "hot": r.n_tup_hot_upd}
                      for r in c.execute(sa.text(
                          "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd "
                          "FROM pg_stat_user_tables"))}
        return {"db": dict(db), "tables": tables}

    def backend_pids(self) -> list[int]:
        with self.admin.connect() as c:
            return [r[0] for r in c.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": self.name})]

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    db = {k: after["db"][k] - before["db"][k] for k in after["db"]}
    tables = {}
    for name, a in after["tables"].items():
        b = before["tables"].get(name, {"ins": 0, "upd": 0, "del": 0, "hot": 0})
        d = {k: a[k] - b[k] for k in a}
        if any(d.values()):
            tables[name] = d
    return {"db": db, "tables": tables}


def write_config(folder: Path, store_url: str, broker_url: str, tag: str,
                 poll_interval: float) -> tuple[Path, dict[str, Path], dict[str, str]]:
    """gateway.toml for every instance of a run: one store, one inbox, one archive."""
    paths = {k: folder / "var" / k for k in ("inbox", "processed", "failed", "archive")}
    paths["partners"] = folder / "partners"
    paths["staging"] = folder / "staging"
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    names = {"exchange": f"bench.{tag}.documents", "queue": f"bench.{tag}.orders",
             "dlx": f"bench.{tag}.dlx", "dlq": f"bench.{tag}.dead",
             "events": f"bench.{tag}.events", "acks_x": f"bench.{tag}.acks",
             "acks_q": f"bench.{tag}.acks-in"}
    (paths["partners"] / f"{PARTNER_ID}.toml").write_text(
        f'id = "{PARTNER_ID}"\nname = "Bench Retail"\nchannels = ["folder"]\n\n'
        f'[identifiers]\nunb = [{{ id = "{SENDER}", qualifier = "14" }}]\n'
        f'gln = ["{SENDER}"]\n\n[[documents]]\ntype = "order"\nformat = "edifact"\n')
    config = folder / "gateway.toml"
    config.write_text(f"""\
mappings = {json.dumps(str(ROOT / 'mappings'))}
partners = {json.dumps(str(paths['partners']))}

[store]
url = {json.dumps(store_url)}

[broker]
url = {json.dumps(broker_url)}
exchange = "{names['exchange']}"
dead_letter_exchange = "{names['dlx']}"
dead_letter_queue = "{names['dlq']}"

[[broker.queues]]
name = "{names['queue']}"
bindings = ["order.#"]

[archive]
path = {json.dumps(str(paths['archive']))}
fsync = true

[log]
format = "json"
level = "info"

[[inbox]]
path = {json.dumps(str(paths['inbox']))}
processed = {json.dumps(str(paths['processed']))}
failed = {json.dumps(str(paths['failed']))}
poll_interval = {poll_interval}

[http]
port = 0

[tracker]
events_exchange = "{names['events']}"
acks_exchange = "{names['acks_x']}"
acks_queue = "{names['acks_q']}"
""")
    return config, paths, names


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return float((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def pids_named(name: str, user: str | None = None) -> list[int]:
    """Processes called ``name`` (run by ``user``, when that user exists)."""
    import pwd

    try:
        uid = pwd.getpwnam(user).pw_uid if user else None
    except KeyError:
        uid = None
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/comm").read_text().strip() != name:
                    continue
                owner = os.stat(f"/proc/{d}").st_uid
            except OSError:
                continue
            if uid is None or owner == uid:
                out.append(int(d))
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = f[3] + f[4]
    return (sum(f) - idle) / hz, sum(f) / hz


class Instance:
    """``edigw --config FILE serve`` as a subprocess, its JSON log in ``serve-N.log``."""

    def __init__(self, config: Path, n: int) -> None:
        self.log_path = config.parent / f"serve-{n}.log"
        env = {k: v for k, v in os.environ.items()
               if k not in ("EDIGW_CONFIG", "EDIGW_STORE_URL", "EDIGW_BROKER_URL")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
            cwd=config.parent, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def started(self) -> bool:
        names = {e.get("event") for e in self.events()}
        return {"gateway_started", "broker_connected"} <= names and bool(
            names & {"workers_ready", "workers_failed"})

    @property
    def id(self) -> str | None:
        return next((e.get("instance") for e in self.events()
                     if e.get("event") == "instance_registered"), None)

    def published(self) -> int:
        return sum(int(e.get("count", 0)) for e in self.events()
                   if e.get("event") == "documents_published")

    def cpu(self) -> float:
        """CPU seconds of the instance and its live children (the EDIFACT worker)."""
        pid = self.proc.pid
        return proc_cpu(pid) + sum(proc_cpu(c) for c in children(pid))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def one_order_files(n: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"order-{i:06d}.edi", interchange(f"S{tag}{i:06d}", 10_000_000 + i, 1))
            for i in range(n)]


def run_e2e(count: int, files: list[tuple[str, bytes]], args: Any, base: Path,
            objects: BrokerObjects) -> dict[str, Any]:
    """One run: a fresh database, ``count`` instances, ``files`` renamed into the inbox."""
    from gateway.store.db import Store

    tag = secrets.token_hex(4)
    db = Database(args.pg)
    folder = base / f"run-{tag}"
    config, paths, names = write_config(folder, db.url, args.broker, tag, args.poll_interval)
    objects.exchanges += [names["exchange"], names["dlx"], names["events"], names["acks_x"]]
    objects.queues += [names["queue"], names["dlq"], names["acks_q"]]
    instances: list[Instance] = []
    try:
        Store.from_url(db.url).close()  # migrate before the instances start (no race)
        size0 = db.scalar("SELECT pg_database_size(current_database())")
        instances = [Instance(config, n) for n in range(count)]
        deadline = time.monotonic() + 90
        while not all(i.started() for i in instances):
            for i in instances:
                if i.proc.poll() is not None:
                    raise RuntimeError(f"an instance exited; see {i.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"instances did not start; see {folder}/serve-*.log")
            time.sleep(0.1)
        time.sleep(1.0)  # first looks, first lease round
        staged = []
        for name, data in files:
            p = paths["staging"] / name
            p.write_bytes(data)
            staged.append(p)
        ids = [i.id for i in instances]
        before = db.stats()
        pg_pids = [p for p in db.backend_pids() if p != db.probe_pid]
        rabbit = pids_named("beam.smp", "rabbitmq")  # the system broker
        cpu0: dict[str, Any] = {
            "instances": [i.cpu() for i in instances],
            "postgres": sum(proc_cpu(p) for p in pg_pids),
            "rabbitmq": sum(proc_cpu(p) for p in rabbit),
            "machine": machine_busy(),
            "bench": proc_cpu(os.getpid()),
        }
        t0 = time.perf_counter()
        for p in staged:
            os.rename(p, paths["inbox"] / p.name)
        marks = watch(db, t0, len(files), args.timeout, instances)
        # backends opened during the run are counted from zero (they did not exist before)
        pg_pids = sorted((set(pg_pids) | set(db.backend_pids())) - {db.probe_pid})
        m1 = machine_busy()
        cpu: dict[str, Any] = {
            "instances": [i.cpu() - c for i, c in zip(instances, cpu0["instances"], strict=True)],
            "postgres": sum(proc_cpu(p) for p in pg_pids) - cpu0["postgres"],
            "rabbitmq": sum(proc_cpu(p) for p in rabbit) - cpu0["rabbitmq"],
            "machine_busy": m1[0] - cpu0["machine"][0],
            "machine_total": m1[1] - cpu0["machine"][1],
            "bench": proc_cpu(os.getpid()) - cpu0["bench"],
        }
        cpu["others"] = cpu["machine_busy"] - sum(cpu["instances"]) - cpu["postgres"] \
            - cpu["rabbitmq"] - cpu["bench"]
        connections = len(db.backend_pids())
        by_claim = {r[0]: r[1] for r in db.rows(
            "SELECT claimed_by, count(*) FROM transmissions GROUP BY claimed_by")}
        leases = {r[0]: r[1] for r in db.rows("SELECT name, holder FROM leases")}
        published_docs = db.scalar("SELECT count(*) FROM documents WHERE status = 'PUBLISHED'")
        outbox = db.scalar("SELECT count(*) FROM outbox")
        on_queue = objects.wait_count(names["queue"], len(files))
        with db.engine.connect() as c:  # what the run left on disk (WAL and vacuum aside)
            sizes = {"database": c.execute(sa.text(
                "SELECT pg_database_size(current_database())")).scalar_one() - size0}
            sizes.update({r[0]: r[1] for r in c.execute(sa.text(
                "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                "WHERE relname IN ('transmissions', 'transmission_events', 'documents', "
                "'interchanges', 'outbox')"))})
        archive = sum(p.stat().st_blocks * 512 for p in paths["archive"].rglob("*")
                      if p.is_file())
        sizes["archive_on_disk"] = archive
        for i in instances:
            i.stop()
        time.sleep(1.5)  # backends flush their statistics when they end
        after = db.stats()
    finally:
        for i in instances:
            i.stop()
        db.drop()
    if published_docs != len(files) or outbox != 0 or on_queue != len(files):
        raise RuntimeError(f"{published_docs} documents PUBLISHED, {outbox} in the outbox, "
                           f"{on_queue} on the queue; expected {len(files)}, 0, {len(files)}")
    published_by = [i.published() for i in instances]
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return {"instances": count, "files": len(files), "marks": marks, "cpu": cpu,
            "claimed_by": [by_claim.get(i, 0) for i in ids], "published_by": published_by,
            "leases": leases, "lease_count": len(leases), "connections": connections,
            "pg": stats_delta(before, after), "on_queue": on_queue, "bytes": sizes}


def watch(db: Database, t0: float, total: int, timeout: float,
          instances: list[Instance]) -> dict[str, float]:
    """Poll the store every 20 ms: seconds after t0 until all are RECEIVED, PUBLISHED."""
    marks: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    sql = ("SELECT (SELECT count(*) FROM transmissions), "
           "(SELECT count(*) FROM transmissions WHERE status = 'PUBLISHED'), "
           "(SELECT count(*) FROM transmissions WHERE status IN "
           "('FAILED', 'QUARANTINED', 'DUPLICATE')), (SELECT count(*) FROM outbox)")
    polls = 0
    while time.monotonic() < deadline:
        received, published, bad, outbox = db.rows(sql)[0]
        polls += 1
        now = time.perf_counter() - t0
        if bad:
            raise RuntimeError(f"{bad} transmissions FAILED, QUARANTINED or DUPLICATE")
        if received >= total and "received" not in marks:
            marks["received"] = now
        if published >= total and outbox == 0:
            marks["published"] = now
            marks["polls"] = polls
            return marks
        if polls % 50 == 0 and any(i.proc.poll() is not None for i in instances):
            raise RuntimeError("an instance exited during the run")
        time.sleep(0.02)
    raise TimeoutError(f"not done after {timeout} s")


# -- the statement census (one instance, in this process) -----------------------------------

def run_census(files: list[tuple[str, bytes]], args: Any, base: Path,
               objects: BrokerObjects) -> dict[str, Any]:
    """Count the SQL statements and commits of one in-process instance for ``files``."""
    from bench_spine import RunningGateway

    from gateway.store.db import Store

    tag = secrets.token_hex(4)
    db = Database(args.pg)
    folder = base / f"census-{tag}"
    config, paths, names = write_config(folder, db.url, args.broker, tag, args.poll_interval)
    objects.exchanges += [names["exchange"], names["dlx"], names["events"], names["acks_x"]]
    objects.queues += [names["queue"], names["dlq"], names["acks_q"]]
    counts: collections.Counter[str] = collections.Counter()
    checkouts = {"n": 0}
    on = {"counting": False}

    #: the first write of each connection's open transaction, to name its commit
    first_write: dict[int, str] = {}

    def on_statement(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                     executemany: bool) -> None:
        if on["counting"] and conn.engine.url.database == db.name:
            kind = classify(statement)
            counts[kind] += 1
            if not kind.startswith("SELECT") or "FOR UPDATE" in statement:
                first_write.setdefault(id(conn), kind + (" FOR UPDATE" if "FOR UPDATE"
                                                         in statement else ""))

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if on["counting"]:
            checkouts["n"] += 1

    def on_commit(conn: Any) -> None:
        if on["counting"] and conn.engine.url.database == db.name:
            counts["COMMIT"] += 1
            counts[f"COMMIT of a transaction starting {first_write.get(id(conn), '(read)')}"] += 1
        first_write.pop(id(conn), None)

    def on_rollback(conn: Any) -> None:
        first_write.pop(id(conn), None)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_statement)
    sa.event.listen(sa.engine.Engine, "commit", on_commit)
    sa.event.listen(sa.pool.Pool, "checkout", on_checkout)
    sa.event.listen(sa.engine.Engine, "rollback", on_rollback)
    gw: Any = None
    try:
        Store.from_url(db.url).close()
        gw = RunningGateway(SimpleNamespace(config=config, dir=folder))  # type: ignore[arg-type]
        gw.start()
        time.sleep(1.0)
        staged = []
        for name, data in files:
            p = paths["staging"] / name
            p.write_bytes(data)
            staged.append(p)
        # what runs anyway while idle (lease rounds, looks at the inbox, the tracker …)
        on["counting"] = True
        time.sleep(args.idle_census)
        on["counting"] = False
        idle = counts.copy()
        counts.clear()
        on["counting"] = True
        t0 = time.perf_counter()
        for p in staged:
            os.rename(p, paths["inbox"] / p.name)
        checkouts["n"] = 0
        marks = watch(db, t0, len(files), args.timeout, [])
        on["counting"] = False
        busy = counts.copy()
        busy_checkouts = checkouts["n"]
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_statement)
        sa.event.remove(sa.engine.Engine, "commit", on_commit)
        sa.event.remove(sa.pool.Pool, "checkout", on_checkout)
        sa.event.remove(sa.engine.Engine, "rollback", on_rollback)
        if gw is not None:
            gw.stop()
        db.drop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    # the watcher's own polls are SELECTs on this engine too: one statement per poll
    busy["SELECT (bench probe)"] = int(marks["polls"])
    busy["SELECT transmissions"] -= int(marks["polls"])
    # every checkout of a connection: the gateway's engine pings it first (pool_pre_ping)
    return {"files": len(files), "seconds": marks["published"], "statements": dict(busy),
            "checkouts": busy_checkouts - marks["polls"],
            "idle_seconds": args.idle_census, "idle_statements": dict(idle)}


def classify(statement: str) -> str:
    """'INSERT documents', 'UPDATE outbox', 'SELECT transmissions' … from the SQL text."""
    words = statement.replace("\n", " ").split()
    if not words:
        return "?"
    verb = words[0].upper()
    upper = [w.upper() for w in words]
    table = "?"
    key = {"INSERT": "INTO", "UPDATE": "UPDATE", "DELETE": "FROM", "SELECT": "FROM"}.get(verb)
    if key and key in upper:
        table = words[upper.index(key) + 1].strip('"(),')
    elif verb == "SELECT":
        table = "(no table)"
    else:
        return verb
    return f"{verb} {table}"


# -- store-level micro-benchmarks ----------------------------------------------------------

def best_and_median(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def run_micro(args: Any, base: Path, lease_names: list[str]) -> dict[str, Any]:
    from gateway.channels.folder.watcher import FolderChannel, FolderSpec
    from gateway.core.leases import LeaseKeeper
    from gateway.logs import configure
    from gateway.store.db import Store

    configure("console", "error")  # to stderr again (the census's gateway logged to a file)
    # two instances claim 500 rows each: at least 1,000 rows
    rows, loops = max(args.micro_rows, 1000), args.micro_loops
    db = Database(args.pg)
    out: dict[str, Any] = {"rows": rows, "loops": loops}
    store = Store.from_url(db.url)
    try:
        store.register_instance("bench-a", host="bench", pid=1, version=None)
        store.register_instance("bench-b", host="bench", pid=2, version=None)
        populate(store, rows)
        with store.engine.connect() as c:  # fresh statistics for the planner
            c.execute(sa.text("ANALYZE"))
            c.commit()

        # the outbox read: plain (one instance alone, instance_id None) vs claimed
        def outbox(me: str | None) -> Callable[[], Any]:
            def read() -> Any:
                store.instance_id = me
                got = store.pending_outbox(500)
                assert len(got) == 500
            return read
        outbox(None)()  # warm the pool and the caches
        out["pending_outbox_plain"] = best_and_median(outbox(None), loops)
        out["pending_outbox_claim"] = best_and_median(outbox("bench-a"), loops)
        # a second instance while the first one's claims hold: it skips those 500 rows
        out["pending_outbox_claim_other"] = best_and_median(outbox("bench-b"), loops)

        def received(me: str | None, claim: bool) -> Callable[[], Any]:
            def read() -> Any:
                store.instance_id = me
                got = store.claim_received(500) if claim else store.transmissions_to_process(500)
                assert len(got) == 500, len(got)
            return read
        out["to_process_plain"] = best_and_median(received(None, False), loops)
        out["claim_received"] = best_and_median(received("bench-a", True), loops)
        store.instance_id = None

        # the lease keeper's round (heartbeat + one take_lease per lease)
        names = lease_names or ["outbound", "retention", "tracker"]
        holder = LeaseKeeper(store, "bench-a")
        other = LeaseKeeper(store, "bench-b")
        for name in names:
            holder.want(name)
            other.want(name)
        holder.round()
        out["lease_names"] = names
        out["lease_round_holder"] = best_and_median(holder.round, loops)
        out["lease_round_other"] = best_and_median(other.round, loops)
        # the duplicate-interchange check: one query per transmission today vs one per batch
        refs = [f"S{i:08d}" for i in range(500)]
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)

        def refs_one_by_one() -> None:
            for ref in refs:
                store.interchange_refs_seen(PARTNER_ID, [ref], since)
        out["refs_seen_per_file"] = best_and_median(refs_one_by_one, max(3, loops // 5))
        out["refs_seen_batched"] = best_and_median(
            lambda: store.interchange_refs_seen(PARTNER_ID, refs, since), loops)
        out["heartbeat"] = best_and_median(lambda: store.instance_beat("bench-a"), loops)
        out["list_instances"] = best_and_median(store.list_instances, loops)
    finally:
        store.close()
        db.drop()

    # the folder channel's claim: rename into .claimed/<instance>/ (vs the file left in place)
    folder = base / f"claims-{secrets.token_hex(3)}"
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    n: int = args.micro_files

    def claims(instance: str | None) -> float:
        ch = FolderChannel(FolderSpec(path=inbox, processed=folder / "p", failed=folder / "f"),
                           receiver=None,  # type: ignore[arg-type]
                           on_received=lambda r: None, instance_id=instance)
        paths = []
        for i in range(n):
            p = inbox / f"order-{i:06d}.edi"
            p.write_bytes(b"UNA:+.? '\n")
            paths.append(p)
        t0 = time.perf_counter()
        for p in paths:
            ch._claim(p)
        took = time.perf_counter() - t0
        shutil.rmtree(inbox / ".claimed", ignore_errors=True)
        for p in paths:
            p.unlink(missing_ok=True)
        return took / n
    claims(None)
    out["folder_claim_none_per_file"] = min(claims(None) for _ in range(3))
    out["folder_claim_rename_per_file"] = min(claims("bench-a") for _ in range(3))
    shutil.rmtree(folder, ignore_errors=True)

    # one look at an inbox holding many files (listing, stat and ignore patterns per entry):
    # every instance looks at the whole folder every poll_interval
    scans: dict[str, float] = {}
    for size in [int(x) for x in args.scan_sizes.split(",") if x.strip()]:
        folder = base / f"scan-{secrets.token_hex(3)}"
        inbox = folder / "inbox"
        inbox.mkdir(parents=True)
        for i in range(size):
            (inbox / f"order-{i:07d}.edi").write_bytes(b"x")
        times = []
        for _ in range(3):
            ch = FolderChannel(FolderSpec(path=inbox, processed=folder / "p",
                                          failed=folder / "f"),
                               receiver=None,  # type: ignore[arg-type]
                               on_received=lambda r: None, instance_id="bench-a")
            ch._reclaimed_at = time.monotonic()  # the dead-claims look is measured apart
            t0 = time.perf_counter()
            ch.scan_once()  # a first look: every file recorded, none taken yet
            times.append(time.perf_counter() - t0)
        scans[str(size)] = min(times)
        shutil.rmtree(folder, ignore_errors=True)
    out["scan_first_look"] = scans
    return out


def populate(store: Any, rows: int) -> None:
    """``rows`` RECEIVED transmissions, each with one PENDING document and its outbox row
    (the canonical JSON of a one-order file is about 2 KB)."""
    from gateway.store import schema as s

    now = dt.datetime.now(dt.UTC)
    payload = json.dumps({"schema": "edigw.order/1", "pad": "x" * 1900}).encode()
    t: list[dict[str, Any]] = []
    d: list[dict[str, Any]] = []
    o: list[dict[str, Any]] = []
    ic: list[dict[str, Any]] = []
    for i in range(rows):
        tid, did = f"t{i:031d}", f"d{i:031d}"
        t.append(dict(id=tid, channel="folder", channel_ref=f"/in/order-{i:06d}.edi",
                      partner_id=PARTNER_ID, filename=f"order-{i:06d}.edi", size=1214,
                      sha256=f"{i:064x}", received_at=now + dt.timedelta(microseconds=i),
                      status="RECEIVED", updated_at=now, document_count=0, attempts=0))
        d.append(dict(id=did, transmission_id=tid, partner_id=PARTNER_ID, doc_type="order",
                      schema_version="edigw.order/1", business_number=f"PO{i:09d}",
                      message_id=f"{i:032x}", status="PENDING", created_at=now, payload=payload))
        o.append(dict(document_id=did, routing_key=f"order.{PARTNER_ID}", created_at=now))
        ic.append(dict(transmission_id=tid, partner_id=PARTNER_ID, sender_id=SENDER,
                       control_ref=f"S{i:08d}", received_at=now, message_count=1,
                       status="ACCEPTED"))
    with store.engine.begin() as c:
        for start in range(0, rows, 1000):
            c.execute(s.transmissions.insert(), t[start:start + 1000])
            c.execute(s.documents.insert(), d[start:start + 1000])
            c.execute(s.outbox.insert(), o[start:start + 1000])
            c.execute(s.interchanges.insert(), ic[start:start + 1000])


# -- report --------------------------------------------------------------------------------

def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Median and range of files/s per count of instances."""
    out: dict[str, Any] = {}
    by: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in results.get("e2e", []):
        by[r["instances"]].append(r)
    for n, runs in sorted(by.items()):
        pub = [r["files"] / r["marks"]["published"] for r in runs]
        rec = [r["files"] / r["marks"]["received"] for r in runs]
        out[str(n)] = {"published_files_per_s": pub, "received_files_per_s": rec,
                       "published_median": statistics.median(pub),
                       "received_median": statistics.median(rec)}
    return out


def report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    summary = summarize(r)
    one = summary.get("1", {}).get("published_median")
    if r.get("e2e"):
        lines.append("END TO END (files renamed into the shared inbox -> all PUBLISHED, outbox "
                     "empty), fresh PostgreSQL database per run")
        lines.append(f"{'inst':>4} {'recv/s':>7} {'pub/s':>7} {'x1':>5}  {'CPU s: instances':<22}"
                     f"{'pg':>5} {'mq':>5} {'other':>6} {'busy/2c':>8}  share claimed / published")
        for run in r["e2e"]:
            m, c, f = run["marks"], run["cpu"], run["files"]
            pub = f / m["published"]
            busy = c["machine_busy"] / max(c["machine_total"], 1e-9)
            inst = "+".join(f"{x:.1f}" for x in c["instances"])
            share = " ".join(f"{x / f:.0%}" for x in run["claimed_by"])
            pshare = " ".join(f"{x / f:.0%}" for x in run["published_by"])
            lines.append(f"{run['instances']:>4} {f / m['received']:>7.0f} {pub:>7.0f} "
                         f"{pub / one if one else 0:>5.2f}  {inst:<22}{c['postgres']:>5.1f} "
                         f"{c['rabbitmq']:>5.1f} {c['others']:>6.1f} {busy:>8.0%}  {share} / {pshare}")
        lines.append("")
        lines.append("CPU per file (instances + their workers, the database's PostgreSQL "
                     "backends, RabbitMQ), the bound it sets on 2 cores, and the share of the "
                     "machine others took:")
        for run in r["e2e"]:
            c, f = run["cpu"], run["files"]
            ours = sum(c["instances"]) + c["postgres"] + c["rabbitmq"]
            lines.append(f"  {run['instances']} instance(s): {sum(c['instances']) / f * 1000:.2f} "
                         f"+ {c['postgres'] / f * 1000:.2f} + {c['rabbitmq'] / f * 1000:.2f} = "
                         f"{ours / f * 1000:.2f} ms CPU/file -> at most "
                         f"{2 * f / ours:,.0f} files/s on 2 idle cores; others took "
                         f"{c['others'] / max(c['machine_total'], 1e-9):.0%} of the machine")
        lines.append("")
        for n, s in summary.items():
            pub, rec = s["published_files_per_s"], s["received_files_per_s"]
            lines.append(f"{n} instance(s): published median {s['published_median']:.0f} files/s "
                         f"(range {min(pub):.0f}-{max(pub):.0f}, {len(pub)} runs); received "
                         f"median {s['received_median']:.0f} (range {min(rec):.0f}-{max(rec):.0f})")
        first = r["e2e"][0]
        pg = first["pg"]
        f = first["files"]
        lines.append("")
        lines.append(f"PostgreSQL per file (run 1, {first['instances']} instance(s)): "
                     f"{pg['db']['xact_commit'] / f:.2f} commits, "
                     f"{pg['db']['xact_rollback'] / f:.2f} rollbacks (reads), "
                     f"{pg['db']['tup_inserted'] / f:.2f} rows inserted, "
                     f"{pg['db']['tup_updated'] / f:.2f} updated, "
                     f"{pg['db']['tup_deleted'] / f:.2f} deleted; "
                     f"{first['connections']} connections to the database at the end "
                     "(one of them the bench's)")
        if "bytes" in first:
            lines.append("  bytes per file: " + ", ".join(
                f"{k} {v / f:,.0f}" for k, v in first["bytes"].items()))
        for name, d in sorted(pg["tables"].items()):
            lines.append(f"  {name:<24} ins {d['ins'] / f:5.2f}  upd {d['upd'] / f:5.2f} "
                         f"(HOT {d['hot'] / f:5.2f})  del {d['del'] / f:5.2f}")
    census = r.get("census")
    if census:
        f = census["files"]
        st = census["statements"]
        total = sum(v for k, v in st.items() if not k.startswith("COMMIT") and "probe" not in k)
        lines.append("")
        lines.append(f"STATEMENT CENSUS (1 instance in-process, {f} files, "
                     f"{census['seconds']:.1f} s): {total / f:.2f} statements and "
                     f"{st.get('COMMIT', 0) / f:.2f} commits per file (probe polls excluded)")
        for k, v in sorted(st.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {k:<40} {v:>7}  {v / f:6.3f}/file")
        idle = census["idle_statements"]
        lines.append(f"  connection checkouts (each pinged first: pool_pre_ping) "
                     f"{census['checkouts']}, {census['checkouts'] / f:.2f}/file")
        lines.append(f"  idle, {census['idle_seconds']:.0f} s: "
                     f"{sum(v for k, v in idle.items() if not k.startswith('COMMIT'))} statements, "
                     f"{idle.get('COMMIT', 0)} commits")
    micro = r.get("micro")
    if micro:
        per_file = 1 / one if one else None
        lines.append("")
        lines.append("CLAIMS AND LEASES on the same PostgreSQL (median of "
                     f"{micro['loops']}; share of one instance's per-file e2e time "
                     f"{per_file * 1000:.2f} ms)" if per_file else "CLAIMS AND LEASES")

        def row(label: str, per: float, note: str = "") -> None:
            share = f"{per / per_file:6.1%}" if per_file else "   ?"
            lines.append(f"  {label:<52} {per * 1e6:8.1f} µs  {share}  {note}")
        plain = micro["pending_outbox_plain"][1]
        claim = micro["pending_outbox_claim"][1]
        other = micro["pending_outbox_claim_other"][1]
        row("pending_outbox(500) plain SELECT, per row", plain / 500,
            f"{plain * 1000:.1f} ms per call")
        row("pending_outbox(500) claimed (FOR UPDATE SKIP LOCKED+UPDATE)", claim / 500,
            f"{claim * 1000:.1f} ms per call")
        row("  extra cost of the claim, per row", (claim - plain) / 500)
        row("  second instance skipping 500 claimed rows, per row", other / 500,
            f"{other * 1000:.1f} ms per call")
        tp, cr = micro["to_process_plain"][1], micro["claim_received"][1]
        row("transmissions_to_process(500), per row", tp / 500, f"{tp * 1000:.1f} ms per call")
        row("claim_received(500), per row", cr / 500,
            f"{cr * 1000:.1f} ms per call; only at start and in the 1-min sweep")
        rs, rb = micro["refs_seen_per_file"][1], micro["refs_seen_batched"][1]
        row("interchange_refs_seen, one query per file (today)", rs / 500)
        row("interchange_refs_seen, one query per 500 files", rb / 500)
        rn, rc = micro["folder_claim_none_per_file"], micro["folder_claim_rename_per_file"]
        row("folder _claim: none, per file", rn)
        row("folder _claim: rename into .claimed/<instance>/, per file", rc)
        lh, lo = micro["lease_round_holder"][1], micro["lease_round_other"][1]
        k = len(micro["lease_names"])
        if one:
            row(f"lease round as holder ({k} leases), per file at 1-inst rate",
                lh / (LEASE_EVERY * one), f"{lh * 1000:.1f} ms per round every {LEASE_EVERY:.0f} s")
            row("lease round, not holder, per file at 1-inst rate", lo / (LEASE_EVERY * one),
                f"{lo * 1000:.1f} ms per round")
            for size, took in micro.get("scan_first_look", {}).items():
                lines.append(f"  one look at an inbox of {int(size):>7,} files: {took * 1000:8.1f} ms "
                             f"({took / int(size) * 1e6:.1f} µs per entry), every poll_interval, "
                             "on every instance")
            li = micro["list_instances"][1]
            row("list_instances (dead claims look, 5 s), per file", li / (LEASE_EVERY * one),
                f"{li * 1000:.2f} ms per call")
    lines.append("")
    lines.append(f"load average at start {r.get('loadavg_start')}, at end {r.get('loadavg_end')}"
                 f"; {r.get('machine')}; PostgreSQL and RabbitMQ run on the same cores")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000, help="one-order files per run")
    ap.add_argument("--instances", default="1,2,3", help="instance counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=1, help="runs per instance count")
    ap.add_argument("--census", type=int, default=500, help="files of the statement census")
    ap.add_argument("--idle-census", type=float, default=10.0,
                    help="seconds of idle statements counted before the census")
    ap.add_argument("--micro-rows", type=int, default=5000,
                    help="rows of the claims' database (at least 1,000)")
    ap.add_argument("--micro-loops", type=int, default=30)
    ap.add_argument("--micro-files", type=int, default=2000)
    ap.add_argument("--scan-sizes", default="1000,10000,100000",
                    help="inbox sizes of the folder-scan measurement")
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL without database")
    ap.add_argument("--broker", default=os.environ.get("EDIGW_BROKER_URL", DEFAULT_BROKER))
    ap.add_argument("--poll-interval", type=float, default=0.2)
    ap.add_argument("--only", default="e2e,census,micro")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument("--report", metavar="JSON", help="print the report of a saved run and exit")
    args = ap.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    only = set(args.only.split(","))
    counts = [int(x) for x in args.instances.split(",") if x.strip()]
    warnings.filterwarnings("ignore", module="pydifact")

    base = Path(tempfile.mkdtemp(prefix="edigw-bench-inst-"))
    objects = BrokerObjects(args.broker)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "rabbitmq": rabbit_version(args.broker), "files": args.files, "instances": counts,
        "repeat": args.repeat, "poll_interval": args.poll_interval,
        "loadavg_start": loadavg(), "argv": sys.argv[1:]}
    with sa.create_engine(f"{args.pg}/postgres").connect() as c:
        results["postgresql"] = c.execute(sa.text("SHOW server_version")).scalar()
    print(f"edigw instances benchmark — {results['date']} — {results['machine']}, RabbitMQ "
          f"{results['rabbitmq']}, PostgreSQL {results['postgresql']}, load average "
          f"{results['loadavg_start']}", flush=True)
    run_tag = secrets.token_hex(3)
    try:
        if "e2e" in only:
            results["e2e"] = []
            for rep in range(args.repeat):
                for n in counts:
                    files = one_order_files(args.files, f"{run_tag}{rep}{n}")
                    r = run_e2e(n, files, args, base, objects)
                    results["e2e"].append(r)
                    m = r["marks"]
                    print(f"run {rep + 1}, {n} instance(s): {args.files} files received "
                          f"{m['received']:.2f} s = {args.files / m['received']:.0f}/s, "
                          f"published {m['published']:.2f} s = "
                          f"{args.files / m['published']:.0f}/s; claimed {r['claimed_by']}, "
                          f"published {r['published_by']}; load {loadavg()}", flush=True)
        if "census" in only and args.census:
            results["census"] = run_census(one_order_files(args.census, f"{run_tag}c"), args,
                                           base, objects)
            print(f"census: {args.census} files", flush=True)
        if "micro" in only:
            lease_names = sorted(results["e2e"][0]["leases"]) if results.get("e2e") else []
            results["micro"] = run_micro(args, base, lease_names)
            print("micro-benchmarks done", flush=True)
    finally:
        results["loadavg_end"] = loadavg()
        objects.cleanup()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")
    results["summary"] = summarize(results)
    print()
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
