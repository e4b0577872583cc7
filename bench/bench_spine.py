#!/usr/bin/env python3
"""Benchmark of edigw's spine: inbox file -> canonical order confirmed on RabbitMQ -> recorded.

Everything is measured in ONE run on the same machine, so that the ratios mean something:

  1. synthetic EANCOM ORDERS D96A: one interchange of --orders messages, and --files files of
     one order each (UNA, UNB with a sender id, UNH..UNT with BGM, DTM 137/2, NAD BY/SU/DP
     with GLNs, CUX, 5 x LIN/PIA/IMD/QTY/MOA/PRI, UNS, CNT, UNT; correct counts)
  2. pydifact's raw parse of the big file (Interchange.from_str + iterating the segments)
  3. edigw's own parse (read_interchanges), parse + map, parse + map + canonical JSON
  4. a raw pika publish loop with confirms on the same broker: SelectConnection with up to
     256 unconfirmed persistent messages (quorum queue, as the gateway declares, and a
     classic durable queue), plus the naive BlockingConnection one-confirm-per-message rate
  5. the real gateway (Gateway.open + serve, in a thread of this process) fed the big file
     through its inbox: time from the rename into the inbox until the transmission is
     PUBLISHED (every document confirmed by the broker and recorded, outbox empty)
  6. the same with --files one-order files renamed into the inbox at once: files/s until all
     are PUBLISHED, and the durable-receive rate (until every file is recorded RECEIVED)

Usage:  python bench/bench_spine.py [--orders N] [--files N] [--store URL] [--broker URL]
        [--only parse,pika,many,single] [--json FILE]

Broker objects get unique names (bench.<random>.*) and are deleted at the end; a PostgreSQL
--store gets a fresh database per gateway phase, dropped afterwards. Nothing here asserts:
the script prints figures and whether the targets of the performance issue are met.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pika  # noqa: E402
import sqlalchemy as sa  # noqa: E402

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"
SENDER = "5412345000013"  # UNB S002 0004 of the synthetic partner (a valid GLN)
RECIPIENT = "4012345000016"
PARTNER_ID = "bench-retail"
LINES_PER_ORDER = 5

# Targets of the performance issue, for this machine (2 cores).
TARGET_MANY_ORDERS_PER_S = 2000.0
TARGET_RATIO_VS_PYDIFACT = 3.0
TARGET_SINGLE_FILES_PER_S = 500.0


# -- 1. synthetic EANCOM ORDERS D96A ---------------------------------------------------------

def gs1(base: str) -> str:
    """``base`` with its GS1 mod-10 check digit appended (GLN from 12 digits, GTIN-13 too)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(base)))
    return base + str((10 - total % 10) % 10)


def order_message(ref: str, number: int) -> list[str]:
    """The segments of one ORDERS message (without terminators); UNT counts them."""
    n = number
    by = gs1(f"540123{n % 1000000:06d}")
    su = gs1(f"400123{(n * 7) % 1000000:06d}")
    dp = gs1(f"540199{(n * 3) % 1000000:06d}")
    day = 1 + n % 28
    segs = [
        f"UNH+{ref}+ORDERS:D:96A:UN:EAN008",
        f"BGM+220+PO{n:09d}+9",
        f"DTM+137:202403{day:02d}:102",
        f"DTM+2:202404{day:02d}:102",
        f"NAD+BY+{by}::9++Buyer Store {n % 997}+Market Street {n % 89}+Gent++9000+BE",
        f"NAD+SU+{su}::9++Supplier Mills GmbH+Hafenstrasse 5+Bremen++28217+DE",
        f"NAD+DP+{dp}::9++Depot {n % 31}+Industrieweg 4+Gent++9041+BE",
        "CUX+2:EUR:9",
    ]
    for line in range(1, LINES_PER_ORDER + 1):
        gtin = gs1(f"402000{(n * LINES_PER_ORDER + line) % 1000000:06d}")
        qty = 1 + (n + line) % 48
        cents = 100 + (n * 13 + line * 7) % 5000
        price = f"{cents // 100}.{cents % 100:02d}"
        amount = qty * cents
        segs += [
            f"LIN+{line}++{gtin}:EN",
            f"PIA+1+ART-{(n + line) % 9999:04d}:SA",
            f"IMD+F++:::Flour T550 art. {(n + line) % 9999}, bag 25 kg",
            f"QTY+21:{qty}:PCE",
            f"MOA+203:{amount // 100}.{amount % 100:02d}",
            f"PRI+AAA:{price}:CT:NTP:1:PCE",
        ]
    segs += ["UNS+S", f"CNT+2:{LINES_PER_ORDER}"]
    segs.append(f"UNT+{len(segs) + 1}+{ref}")
    return segs


