#!/usr/bin/env python3
"""Benchmark of outbound delivery over real local servers, every figure from ONE run here.

Rendered EANCOM INVOIC D96A documents (the intake renders them from
``mappings/outbound/edifact/eancom-invoic-d96a.sample.json``, padded with lines to about
--size bytes, before the clock starts) are delivered by ``OutboundDispatcher.deliver_pending``
through edigw's real senders, over a real SQLite store and archive:

  sftp    ``SftpSender`` to an OpenSSH sshd this script starts on loopback
          (``tests/integration/sshd.py``: key login, host key pinned), one reused session.
  as2     ``As2Sender`` signed + encrypted (the profile's defaults: sha256, aes_256_cbc),
          asking a signed synchronous MDN, to edigw's own ``As2Endpoint`` served over HTTP
          by a child process (its own store, archive and pipeline; keys from
          ``tests/as2_keys.py``). Baseline in the same run: ``openssl cms -sign`` then
          ``openssl cms -encrypt`` of the same payload per message (two subprocesses, as
          the AS2 tests' independent receiver uses openssl), so the report gives a ratio;
          and edigw's own ``build_message`` (the sign + encrypt of a delivery) alone.
  folder  ``FolderSender`` (batched ``send_many``: one sync per batch), for reference.

Per workload: deliveries/s over the whole ``deliver_pending`` and the latency of each
delivery through the dispatcher (archive read, send, row recorded) p50/p95; for the folder
the batch is the unit, so its latency is the batch's time divided by its size.

Usage:  python bench/bench_outbound_channels.py [--only sftp,as2,folder] [--sftp-n 300]
                                                [--as2-n 100] [--folder-n N] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INVOICE_SAMPLE = ROOT / "mappings/outbound/edifact/eancom-invoic-d96a.sample.json"
US, PARTNER = "edigw", "retail"
SENDER_GLN, RECIPIENT_GLN = "5412345000013", "5400000000003"


# -- the documents ---------------------------------------------------------------------------

def invoice_payloads(n: int, size: int) -> list[bytes]:
    """``n`` ERP invoices (JSON) whose EANCOM rendering is about ``size`` bytes: the
    sample's lines repeated (totals recomputed) until the estimate reaches it."""
    from decimal import Decimal

    sample = json.loads(INVOICE_SAMPLE.read_text())
    base_lines = sample["lines"]
    # A rendered line (LIN, PIA, IMD, QTY, MOA, PRI, TAX …) is roughly 200 bytes.
    wanted = max(len(base_lines), size // 200)
    lines = []
    for i in range(wanted):
        line = copy.deepcopy(base_lines[i % len(base_lines)])
        line["line_id"] = str(i + 1)
        lines.append(line)
    doc = copy.deepcopy(sample)
    doc["lines"] = lines
    _retotal(doc, Decimal)
    out = []
    for i in range(n):
        one = dict(doc, invoice_number=f"BENCH-{i:07d}", partner=PARTNER)
        one.pop("message_id", None)
        one.pop("source", None)
        out.append(json.dumps(one).encode())
    return out


def _retotal(doc: dict[str, Any], decimal: Any) -> None:
    """Recompute the totals of ``doc`` after its lines changed (the intake checks them)."""
    d = decimal
    lines_total = sum((d(x["line_net_amount"]) for x in doc["lines"]), d("0"))
    charges = sum((d(c["amount"]) for c in doc.get("charges") or []), d("0"))
    allowances = sum((d(a["amount"]) for a in doc.get("allowances") or []), d("0"))
    taxable: dict[tuple[str, str], Any] = {}
    for x in doc["lines"]:
        key = (x["vat_category"], x["vat_rate"])
        taxable[key] = taxable.get(key, d("0")) + d(x["line_net_amount"])
    for c in doc.get("charges") or []:
        key = (c["vat_category"], c["vat_rate"])
        taxable[key] = taxable.get(key, d("0")) + d(c["amount"])
    for a in doc.get("allowances") or []:
        key = (a["vat_category"], a["vat_rate"])
        taxable[key] = taxable.get(key, d("0")) - d(a["amount"])
    cent = d("0.01")
    breakdown = [{"category": cat, "rate": rate, "taxable_amount": str(base.quantize(cent)),
                  "tax_amount": str((base * d(rate) / 100).quantize(cent))}
                 for (cat, rate), base in sorted(taxable.items())]
    doc["vat_breakdown"] = breakdown
    totals = doc["totals"]
    tax = sum((d(b["tax_amount"]) for b in breakdown), d("0"))
    net = lines_total + charges - allowances
    updates = {"line_total": lines_total, "lines_total": lines_total,
               "charge_total": charges, "allowance_total": allowances,
               "tax_exclusive": net, "tax_basis": net, "tax_total": tax,
               "tax_inclusive": net + tax, "payable": net + tax, "amount_due": net + tax}
    for key, value in updates.items():
        if key in totals:
            totals[key] = str(value.quantize(cent))


class World:
    """Our side: a SQLite store and archive, the partner's profile, the intake and a
    dispatcher that times each delivery."""

    def __init__(self, root: Path, partner: Any, channel: str, sender: Any) -> None:
        from gateway.channels.intake import OutboundIntake
        from gateway.config import PartnerDirectory
        from gateway.formats.render import OutboundMappings
        from gateway.store.archive import Archive
        from tests.integration.rabbit import sqlite_store

        root.mkdir(parents=True, exist_ok=True)
        self.store = sqlite_store(root / "edigw.sqlite3")
        self.archive = Archive(root / "archive")
        self.partners = PartnerDirectory([partner])
        self.intake = OutboundIntake(store=self.store, archive=self.archive,
                                     partners=self.partners.get,
                                     mappings=OutboundMappings.load(ROOT / "mappings"),
                                     sender_id=SENDER_GLN)
        self.sender = sender
        self.dispatcher = timed_dispatcher(self.store, self.archive, {channel: sender},
                                           self.partners.get)

    def render(self, payloads: list[bytes], batch: int = 100) -> list[int]:
        """Accept (render, record PENDING) every payload; returns the rendered sizes."""
        from gateway.channels.intake import Incoming

        sizes = []
        for first in range(0, len(payloads), batch):
            results = self.intake.accept_many([
                Incoming(data, origin="bench", ref=f"m{first + i}", partner=PARTNER)
                for i, data in enumerate(payloads[first:first + batch])])
            for r in results:
                if r.status != "RENDERED" or r.outbound is None:
                    raise RuntimeError(f"not rendered: {r.stage}: {r.reason}")
                sizes.append(r.outbound.size)
        return sizes

    def deliver(self, n: int) -> dict[str, Any]:
        """Deliver everything pending; deliveries/s and the latencies."""
        self.dispatcher.latencies.clear()
        sent = 0
        started = time.perf_counter()
        while sent < n:
            went = self.dispatcher.deliver_pending(500)
            if not went:
                break
            sent += went
        elapsed = time.perf_counter() - started
        if sent != n:
            failed = [r.last_error for r in self.store.pending_outbound(5)]
            raise RuntimeError(f"{sent} of {n} delivered; errors: {failed}")
        return summary(n, elapsed, self.dispatcher.latencies)

    def close(self) -> None:
        close = getattr(self.sender, "close", None)
        if close is not None:
            close()
        self.store.close()


def timed_dispatcher(store: Any, archive: Any, senders: dict[str, Any],
                     partner: Callable[[str], Any]) -> Any:
    """An ``OutboundDispatcher`` noting the seconds of each delivery (``deliver_one``) or
    batch (``_deliver_batch``, noted once per row: its time divided by its size)."""
    from gateway.channels.outbound import OutboundDispatcher

    class TimedDispatcher(OutboundDispatcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.latencies: list[float] = []

        def deliver_one(self, row: Any, sender: Any) -> bool:
            t0 = time.perf_counter()
            ok = super().deliver_one(row, sender)
            self.latencies.append(time.perf_counter() - t0)
            return ok

        def _deliver_batch(self, rows: list[Any], sender: Any) -> int:
            went = 0
            for first in range(0, len(rows), self.BATCH):  # the chunks it makes itself
                chunk = rows[first:first + self.BATCH]
                t0 = time.perf_counter()
                went += super()._deliver_batch(chunk, sender)
                self.latencies.extend([(time.perf_counter() - t0) / len(chunk)] * len(chunk))
            return went

    return TimedDispatcher(store, archive, senders=senders, partner=partner,
                           retry_initial=0.01)


def summary(n: int, elapsed: float, latencies: list[float]) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {"n": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1),
            "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
            # The first one in order: for sftp it includes opening the SSH session.
            "first_ms": round(latencies[0] * 1000, 2) if latencies else None}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def rendered_sizes(world: World) -> dict[str, int]:
    sizes = [len(world.archive.get(r.sha256)) for r in world.store.pending_outbound(1000)]
    return {"bytes_min": min(sizes), "bytes_max": max(sizes)} if sizes else {}


# -- the workloads ---------------------------------------------------------------------------

def bench_sftp(n: int, size: int, tmp: Path) -> dict[str, Any]:
    from gateway.channels.sftp.sender import SftpSender
    from gateway.config import Partner, PartnerOutbound
    from tests.integration.sshd import SshServer

    server = SshServer.start(tmp / "sshd")
    try:
        settings = server.settings(inbound=[], outbound_folder="out")
        partner = Partner(id=PARTNER, name="Retail", channels=["sftp"], sftp=settings,
                          outbound=PartnerOutbound(channel="sftp",
                                                   formats={"invoice": "eancom-invoic-d96a"},
                                                   recipient_id=RECIPIENT_GLN))
        world = World(tmp / "us-sftp", partner, "sftp", SftpSender())
        try:
            world.render(invoice_payloads(n, size))
            sizes = rendered_sizes(world)
            result = world.deliver(n)
            row = _outbound_rows(world)[-1]
            if (server.remote / "out" / row.filename).read_bytes() != \
                    world.archive.get(row.sha256):
                raise RuntimeError(f"{row.filename} on the server differs from the archive")
        finally:
            world.close()
        arrived = server.files("out")
        if len(arrived) != n:
            raise RuntimeError(f"{len(arrived)} files on the server, {n} expected")
    finally:
        server.stop()
    return {"workload": "sftp", **result, **sizes,
            "note": "one reused SSH session, temp name + size check + rename per file"}


def bench_folder(n: int, size: int, tmp: Path) -> dict[str, Any]:
    from gateway.channels.outbound import FolderSender
    from gateway.config import Partner, PartnerOutbound

    partner = Partner(id=PARTNER, name="Retail", outbound=PartnerOutbound(
        channel="folder", folder=tmp / "folder-out", formats={"invoice": "eancom-invoic-d96a"},
        recipient_id=RECIPIENT_GLN))
    world = World(tmp / "us-folder", partner, "folder", FolderSender(tmp / "folder-root"))
    try:
        world.render(invoice_payloads(n, size))
        sizes = rendered_sizes(world)
        result = world.deliver(n)
    finally:
        world.close()
    arrived = len(list((tmp / "folder-out").iterdir()))
    if arrived != n:
        raise RuntimeError(f"{arrived} files in the folder, {n} expected")
    return {"workload": "folder", **result, **sizes,
            "note": "send_many batches of 100: one fsync pass per batch; latency = batch/size"}


def _as2_child(keys: Path, root: Path) -> None:
    """In a child process: the partner's edigw (AS2 id ``retail``) with its endpoint over
    HTTP; prints its URL, serves until stdin closes."""
    from gateway.channels.as2.endpoint import As2Endpoint
    from gateway.channels.as2.settings import As2Identity, As2Settings
    from gateway.config import Partner, PartnerAs2, PartnerDirectory
    from gateway.core.pipeline import Pipeline
    from gateway.http.server import HttpServer, build_app
    from gateway.store.archive import Archive
    from gateway.store.security import SecurityLog
    from tests.integration.rabbit import sqlite_store

    quiet_logs()  # structlog prints to stdout, which the parent reads only at the end
    store = sqlite_store(root / "them.sqlite3")
    archive = Archive(root / "archive")
    partners = PartnerDirectory([Partner(
        id="edigw-supplier", name="Supplier", channels=["as2"],
        as2=PartnerAs2(as2_id=US, certificates=[keys / "server_public.pem"],
                       validate_certificates=False, require_signing=True))])
    settings = As2Settings(identities=[As2Identity(
        as2_id=PARTNER, key_file=keys / "client_private.pem", passphrase="test")])
    pipeline = Pipeline(store=store, archive=archive, partners=partners, readers=[])
    endpoint = As2Endpoint(settings, partners, pipeline, store, archive, SecurityLog(store))
    http = HttpServer(build_app(endpoints={"/as2": endpoint}), port=0).start_in_thread()
    print(f"{http.url}/as2", flush=True)
    sys.stdin.read()
    count = len(endpoint.records.recent(limit=100000)) if _takes_limit(endpoint) else -1
    print(json.dumps({"received": count}), flush=True)
    http.stop()
    store.close()


def _takes_limit(endpoint: Any) -> bool:
    import inspect

    return "limit" in inspect.signature(endpoint.records.recent).parameters


def openssl_baseline(data: bytes, keys: Path, work: Path, n: int) -> dict[str, Any]:
    """``openssl cms -sign`` (detached S/MIME, sha256, our key) then ``-encrypt``
    (aes-256-cbc, to the partner's certificate) of ``data``, ``n`` times."""
    work.mkdir(parents=True, exist_ok=True)
    payload = work / "payload.edi"
    payload.write_bytes(data)
    times = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        for args in (["cms", "-sign", "-binary", "-md", "sha256", "-in", str(payload),
                      "-signer", str(keys / "server_public.pem"),
                      "-inkey", str(keys / "server_private.pem"), "-passin", "pass:test",
                      "-outform", "SMIME", "-out", str(work / "signed.eml")],
                     ["cms", "-encrypt", "-binary", "-aes256", "-in", str(work / "signed.eml"),
                      "-outform", "DER", "-out", str(work / "enveloped.der"),
                      str(keys / "client_public.pem")]):
            proc = subprocess.run(["openssl", *args], capture_output=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"openssl {args[1]}: {proc.stderr.decode()[-400:]}")
        times.append(time.perf_counter() - t0)
    return {"workload": "openssl-sign+encrypt", **summary(n, time.perf_counter() - started,
                                                          times)}


def bench_as2(n: int, size: int, tmp: Path) -> list[dict[str, Any]]:
    from gateway.channels.as2.sender import As2Sender
    from gateway.channels.as2.settings import As2Identity, As2Settings
    from gateway.config import Partner, PartnerAs2, PartnerOutbound
    from tests.as2_keys import loopback_pair

    keys = loopback_pair()
    them_root = tmp / "them"
    them_root.mkdir()
    child = subprocess.Popen([sys.executable, __file__, "--as2-child", str(keys),
                              str(them_root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stdin is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the AS2 child did not start (got {url!r})")
        partner = Partner(id=PARTNER, name="Retail", channels=["as2"],
                          as2=PartnerAs2(as2_id=PARTNER,
                                         certificates=[keys / "client_public.pem"],
                                         validate_certificates=False, url=url),
                          outbound=PartnerOutbound(channel="as2",
                                                   formats={"invoice": "eancom-invoic-d96a"},
                                                   recipient_id=RECIPIENT_GLN))
        settings = As2Settings(identities=[As2Identity(
            as2_id=US, key_file=keys / "server_private.pem", passphrase="test")])
        world = World(tmp / "us-as2", partner, "as2", As2Sender(settings))
        try:
            world.render(invoice_payloads(n, size))
            sizes = rendered_sizes(world)
            sample = world.archive.get(world.store.pending_outbound(1)[0].sha256)
            built = build_only(world.sender, partner, sample, n)
            result = world.deliver(n)
            receipts = {r.receipt.split(";")[0] if r.receipt else None
                        for r in _outbound_rows(world)}
        finally:
            world.close()
        child.stdin.close()
        tail = child.stdout.read().strip().splitlines()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    them = json.loads(tail[-1]) if tail else {}
    if them.get("received", n) not in (n, -1):
        raise RuntimeError(f"the partner recorded {them['received']} messages, {n} sent")
    as2 = {"workload": "as2", **result, **sizes, "receipts": sorted(map(str, receipts)),
           "note": "signed+encrypted, signed sync MDN, edigw endpoint in a child process"}
    base = openssl_baseline(sample, keys, tmp / "openssl", n)
    base["ratio_as2_latency_to_openssl"] = round(as2["mean_ms"] / base["mean_ms"], 2)
    base["ratio_build_to_openssl"] = round(built["mean_ms"] / base["mean_ms"], 2)
    base["note"] = "two openssl subprocesses per message (process start included)"
    return [as2, built, base]


def build_only(sender: Any, partner: Any, data: bytes, n: int) -> dict[str, Any]:
    """The sign + encrypt part of an AS2 delivery alone: ``build_message`` as ``As2Sender``
    calls it (its own key and the partner's certificate), in this process, ``n`` times."""
    from gateway.channels.as2.sender import build_message

    profile = partner.as2
    sign_key = sender._org(profile).sign_key
    encrypt_cert = sender._partner(profile)[0].load_encrypt_cert()
    times = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        build_message(data, filename="invoic.edi", content_type="application/EDIFACT",
                      sign_key=sign_key, digest_alg=profile.digest_algorithm,
                      encrypt_cert=encrypt_cert, encryption_alg=profile.encryption_algorithm,
                      compress=False)
        times.append(time.perf_counter() - t0)
    return {"workload": "as2-build-only", **summary(n, time.perf_counter() - started, times),
            "note": "edigw's build_message (sign+encrypt) in process, no HTTP, no MDN"}


def _outbound_rows(world: World) -> list[Any]:
    from sqlalchemy import select

    from gateway.store import schema

    with world.store.engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(schema.outbound.c.id))]
    return [world.store.get_outbound(i) for i in ids]


def quiet_logs() -> None:
    """Warnings and errors only: a log line per delivery would be part of the measure."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# -- the report ------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'workload':<22}{'n':>6}{'per s':>9}{'p50 ms':>9}{'p95 ms':>9}{'bytes':>13}"
    out = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            out.append(f"{r['workload']:<22} ERROR {r['error'][:60]}")
            continue
        size = f"{r.get('bytes_min', '')}-{r.get('bytes_max', '')}" if "bytes_min" in r else ""
        out.append(f"{r['workload']:<22}{r['n']:>6}{r['per_s']:>9}{r['p50_ms']:>9}"
                   f"{r['p95_ms']:>9}{size:>13}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sftp,as2,folder")
    parser.add_argument("--sftp-n", type=int, default=300)
    parser.add_argument("--as2-n", type=int, default=100)
    parser.add_argument("--folder-n", type=int, default=300)
    parser.add_argument("--size", type=int, default=5000,
                        help="approximate bytes of each rendered invoice")
    parser.add_argument("--json", help="write the report to this file")
    parser.add_argument("--as2-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as2_child:
        _as2_child(Path(args.as2_child[0]), Path(args.as2_child[1]))
        return
    quiet_logs()
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()],
                              "cpus": os.cpu_count(), "workloads": []}
    runs: dict[str, Callable[[Path], Any]] = {
        "sftp": lambda tmp: bench_sftp(args.sftp_n, args.size, tmp),
        "as2": lambda tmp: bench_as2(args.as2_n, args.size, tmp),
        "folder": lambda tmp: bench_folder(args.folder_n, args.size, tmp),
    }
    for name in only:
        if name not in runs:
            parser.error(f"unknown workload {name!r} (sftp, as2, folder)")
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmpname:
            try:
                result = runs[name](Path(tmpname))
            except Exception as exc:  # one workload failing does not lose the others
                result = {"workload": name, "error": f"{type(exc).__name__}: {exc}"}
        for row in result if isinstance(result, list) else [result]:
            report["workloads"].append(row)
            print(json.dumps(row), flush=True)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(report["workloads"]))
    print(f"load average before {report['load_before']}, after {report['load_after']} "
          f"({report['cpus']} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
