"""Helpers for end-to-end tests: a working folder, a running ``edigw serve``, generated orders.

    with Workspace.create(tmp_path, store_url) as ws:
        ws.add_partner("acme", "5412345000013", "14")
        service = ws.serve()
        ws.drop("a.edi", data)
        service.wait_until(lambda: ws.counts().get("PUBLISHED") == 1, 30, "a.edi published")
        messages = ws.consume(expected=1)

``Workspace`` writes ``gateway.toml`` in a temp folder (store URL given, archive, inbox,
processed and failed under the folder, ``mappings`` = the repository's ``mappings/``,
partners in a temp folder) with exchange and queue names unique to it, declared on the
machine's RabbitMQ and deleted when the workspace closes. ``Service`` runs
``python -m gateway.cli --config gateway.toml serve`` in that folder and stops it with
SIGTERM, then SIGKILL.

The naive EDIFACT reading the corpus test compares with lives in ``naive_edifact.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika

from gateway.bus.settings import BusSettings
from gateway.bus.topology import declare_topology
from gateway.store.db import LogFilter, Store, TransmissionRow
from tests.integration.rabbit import RABBIT_URL, Received, delete_topology

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
FINAL = ("PUBLISHED", "PARTIAL", "HELD", "FAILED", "QUARANTINED", "DUPLICATE")


# -- a working folder -------------------------------------------------------------------------

@dataclasses.dataclass
class Workspace:
    """A folder holding gateway.toml, the inbox and its sibling folders, and partner profiles."""

    root: Path
    store_url: str
    bus: BusSettings
    broker_url: str
    inbox_partner: str | None = None
    retry_max: float = 1.0
    #: [broker] heartbeat (s), when a test wants a short one.
    heartbeat: int | None = None
    #: The nodes of a RabbitMQ cluster ([broker] urls), instead of one broker.
    broker_urls: list[str] | None = None
    #: [broker] confirm_timeout (s), when a test wants a short one.
    confirm_timeout: float | None = None
    #: TOML appended to gateway.toml ([as2], [sms] … sections of a test).
    extra_config: str = ""
    #: TOML lines added to its [broker] section.
    broker_extra: str = ""
    services: list[Service] = dataclasses.field(default_factory=list)
    declared: bool = False
    _store: Store | None = None

    @classmethod
    def create(cls, root: Path, store_url: str, *, broker_url: str | None = None,
               broker_urls: list[str] | None = None,
               inbox_partner: str | None = None, declare: bool = True) -> Workspace:
        """Write the folder and its settings, and declare the unique topology on RabbitMQ."""
        tag = uuid.uuid4().hex[:10]
        bus = BusSettings(
            url=broker_urls[0] if broker_urls else RABBIT_URL,
            urls=tuple(broker_urls or ()),
            exchange=f"edi.documents.e2e-{tag}",
            queues=((f"erp.orders.e2e-{tag}", ("order.#",)),),
            dead_letter_exchange=f"edi.documents.e2e-{tag}.dlx",
            dead_letter_queue=f"erp.orders.e2e-{tag}.dead",
            test_queue=f"erp.test.e2e-{tag}",
        )
        ws = cls(root=root, store_url=store_url, bus=bus,
                 broker_url=broker_url or (broker_urls[0] if broker_urls else RABBIT_URL),
                 broker_urls=broker_urls,
                 inbox_partner=inbox_partner)
        for folder in (ws.inbox, ws.processed, ws.failed, ws.archive, ws.partners):
            folder.mkdir(parents=True, exist_ok=True)
        ws.write_config()
        ws.declared = declare
        if declare:
            declare_topology(bus)
        return ws

    # paths
    @property
    def inbox(self) -> Path:
        return self.root / "var" / "inbox"

    @property
    def processed(self) -> Path:
        return self.root / "var" / "processed"

    @property
    def failed(self) -> Path:
        return self.root / "var" / "failed"

    @property
    def archive(self) -> Path:
        return self.root / "var" / "archive"

    @property
    def partners(self) -> Path:
        return self.root / "partners"

    @property
    def config(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def queue(self) -> str:
        return self.bus.queues[0][0]

    @property
    def tracker_names(self) -> tuple[str, str, str]:
        """This workspace's edi.events exchange, edi.acks exchange and acks queue."""
        tag = self.bus.exchange.rsplit("-", 1)[-1]
        return (f"edi.events.e2e-{tag}", f"edi.acks.e2e-{tag}", f"edigw.acks.e2e-{tag}")

    def inbox_files(self) -> list[str]:
        """The files waiting in the inbox, those an instance claimed (``.claimed/``) included;
        temporary names and the claim folder itself are not files waiting."""
        names = [p.name for p in self.inbox.iterdir() if not p.name.startswith(".")]
        claims = self.inbox / ".claimed"
        if claims.exists():
            names += [f.name for d in claims.iterdir() for f in d.iterdir()]
        return sorted(names)

    def archive_path(self, sha256: str) -> Path:
        return self.archive / sha256[:2] / sha256

    def write_config(self) -> None:
        inbox_partner = f'partner = "{self.inbox_partner}"\n' if self.inbox_partner else ""
        self.config.write_text(f"""\
mappings = {_toml_str(str(MAPPINGS))}
partners = {_toml_str(str(self.partners))}

[store]
url = {_toml_str(self.store_url)}

[broker]
{self._broker_nodes()}
exchange = "{self.bus.exchange}"
dead_letter_exchange = "{self.bus.dead_letter_exchange}"
dead_letter_queue = "{self.bus.dead_letter_queue}"
test_queue = "{self.bus.test_queue}"
retry_initial = 0.1
retry_max = {self.retry_max}
{f"heartbeat = {self.heartbeat}" if self.heartbeat else ""}
{f"confirm_timeout = {self.confirm_timeout}" if self.confirm_timeout else ""}
{self.broker_extra}

[[broker.queues]]
name = "{self.queue}"
bindings = ["order.#"]

[archive]
path = {_toml_str(str(self.archive))}
fsync = true

[log]
format = "json"
level = "info"

[[inbox]]
path = {_toml_str(str(self.inbox))}
processed = {_toml_str(str(self.processed))}
failed = {_toml_str(str(self.failed))}
poll_interval = 0.1
{inbox_partner}
[http]
port = 0

[tracker]
every = 1.0
events_exchange = "{self.tracker_names[0]}"
acks_exchange = "{self.tracker_names[1]}"
acks_queue = "{self.tracker_names[2]}"
{self.extra_config}""")

    def _broker_nodes(self) -> str:
        if self.broker_urls:
            return "urls = [" + ", ".join(_toml_str(u) for u in self.broker_urls) + "]"
        return f"url = {_toml_str(self.broker_url)}"

    def add_partner(self, partner_id: str, unb_id: str, qualifier: str | None = None) -> None:
        """A partner profile whose UNB sender id (and qualifier) is ``unb_id``."""
        q = f", qualifier = {_toml_str(qualifier)}" if qualifier else ""
        (self.partners / f"{partner_id}.toml").write_text(
            f'id = "{partner_id}"\nname = "{partner_id} (e2e)"\nchannels = ["folder"]\n\n'
            f"[identifiers]\nunb = [{{ id = {_toml_str(unb_id)}{q} }}]\n\n"
            '[[documents]]\ntype = "order"\nformat = "edifact"\n')

    # files
    def drop(self, name: str, data: bytes, folder: Path | None = None) -> Path:
        """Put a complete file into the inbox atomically (written under an ignored name first)."""
        folder = folder or self.inbox
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        target = folder / name
        os.rename(tmp, target)
        return target

    # the store and the CLI
    @property
    def store(self) -> Store:
        """The gateway's store, opened (and migrated) on first use."""
        if self._store is None:
            self._store = Store.from_url(self.store_url)
        return self._store

    def transmissions(self) -> list[TransmissionRow]:
        """Every transmission, newest first."""
        return self.store.log(LogFilter(limit=1_000_000))

    def transmission(self, filename: str) -> TransmissionRow | None:
        """The newest transmission of a file of that name."""
        rows = [r for r in self.transmissions() if r.filename == filename]
        return rows[0] if rows else None

    def settled(self, filename: str) -> TransmissionRow | None:
        """The newest transmission of that file once it reached a final status, else None."""
        row = self.transmission(filename)
        return row if row is not None and row.status in FINAL else None

    def counts(self) -> dict[str, int]:
        return self.store.counts_by_status()

    def total(self) -> int:
        return sum(self.counts().values())

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``edigw --config gateway.toml ARGS`` in the workspace."""
        proc = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(self.config),
                               *args], cwd=self.root, env=clean_env(), capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"edigw {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def log_json(self, limit: int = 100000) -> list[dict[str, Any]]:
        """``edigw log --json``: every transmission, newest first."""
        return json.loads(self.cli("log", "--json", "--limit", str(limit)).stdout)

    def status(self) -> dict[str, int]:
        """``edigw status`` parsed into {status or 'outbox': count} (the other lines, the
        instances and each broker node, left out)."""
        out = self.cli("status").stdout
        return {k: int(v) for k, v, *_ in (line.split() for line in out.splitlines()
                                                if len(line.split()) > 1)
                if v.isdigit() and (k.isupper() or k == "outbox")}

    # the broker
    def consume(self, *, expected: int | None = None, timeout: float = 30,
                idle: float = 0.5) -> list[Received]:
        """Messages on the workspace's queue (consumed and acknowledged).

        With ``expected``, waits up to ``timeout`` s for that many, then ``idle`` s more for
        extras; without, stops after ``idle`` s without a message.
        """
        connection = pika.BlockingConnection(pika.URLParameters(self.bus.url))
        out: list[Received] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=1000)
            for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.1):
                now = time.monotonic()
                if method is not None:
                    out.append(Received(method.routing_key, properties, body))
                    channel.basic_ack(method.delivery_tag)
                    last = now
                    continue
                quiet = now - last >= idle
                if expected is None and quiet:
                    break
                if expected is not None and ((len(out) >= expected and quiet) or now > deadline):
                    break
            channel.cancel()
        finally:
            connection.close()
        return out

    def queue_depth(self) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self.bus.url))
        try:
            return connection.channel().queue_declare(self.queue, passive=True).method.message_count
        finally:
            connection.close()

    # lifecycle
    def serve(self, *, wait_started: bool = True) -> Service:
        self.store  # noqa: B018 - migrate before the service starts: no race on the first upgrade
        service = Service(self)
        self.services.append(service)
        service.start()
        if wait_started:
            service.wait_for_log("gateway_started", 30)
        return service

    def close(self) -> None:
        for service in self.services:
            service.stop()
        if self._store is not None:
            self._store.close()
        if not self.declared:
            return
        try:
            delete_topology(self.bus)
            connection = pika.BlockingConnection(pika.URLParameters(self.bus.url))
            try:
                channel = connection.channel()
                channel.queue_delete(self.tracker_names[2])
                channel.exchange_delete(self.tracker_names[1])
                channel.exchange_delete(self.tracker_names[0])
            finally:
                connection.close()
        except Exception as exc:
            print(f"could not delete e2e topology {self.bus.exchange}: {exc}", file=sys.stderr)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def clean_env() -> dict[str, str]:
    """The environment without variables that would override the workspace's settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDIGW_CONFIG", "EDIGW_STORE_URL", "EDIGW_BROKER_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- a running edigw serve ----------------------------------------------------------------------