def interchange(control_ref: str, first_order: int, count: int) -> bytes:
    """One UNA/UNB..UNZ interchange of ``count`` orders, one segment per line."""
    out = ["UNA:+.? '",
           f"UNB+UNOC:3+{SENDER}:14+{RECIPIENT}:14+240305:1012+{control_ref}++ORDERS'"]
    for i in range(count):
        out.extend(s + "'" for s in order_message(str(i + 1), first_order + i))
    out.append(f"UNZ+{count}+{control_ref}'")
    return ("\n".join(out) + "\n").encode("ascii")


# -- 2/3. in-memory parse rates --------------------------------------------------------------

def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``fn`` (garbage collected before each)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def pydifact_parse(text: str) -> int:
    """pydifact's raw parse: Interchange.from_str, then iterate every segment; returns #UNH."""
    from pydifact.segmentcollection import Interchange

    ic = Interchange.from_str(text)
    orders = 0
    for seg in ic.segments:
        if seg.tag == "UNH":
            orders += 1
    return orders


def bench_partner() -> Any:
    from gateway.config import Partner

    return Partner.model_validate({
        "id": PARTNER_ID, "name": "Bench Retail",
        "identifiers": {"unb": [{"id": SENDER, "qualifier": "14"}], "gln": [SENDER]},
        "documents": [{"type": "order", "format": "edifact"}]})


def gateway_parse_rates(data: bytes, repeat: int) -> dict[str, Any]:
    """edigw's own reader and mapping, in memory (no store, no broker)."""
    from gateway.core.ports import FailedMessage, MappedDocument
    from gateway.formats.edifact import read_interchanges
    from gateway.formats.edifact.reader import EdifactPayload, EdifactReader
    from gateway.formats.mapping import MappingSet

    mappings = MappingSet.load(ROOT / "mappings")
    reader = EdifactReader(mappings)
    partner = bench_partner()

    def parse() -> int:
        return sum(len(i.messages) for i in read_interchanges(data, filename="bench.edi"))

    def mapped(payload: EdifactPayload) -> list[MappedDocument]:
        docs = payload.documents(partner=partner, transmission_id=None, filename="bench.edi")
        failed = [d for d in docs if isinstance(d, FailedMessage)]
        if failed:  # the generated file must be valid, or the figures measure failures
            raise SystemExit(f"{len(failed)} generated message(s) failed: {failed[0].reason}")
        return docs  # type: ignore[return-value]

    def parse_map() -> int:
        return len(mapped(reader.parse(data, filename="bench.edi")))

    def parse_map_json() -> list[bytes]:
        docs = mapped(reader.parse(data, filename="bench.edi"))
        return [d.document.to_json_bytes() for d in docs]  # type: ignore[attr-defined]

    t_parse, n = timed(parse, repeat)
    t_map, n2 = timed(parse_map, repeat)
    t_json, bodies = timed(parse_map_json, repeat)
    assert n == n2 == len(bodies)
    return {"orders": n, "parse_s": t_parse, "parse_map_s": t_map, "parse_map_json_s": t_json,
            "avg_json_bytes": sum(map(len, bodies)) / len(bodies)}


