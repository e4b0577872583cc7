#!/usr/bin/env python3
"""Where the gateway's wall time goes on the two end-to-end paths of ``bench_spine.py``.

Runs one gateway phase (``many``: one interchange of --orders orders; ``single``: --files
one-order files) exactly as the benchmark does, with timers around the store's statements
and commits (SQLAlchemy cursor events, by thread and statement), the archive's fsyncs and
the pipeline's stages. Timers cost a little; figures are for attribution, not for the
table (use ``bench_spine.py`` for that). CPU hotspots come from py-spy, see
docs/performance.md:

    python bench/profile_spine.py single --files 1000
    python bench/profile_spine.py many --orders 5000 [--cprofile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_spine as bs
import sqlalchemy as sa

_lock = threading.Lock()
# (thread, what) -> [calls, seconds, calls over 5 ms, max]
_acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0, 0.0])


def _thread() -> str:
    name = threading.current_thread().name
    return re.sub(r"_\d+$", "_*", re.sub(r"^asyncio_\d+", "asyncio_*", name))


def _add(what: str, seconds: float) -> None:
    with _lock:
        a = _acc[(_thread(), what)]
        a[0] += 1
        a[1] += seconds
        a[2] += seconds > 0.005
        a[3] = max(a[3], seconds)


def _sql_key(statement: str) -> str:
    s = " ".join(statement.split())
    s = re.sub(r"\(__\[POSTCOMPILE_\w+\]\)", "(…)", s)
    s = re.sub(r"\?(, \?)+", "?…", s)
    return "SQL " + s[:95]


def instrument_engine(engine: sa.engine.Engine) -> None:
    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, executemany):
        conn.info.setdefault("_t", []).append(time.perf_counter())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):
        _add(_sql_key(statement), time.perf_counter() - conn.info["_t"].pop())

    @sa.event.listens_for(engine, "commit")
    def _commit(conn):
        conn.info["_c"] = time.perf_counter()

    # The commit event fires before the DBAPI commit; time the DBAPI commit itself.
    dialect = engine.dialect
    original = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        t = time.perf_counter()
        try:
            original(dbapi_connection)
        finally:
            _add("COMMIT (fsync of the WAL)", time.perf_counter() - t)

    dialect.do_commit = do_commit  # type: ignore[method-assign]


def timer(owner: Any, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapped(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _add(label, time.perf_counter() - t)

    setattr(owner, name, wrapped)


def instrument_code() -> None:
    from gateway.bus.publisher import OutboxPublisher
    from gateway.channels.folder import watcher
    from gateway.core.pipeline import Pipeline
    from gateway.formats.edifact.reader import EdifactPayload, EdifactReader
    from gateway.store import archive
    from gateway.store.db import Store

    timer(archive.Archive, "put", "fn Archive.put (write + fsync file + fsync dir)")
    timer(archive.Archive, "get", "fn Archive.get (read + sha256)")
    timer(watcher, "_fsync_dir", "fn watcher._fsync_dir")
    timer(watcher.FolderChannel, "scan_once", "fn FolderChannel.scan_once")
    timer(watcher, "_move", "fn watcher._move")
    timer(Pipeline, "receive_many", "fn Pipeline.receive_many")
    timer(Pipeline, "process", "fn Pipeline.process")
    timer(EdifactReader, "parse", "fn EdifactReader.parse")
    timer(EdifactPayload, "documents", "fn EdifactPayload.documents (map)")
    for name in ("record_received_many", "mark_acknowledged_many", "add_event",
                 "record_processed", "mark_published", "pending_outbox", "get_transmission",
                 "find_by_sha256", "unacknowledged_from"):
        timer(Store, name, f"store.{name}")
    timer(OutboxPublisher, "_publish", "fn OutboxPublisher._publish (basic_publish)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["many", "single"])
    ap.add_argument("--orders", type=int, default=5000)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--store", default=None)
    ap.add_argument("--broker", default=bs.DEFAULT_BROKER)
    ap.add_argument("--poll-interval", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--cprofile", help="also cProfile the processing worker threads into FILE")
    args = ap.parse_args()

    instrument_code()
    from gateway.store import db

    original_create = db.create_engine

    def create_engine(url: str) -> Any:
        engine = original_create(url)
        instrument_engine(engine)
        return engine

    db.create_engine = create_engine  # type: ignore[assignment]

    profiles: list[cProfile.Profile] = []
    if args.cprofile:
        from gateway.core.pipeline import Pipeline

        process = Pipeline.process

        def profiled(self: Any, tid: str) -> Any:
            p = cProfile.Profile()
            profiles.append(p)
            return p.runcall(process, self, tid)

        Pipeline.process = profiled  # type: ignore[method-assign]

    tag = secrets.token_hex(3)
    base = Path(tempfile.mkdtemp(prefix="edigw-prof-"))
    objects = bs.BrokerObjects(args.broker)
    try:
        if args.phase == "many":
            files = [(f"orders-{tag}.edi", bs.interchange(f"P{tag}", 1, args.orders))]
            orders = args.orders
        else:
            files = [(f"order-{i:06d}.edi", bs.interchange(f"Q{tag}{i:06d}", 20_000_000 + i, 1))
                     for i in range(args.files)]
            orders = args.files
        r = bs.run_gateway_phase(args.phase, files, orders, args, base, objects)
    finally:
        objects.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    m = r["marks"]
    print(f"{args.phase}: {len(files)} file(s), {orders} orders: received {m['received']:.2f} s, "
          f"processed {m['processed']:.2f} s, published {m['published']:.2f} s, "
          f"{m['cpu']:.2f} s CPU")
    print(f"\n{'thread':<16} {'calls':>7} {'total s':>8} {'ms/call':>8} {'>5ms':>6} {'max ms':>7}  what")
    rows = sorted(_acc.items(), key=lambda kv: -kv[1][1])
    for (thread, what), (calls, total, slow, mx) in rows:
        if total < 0.02 or thread == "MainThread":
            continue
        print(f"{thread:<16} {int(calls):>7} {total:>8.2f} {1000 * total / calls:>8.2f} "
              f"{int(slow):>6} {1000 * mx:>7.1f}  {what}")
    if profiles:
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(args.cprofile)
        stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