class Service:
    """``edigw serve`` as a subprocess of the test, its output in ``serve-N.log``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.proc: subprocess.Popen | None = None
        n = len(list(ws.root.glob("serve-*.log")))
        self.log_path = ws.root / f"serve-{n}.log"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "--config", str(self.ws.config), "serve"],
            cwd=self.ws.root, env=clean_env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @property
    def http_url(self) -> str:
        """The URL the service's HTTP server listens on (port 0 in tests: read from its log)."""
        for event in self.events():
            if event.get("event") == "gateway_started" and event.get("http"):
                return event["http"]
        raise AssertionError(f"the service logged no http_listening:\n{self.tail()}")

    def events(self) -> list[dict[str, Any]]:
        """The service's JSON log lines (other lines skipped)."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_for_log(self, event: str, timeout: float) -> None:
        self.wait_until(lambda: any(e.get("event") == event for e in self.events()), timeout,
                        f"log event {event!r}")

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str,
                   interval: float = 0.1) -> Any:
        """Poll ``condition`` until truthy; fail with the store counts and the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if not self.alive:
                raise AssertionError(f"edigw serve exited ({self.proc.returncode if self.proc else '-'}) "
                                     f"while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; store {self.ws.counts()}, "
                    f"outbox {self.ws.store.outbox_size()}\n--- serve log ---\n{self.tail()}")
            time.sleep(interval)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind in the gateway."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