# -- 4. raw pika ------------------------------------------------------------------------------

class BrokerObjects:
    """Exchanges and queues this run created; all deleted by ``cleanup``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.exchanges: list[str] = []
        self.queues: list[str] = []

    def declare_raw(self, exchange: str, queue: str, quorum: bool) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ch = conn.channel()
            ch.exchange_declare(exchange, exchange_type="topic", durable=True)
            self.exchanges.append(exchange)
            args = {"x-queue-type": "quorum"} if quorum else {"x-queue-type": "classic"}
            ch.queue_declare(queue, durable=True, arguments=args)
            self.queues.append(queue)
            ch.queue_bind(queue, exchange, routing_key="#")
        finally:
            conn.close()

    def message_count(self, queue: str) -> int:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return conn.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            conn.close()

    def wait_count(self, queue: str, expected: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            n = self.message_count(queue)
            if n >= expected or time.monotonic() > deadline:
                return n
            time.sleep(0.2)

    def cleanup(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
        except Exception as exc:  # pragma: no cover
            print(f"cleanup: cannot connect to the broker: {exc}", file=sys.stderr)
            return
        try:
            for q in self.queues:
                try:
                    ch = conn.channel()
                    ch.queue_delete(q)
                    ch.close()
                except Exception as exc:
                    print(f"cleanup: queue {q}: {exc}", file=sys.stderr)
            for x in self.exchanges:
                try:
                    ch = conn.channel()
                    ch.exchange_delete(x)
                    ch.close()
                except Exception as exc:
                    print(f"cleanup: exchange {x}: {exc}", file=sys.stderr)
        finally:
            conn.close()


def _props() -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json",
        message_id=secrets.token_hex(16), type="order", timestamp=int(time.time()),
        headers={"partner": PARTNER_ID, "document_type": "order", "schema": "edigw.order/1"})


def pika_select_rate(url: str, exchange: str, n: int, body: bytes, window: int = 256) -> float:
    """Seconds to get ``n`` persistent mandatory messages confirmed, ``window`` unconfirmed max."""
    state: dict[str, Any] = {"published": 0, "confirmed": 0, "t0": 0.0, "t1": 0.0, "error": None}
    pending: set[int] = set()
    props = _props()

    def pump(ch: Any) -> None:
        while state["published"] < n and len(pending) < window:
            ch.basic_publish(exchange, "order.bench", body, properties=props, mandatory=True)
            state["published"] += 1
            pending.add(state["published"])

    def on_confirm(frame: Any) -> None:
        m = frame.method
        if not isinstance(m, pika.spec.Basic.Ack):
            state["error"] = f"broker answered {type(m).__name__}"
        if m.multiple:
            done = [t for t in pending if t <= m.delivery_tag]
            pending.difference_update(done)
            state["confirmed"] += len(done)
        elif m.delivery_tag in pending:
            pending.discard(m.delivery_tag)
            state["confirmed"] += 1
        if state["confirmed"] >= n:
            state["t1"] = time.perf_counter()
            conn.close()
        else:
            pump(channel[0])

    channel: list[Any] = []

    def on_selected(_frame: Any) -> None:
        state["t0"] = time.perf_counter()
        pump(channel[0])

    def on_channel(ch: Any) -> None:
        channel.append(ch)
        ch.add_on_return_callback(lambda *a: state.update(error="message returned (unroutable)"))
        ch.confirm_delivery(ack_nack_callback=on_confirm, callback=on_selected)

    def on_open_error(c: Any, err: Any) -> None:
        state["error"] = f"cannot connect: {err}"
        c.ioloop.stop()

    conn = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=on_open_error, on_close_callback=lambda c, r: c.ioloop.stop())
    conn.ioloop.start()
    if state["error"] or state["confirmed"] < n:
        raise RuntimeError(f"raw pika loop failed: {state['error']} "
                           f"({state['confirmed']}/{n} confirmed)")
    return state["t1"] - state["t0"]


def pika_blocking_rate(url: str, exchange: str, n: int, body: bytes) -> float:
    """Seconds to publish ``n`` messages, waiting for each confirm (BlockingConnection)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        props = _props()
        t0 = time.perf_counter()
        for _ in range(n):
            ch.basic_publish(exchange, "order.bench", body, properties=props, mandatory=True)
        return time.perf_counter() - t0
    finally:
        conn.close()


# -- 5/6. the gateway, end to end ------------------------------------------------------------

@dataclass
class Phase:
    """A fresh gateway in a temp folder, with its own store and broker names."""

    base: Path
    broker_url: str
    store_url: str | None
    poll_interval: float
    objects: BrokerObjects
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    pg_admin_url: str | None = None
    pg_db: str | None = None

    def __post_init__(self) -> None:
        self.dir = self.base / f"gw-{self.tag}"
        self.inbox = self.dir / "inbox"
        self.staging = self.dir / "staging"
        for d in (self.inbox, self.staging, self.dir / "partners"):
            d.mkdir(parents=True, exist_ok=True)
        self.exchange = f"bench.{self.tag}.documents"
        self.queue = f"bench.{self.tag}.orders"
        self.dlx = f"bench.{self.tag}.dlx"
        self.dlq = f"bench.{self.tag}.dead"
        self.url = self._store_url()
        (self.dir / "partners" / f"{PARTNER_ID}.toml").write_text(
            f'id = "{PARTNER_ID}"\nname = "Bench Retail"\nchannels = ["folder"]\n\n'
            f'[identifiers]\nunb = [{{ id = "{SENDER}", qualifier = "14" }}]\n'
            f'gln = ["{SENDER}"]\n\n[[documents]]\ntype = "order"\nformat = "edifact"\n')
        self.config = self.dir / "gateway.toml"
        self.config.write_text(f"""\
mappings = "{ROOT / 'mappings'}"
partners = "{self.dir / 'partners'}"

[store]
url = "{self.url}"

[broker]
url = "{self.broker_url}"
exchange = "{self.exchange}"
dead_letter_exchange = "{self.dlx}"
dead_letter_queue = "{self.dlq}"

[[broker.queues]]
name = "{self.queue}"
bindings = ["order.#"]

[archive]
path = "{self.dir / 'archive'}"
fsync = true

[log]
format = "console"
level = "info"

[[inbox]]
path = "{self.inbox}"
processed = "{self.dir / 'processed'}"
failed = "{self.dir / 'failed'}"
poll_interval = {self.poll_interval}
""")
        # Registered before the gateway declares them, so that cleanup never misses one.
        self.objects.exchanges += [self.exchange, self.dlx]
        self.objects.queues += [self.queue, self.dlq]

    def _store_url(self) -> str:
        if not self.store_url:
            return f"sqlite:///{self.dir / 'edigw.sqlite3'}"
        if self.store_url.startswith("sqlite"):
            return self.store_url
        # PostgreSQL: a fresh database per phase, dropped by cleanup().
        self.pg_db = f"edigw_bench_{self.tag}"
        admin = sa.engine.make_url(_pg(self.store_url)).set(database="postgres")
        self.pg_admin_url = admin.render_as_string(hide_password=False)
        eng = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{self.pg_db}"'))
        eng.dispose()
        return sa.engine.make_url(_pg(self.store_url)).set(database=self.pg_db) \
            .render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")

    def cleanup(self) -> None:
        if self.pg_db and self.pg_admin_url:
            eng = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)'))
            eng.dispose()


def _pg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