# -- generated orders ---------------------------------------------------------------------------

ACME_UNB = ("5412345000013", "14")

TEMPLATE = (
    "UNA:+.? '\n"
    "UNB+UNOC:3+5412345000013:14+8712345000004:14+240305:1030+{icref}'\n"
    "UNH+{msgref}+ORDERS:D:96A:UN:EAN008'\n"
    "BGM+220+{order}+9'\n"
    "DTM+137:20240305:102'\n"
    "DTM+2:20240312:102'\n"
    "NAD+BY+5412345000013::9'\n"
    "NAD+SU+8712345000004::9'\n"
    "NAD+DP+5412345000020::9'\n"
    "LIN+1++4020000012342:EN'\n"
    "QTY+21:{qty}'\n"
    "LIN+2++4020000012359:EN'\n"
    "QTY+21:12.5'\n"
    "UNS+S'\n"
    "UNT+13+{msgref}'\n"
    "UNZ+1+{icref}'\n"
)


def order_file(n: int, *, order: str | None = None, qty: int | None = None) -> bytes:
    """A one-order ORDERS D96A interchange from acme (UNB 5412345000013:14), numbered ``n``."""
    return TEMPLATE.format(icref=f"IC{n:08d}", msgref=f"M{n}", order=order or f"PO-{n:06d}",
                           qty=qty if qty is not None else n % 97 + 1).encode("ascii")