class RunningGateway:
    """The real gateway (Gateway.open + serve) on its own event loop in a thread."""

    def __init__(self, phase: Phase) -> None:
        from gateway.app import Gateway
        from gateway.config import load_settings
        from gateway.logs import configure

        env = {k: v for k, v in os.environ.items()
               if k not in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG")}
        settings = load_settings(phase.config, env=env)
        # Logs as `edigw serve` writes them (console, info), into a file of the phase.
        self.log_file = open(phase.dir / "gateway.log", "w")
        saved, sys.stderr = sys.stderr, self.log_file
        try:
            configure(settings.log.format, settings.log.level)
        finally:
            sys.stderr = saved
        self.gw = Gateway.open(settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="edigw-serve", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            self._ready.set()
            await self.gw.serve(self.stop_event)

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported by start()/stop()
            self.error = exc
            self._ready.set()

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        self._ready.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.error is None:
            pub = self.gw.publisher
            workers = getattr(self.gw.pipeline, "workers", None)
            if pub is not None and pub.health.connected and getattr(pub, "_ready", True) \
                    and self.gw.runs and (workers is None or workers.ready.is_set()):
                time.sleep(0.3)  # the folder channel's first look, the outbox's first read
                return
            time.sleep(0.02)
        raise RuntimeError(f"gateway did not start: {self.error or 'publisher not connected'}")

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(60)
        self.log_file.close()


class SubprocessGateway:
    """The real gateway as its own process: ``edigw --config FILE serve`` (logs to a file)."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.log_path = phase.dir / "gateway.log"
        self.proc: Any = None

    def start(self, timeout: float = 60.0) -> None:
        import subprocess

        env = {k: v for k, v in os.environ.items()
               if k not in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG")}
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from gateway.cli import main; main()",
             "--config", str(self.phase.config), "serve"],
            cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "gateway_started" in text and "broker_connected" in text and (
                    "workers_ready" in text or "workers_failed" in text):
                time.sleep(0.3)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except Exception:
                self.proc.kill()
        self.log_file.close()


class Probe:
    """Reads the gateway's store from outside (its own engine) to see when work is done."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(_pg(url))

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(sa.text(
                "SELECT status, count(*) FROM transmissions GROUP BY status")).all()
        return {r[0]: r[1] for r in rows}

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as c:
            return c.execute(sa.text(sql)).scalar_one()

    def close(self) -> None:
        self.engine.dispose()


def drop_files(phase: Phase, files: list[tuple[str, bytes]]) -> float:
    """Write each file under staging (untimed), then rename all into the inbox; returns t0."""
    staged = []
    for name, data in files:
        p = phase.staging / name
        p.write_bytes(data)
        staged.append(p)
    t0 = time.perf_counter()
    for p in staged:
        os.rename(p, phase.inbox / p.name)
    return t0


def watch(probe: Probe, t0: float, total: int, timeout: float) -> dict[str, float]:
    """Poll the store every 10 ms; seconds after t0 at which all ``total`` transmissions were
    received, processed (documents + outbox committed) and published."""
    marks: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = probe.statuses()
        now = time.perf_counter() - t0
        received = sum(st.values())
        processed = st.get("PROCESSED", 0) + st.get("PUBLISHED", 0)
        bad = {k: v for k, v in st.items() if k in ("FAILED", "QUARANTINED", "DUPLICATE")}
        if bad:
            raise RuntimeError(f"gateway marked transmissions {bad}; see the phase's gateway.log")
        if received >= 1 and "first_received" not in marks:
            marks["first_received"] = now
        if received >= total and "received" not in marks:
            marks["received"] = now
        if processed >= total and "processed" not in marks:
            marks["processed"] = now
        if st.get("PUBLISHED", 0) >= total:
            marks["published"] = now
            return marks
        time.sleep(0.01)
    raise TimeoutError(f"not done after {timeout} s: {probe.statuses()}")


def run_gateway_phase(kind: str, files: list[tuple[str, bytes]], orders: int, args: Any,
                      base: Path, objects: BrokerObjects) -> dict[str, Any]:
    phase = Phase(base, args.broker, args.store, args.poll_interval, objects)
    gw: Any = SubprocessGateway(phase) if getattr(args, "subprocess", False) \
        else RunningGateway(phase)
    probe = Probe(phase.url)
    try:
        gw.start()
        gc.collect()
        cpu = gw.cpu_seconds if isinstance(gw, SubprocessGateway) else time.process_time
        cpu0 = cpu()
        t0 = drop_files(phase, files)
        marks = watch(probe, t0, len(files), timeout=args.timeout)
        marks["cpu"] = cpu() - cpu0  # the gateway's CPU (in-process: every thread of this one)
        published_docs = probe.scalar("SELECT count(*) FROM documents WHERE status = 'PUBLISHED'")
        outbox = probe.scalar("SELECT count(*) FROM outbox")
        on_queue = objects.wait_count(phase.queue, orders)
    finally:
        gw.stop()
        probe.close()
        phase.cleanup()
    if published_docs != orders or outbox != 0 or on_queue != orders:
        raise RuntimeError(f"{kind}: {published_docs} documents PUBLISHED, {outbox} in the "
                           f"outbox, {on_queue} on the queue; expected {orders}, 0, {orders}")
    return {"files": len(files), "orders": orders, "marks": marks, "on_queue": on_queue,
            "log": str(phase.dir / "gateway.log")}


# -- report ------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def rabbit_version(url: str) -> str:
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        props = conn._impl.server_properties
        conn.close()
        return props.get("version", b"?").decode() if isinstance(props.get("version"), bytes) \
            else str(props.get("version"))
    except Exception:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=5000, help="orders in the big interchange")
    ap.add_argument("--files", type=int, default=2000, help="one-order files dropped at once")
    ap.add_argument("--store", default=None,
                    help="store URL (default: a SQLite file in a temp dir; a postgresql:// URL "
                         "gets a fresh database per phase, dropped afterwards)")
    ap.add_argument("--broker", default=os.environ.get("EDIGW_BROKER_URL", DEFAULT_BROKER))
    ap.add_argument("--pika-messages", type=int, default=20000)
    ap.add_argument("--blocking-messages", type=int, default=2000)
    ap.add_argument("--body-size", type=int, default=2048, help="raw pika message size")
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="inbox poll interval (the shipped default is 0.2 s)")
    ap.add_argument("--repeat", type=int, default=3, help="in-memory parses: best of N")
    ap.add_argument("--subprocess", action="store_true",
                    help="run the gateway as `edigw --config FILE serve` in its own process "
                         "(default: Gateway.open + serve in a thread of this process)")
    ap.add_argument("--only", default="parse,pika,many,single",
                    help="comma-separated subset of parse,pika,many,single")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    warnings.filterwarnings("ignore", module="pydifact")
    warnings.filterwarnings("ignore", message=".*segments.xml.*")

    run_tag = secrets.token_hex(3)
    base = Path(tempfile.mkdtemp(prefix="edigw-bench-"))
    objects = BrokerObjects(args.broker)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "rabbitmq": rabbit_version(args.broker), "store": args.store or "sqlite (temp file)",
        "orders": args.orders, "files": args.files, "poll_interval": args.poll_interval,
        "loadavg_start": loadavg(),
        "gateway_mode": "subprocess (edigw serve)" if args.subprocess else "in-process thread"}
    print(f"edigw spine benchmark — {results['date']} — {results['machine']}, "
          f"RabbitMQ {results['rabbitmq']}, load average {results['loadavg_start']}", flush=True)

    try:
        big = interchange(f"BIG{run_tag}", 1, args.orders)
        singles = [(f"order-{i:06d}.edi", interchange(f"S{run_tag}{i:06d}", 10_000_000 + i, 1))
                   for i in range(args.files)]
        results["big_file_bytes"] = len(big)
        results["single_file_bytes"] = len(singles[0][1]) if singles else 0
        print(f"generated: 1 interchange of {args.orders} orders ({len(big) / 1e6:.1f} MB), "
              f"{args.files} one-order files ({results['single_file_bytes']} bytes each)",
              flush=True)

        if "parse" in only:
            text = big.decode("latin-1")
            t, n = timed(lambda: pydifact_parse(text), args.repeat)
            assert n == args.orders, n
            results["pydifact"] = {"seconds": t, "orders_per_s": n / t}
            print(f"pydifact raw parse: {t:.2f} s, {n / t:,.0f} orders/s", flush=True)
            g = gateway_parse_rates(big, args.repeat)
            results["edigw_parse"] = g
            print(f"edigw parse {args.orders / g['parse_s']:,.0f} orders/s, parse+map "
                  f"{args.orders / g['parse_map_s']:,.0f}/s, +JSON "
                  f"{args.orders / g['parse_map_json_s']:,.0f}/s "
                  f"(canonical order ≈ {g['avg_json_bytes']:.0f} bytes)", flush=True)

        if "pika" in only:
            body = (b'{"schema":"edigw.order/1","pad":"' + b"x" * args.body_size)[:args.body_size - 2] + b'"}'
            pk: dict[str, Any] = {"body_bytes": len(body)}
            for label, quorum in (("quorum", True), ("classic", False)):
                x, q = f"bench.{run_tag}.raw-{label}", f"bench.{run_tag}.raw-{label}.q"
                objects.declare_raw(x, q, quorum)
                t = pika_select_rate(args.broker, x, args.pika_messages, body)
                pk[f"select_{label}_msgs_per_s"] = args.pika_messages / t
                print(f"raw pika SelectConnection, 256 unconfirmed, {label} queue: "
                      f"{args.pika_messages / t:,.0f} msgs/s", flush=True)
                if quorum:
                    t = pika_blocking_rate(args.broker, x, args.blocking_messages, body)
                    pk["blocking_quorum_msgs_per_s"] = args.blocking_messages / t
                    print(f"raw pika BlockingConnection, one confirm per message, quorum queue: "
                          f"{args.blocking_messages / t:,.0f} msgs/s", flush=True)
            results["pika"] = pk

        if "many" in only:
            r = run_gateway_phase("many", [(f"orders-{run_tag}.edi", big)], args.orders, args,
                                  base, objects)
            results["gateway_many"] = r
            m = r["marks"]
            print(f"gateway, 1 file of {args.orders} orders: published + recorded after "
                  f"{m['published']:.2f} s = {args.orders / m['published']:,.0f} orders/s "
                  f"(received {m['received']:.2f} s, processed {m['processed']:.2f} s)",
                  flush=True)

        if "single" in only:
            r = run_gateway_phase("single", singles, args.files, args, base, objects)
            results["gateway_single"] = r
            m = r["marks"]
            print(f"gateway, {args.files} one-order files: all received {m['received']:.2f} s "
                  f"= {args.files / m['received']:,.0f} files/s; all published "
                  f"{m['published']:.2f} s = {args.files / m['published']:,.0f} files/s",
                  flush=True)
    finally:
        results["loadavg_end"] = loadavg()
        objects.cleanup()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")

    print()
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def report(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []

    def add(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))

    n = r["orders"]
    pyd = r.get("pydifact", {}).get("orders_per_s")
    g = r.get("edigw_parse")
    pk = r.get("pika", {})
    raw = pk.get("select_quorum_msgs_per_s")
    if pyd:
        add(f"pydifact raw parse ({n} orders, 1 file)", f"{pyd:,.0f} orders/s",
            "Interchange.from_str + iterate segments")
    if g:
        add("edigw parse (read_interchanges)", f"{n / g['parse_s']:,.0f} orders/s",
            f"{n / g['parse_s'] / pyd:.1f}x pydifact" if pyd else "")
        add("edigw parse + map", f"{n / g['parse_map_s']:,.0f} orders/s",
            f"{n / g['parse_map_s'] / pyd:.1f}x pydifact" if pyd else "")
        add("edigw parse + map + canonical JSON", f"{n / g['parse_map_json_s']:,.0f} orders/s",
            f"≈{g['avg_json_bytes']:.0f} B/order")
    if raw:
        add("raw pika Select, 256 unconfirmed, quorum", f"{raw:,.0f} msgs/s",
            f"{pk['body_bytes']} B persistent, mandatory")
        add("raw pika Select, 256 unconfirmed, classic", f"{pk['select_classic_msgs_per_s']:,.0f} msgs/s", "")
        add("raw pika Blocking, 1 confirm/msg, quorum", f"{pk['blocking_quorum_msgs_per_s']:,.0f} msgs/s", "")
    many = r.get("gateway_many")
    if many:
        m = many["marks"]
        rate = n / m["published"]
        add(f"GATEWAY 1 file × {n} orders, e2e", f"{rate:,.0f} orders/s",
            f"{m['published']:.2f} s drop→all PUBLISHED, {m['cpu']:.2f} s CPU")
        add("  of which: drop → RECEIVED", f"{m['received']:.2f} s",
            f"renamed in: inotify wakes, one look (poll {r['poll_interval']} s)")
        add("  RECEIVED → PROCESSED (parse, map, commit)",
            f"{m['processed'] - m['received']:.2f} s", "")
        add("  PROCESSED → PUBLISHED (outbox drain)", f"{m['published'] - m['processed']:.2f} s",
            f"{n / max(m['published'] - m['processed'], 1e-9):,.0f} msgs/s")
        if pyd:
            add("  ratio gateway ÷ pydifact raw parse", f"{rate / pyd:.2f}x",
                f"target ≥ {TARGET_RATIO_VS_PYDIFACT:.0f}x")
        if raw:
            add("  ratio gateway ÷ raw pika confirm loop", f"{rate / raw:.2f}", "")
    single = r.get("gateway_single")
    if single:
        m, f = single["marks"], single["files"]
        rate = f / m["published"]
        add(f"GATEWAY {f} one-order files, e2e", f"{rate:,.0f} files/s",
            f"{m['published']:.2f} s drop→all PUBLISHED, {m['cpu']:.2f} s CPU")
        add("  durably received", f"{f / m['received']:,.0f} files/s",
            f"{m['received']:.2f} s drop→all RECEIVED")
        if pyd:
            add("  ratio gateway ÷ pydifact raw parse", f"{rate / pyd:.2f}x", "(orders/s)")
        if raw:
            add("  ratio gateway ÷ raw pika confirm loop", f"{rate / raw:.2f}", "")
    w1 = max(len(a) for a, _, _ in rows) if rows else 10
    w2 = max(len(b) for _, b, _ in rows) if rows else 10
    lines = [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in rows]
    lines.append("")
    lines.append(f"gateway: {r.get('gateway_mode')}; store: {r.get('store')}; inbox poll "
                 f"{r.get('poll_interval')} s")
    lines.append(f"load average at start {r.get('loadavg_start')}, at end {r.get('loadavg_end')} "
                 "(other work on the machine lowers every figure)")
    lines.append("targets (2 cores):")
    if many:
        rate = n / many["marks"]["published"]
        ok = rate >= TARGET_MANY_ORDERS_PER_S
        lines.append(f"  many orders ≥ {TARGET_MANY_ORDERS_PER_S:,.0f} orders/s: "
                     f"{'MET' if ok else 'NOT MET'} ({rate:,.0f})")
        if pyd:
            ok = rate / pyd >= TARGET_RATIO_VS_PYDIFACT
            lines.append(f"  many orders ≥ {TARGET_RATIO_VS_PYDIFACT:.0f}x pydifact: "
                         f"{'MET' if ok else 'NOT MET'} ({rate / pyd:.2f}x)")
    if single:
        rate = single["files"] / single["marks"]["published"]
        ok = rate >= TARGET_SINGLE_FILES_PER_S
        lines.append(f"  one order per file ≥ {TARGET_SINGLE_FILES_PER_S:,.0f} files/s: "
                     f"{'MET' if ok else 'NOT MET'} ({rate:,.0f} published; "
                     f"{single['files'] / single['marks']['received']:,.0f} received)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
