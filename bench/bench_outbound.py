#!/usr/bin/env python3
"""Benchmark of the outbound half (issue 16), every figure from ONE run on this machine.

  1. EANCOM INVOIC D96A to a folder partner, end to end: ``OutboundIntake.accept_many``
     in batches of --batch (as the bus consumer hands over its prefetched messages; the
     ERP's bytes archived and recorded, checked, rendered, validated against the directory,
     a control reference taken, the rendering archived and recorded) then
     ``OutboundDispatcher.deliver_pending`` (written to the partner's folder, fsync'd,
     DELIVERED) — documents/s, against rendering alone (``render`` + ``seal`` of the same
     documents, nothing stored) in the same run: the ratio says what durability and
     tracking cost on top of the renderer.
  2. Price lists of growing size (--items, e.g. 20000,100000,300000 items with 3 prices)
     rendered as EANCOM PRICAT D01B and delivered to a folder, each in a fresh child
     process: seconds, MB/s of EDIFACT written and the child's peak RSS (ru_maxrss), so
     that memory growth with size is visible. The JSON is written to a file item by item;
     ``--mode stream`` hands the file over (``accept_file``: above ``stream_above`` it is
     checked and rendered as a stream), ``--mode memory`` its bytes with streaming off
     (the in-memory path), ``both`` runs each size both ways.

Usage:  python bench/bench_outbound.py [--docs 2000] [--items 20000,100000,300000]
                                       [--mode stream|memory|both] [--store sqlite|URL]
                                       [--json FILE]       (--docs 0 skips the invoices)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INVOICE_SAMPLE = ROOT / "mappings/outbound/edifact/eancom-invoic-d96a.sample.json"
PRICAT_SAMPLE = ROOT / "mappings/outbound/edifact/eancom-pricat-d01b.sample.json"


def _world(tmp: Path, store_url: str, fmt: str) -> Any:
    from gateway.channels.intake import OutboundIntake
    from gateway.channels.outbound import FolderSender, OutboundDispatcher
    from gateway.config import Partner, PartnerOutbound
    from gateway.formats.render import OutboundMappings
    from gateway.store.archive import Archive
    from gateway.store.db import Store

    store = Store.from_url(store_url)
    archive = Archive(tmp / "archive")
    partner = Partner(id="acme", name="Acme", outbound=PartnerOutbound(
        formats={"invoice": fmt, "price-list": fmt}, recipient_id="5400000000003",
        folder=tmp / "out"))
    partners = {"acme": partner}
    mappings = OutboundMappings.load(ROOT / "mappings")
    intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                            mappings=mappings, sender_id="5412345000013")
    dispatcher = OutboundDispatcher(store, archive, senders={"folder": FolderSender(tmp)},
                                    partner=partners.get)
    return store, intake, dispatcher, mappings


def _store_url(arg: str, tmp: Path) -> str:
    return f"sqlite:///{tmp / 'edigw.db'}" if arg == "sqlite" else arg


def bench_invoices(docs: int, store_arg: str, batch: int = 100) -> dict[str, Any]:
    from gateway.formats.render import RenderContext

    sample = json.loads(INVOICE_SAMPLE.read_text())
    payloads = []
    for i in range(docs):
        doc = copy.deepcopy(sample)
        doc["invoice_number"] = f"BENCH-{i:07d}"
        doc.pop("message_id", None)
        doc.pop("source", None)
        doc["partner"] = "acme"
        payloads.append(json.dumps(doc).encode())
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        store, intake, dispatcher, mappings = _world(tmp, _store_url(store_arg, tmp),
                                                     "eancom-invoic-d96a")
        mapping = mappings.choose("invoice", "eancom-invoic-d96a")
        ctx = RenderContext(partner_id="acme", sender_id="5412345000013",
                            recipient_id="5400000000003")
        # Rendering alone: the same documents, parsed and validated by the intake's check
        # (the canonical dict), rendered, validated and sealed; nothing stored.
        checked = [intake._check(p, partner="acme", doc_type=None, fmt=None).document
                   for p in payloads[: min(docs, 500)]]
        start = time.perf_counter()
        for i, doc in enumerate(checked):
            mapping.render(doc, ctx).seal(str(i + 1))
        render_rate = len(checked) / (time.perf_counter() - start)

        from gateway.channels.intake import Incoming

        start = time.perf_counter()
        for first in range(0, docs, batch):
            results = intake.accept_many([
                Incoming(data, origin="bench", ref=f"m{first + i}", partner="acme")
                for i, data in enumerate(payloads[first:first + batch])])
            assert all(r.status == "RENDERED" for r in results), results
        accepted = time.perf_counter() - start
        sent = 0
        while sent < docs:
            went = dispatcher.deliver_pending(500)
            if not went:
                break
            sent += went
        total = time.perf_counter() - start
        files = len(list((tmp / "out").iterdir()))
        store.close()
    assert files == docs, (files, docs)
    return {"docs": docs, "batch": batch, "render_only_per_s": round(render_rate, 1),
            "accept_per_s": round(docs / accepted, 1),
            "end_to_end_per_s": round(docs / total, 1),
            "ratio_end_to_end_vs_render": round(docs / total / render_rate, 3)}


def _write_price_list(items: int, path: Path) -> None:
    """A price list of ``items`` items (3 prices each) written to ``path`` item by item."""
    sample = json.loads(PRICAT_SAMPLE.read_text())
    base = sample["items"][0]
    doc = {k: v for k, v in sample.items() if k not in ("items", "message_id", "source")}
    doc["partner"] = "acme"
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps(doc)[:-1] + ', "items": [')
        for i in range(items):
            item = copy.deepcopy(base)
            item["line_number"] = str(i + 1)
            gtin12 = f"{400000000000 + i:012d}"
            check = (10 - sum((3 if n % 2 else 1) * int(d)
                              for n, d in enumerate(gtin12)) % 10) % 10
            item["gtin"] = gtin12 + str(check)
            item.pop("item_code", None)
            item["description"] = f"Article {i}"
            item["prices"] = [dict(p, amount=f"{(i % 997) + 1}.{i % 100:02d}")
                              for p in (base.get("prices") or [])[:3]]
            out.write(("," if i else "") + json.dumps(item))
        out.write("]}")


def _pricat_child(items: int, store_arg: str, mode: str) -> None:
    """In a child process: one price list of ``items`` items, rendered and delivered.
    ``mode``: ``stream`` (the file handed over with ``accept_file``; above ``stream_above``
    it is checked and rendered as a stream) or ``memory`` (its bytes handed to ``accept``
    with streaming off: the in-memory path, for comparison)."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        source = tmp / "price-list.json"
        _write_price_list(items, source)
        json_size = source.stat().st_size
        store, intake, dispatcher, _ = _world(tmp, _store_url(store_arg, tmp),
                                              "eancom-pricat-d01b")
        start = time.perf_counter()
        if mode == "memory":
            intake.stream_above = intake.max_size
            result = intake.accept(source.read_bytes(), origin="bench", ref="big",
                                   partner="acme")
        else:
            result = intake.accept_file(source, origin="bench", ref="big", partner="acme")
        rendered = time.perf_counter() - start
        accepted_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert result.status == "RENDERED", result.reason
        dispatcher.deliver_pending()
        total = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (tmp / "out").iterdir())
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": items, "mode": mode, "json_mb": round(json_size / 1e6, 1),
                      "edifact_mb": round(size / 1e6, 1), "render_s": round(rendered, 2),
                      "total_s": round(total, 2), "mb_per_s": round(size / 1e6 / total, 2),
                      "peak_rss_accept_mb": round(accepted_peak), "peak_rss_mb": round(peak)}))


def bench_pricat(sizes: list[int], store_arg: str, mode: str = "stream") -> list[dict[str, Any]]:
    out = []
    for items in sizes:
        proc = subprocess.run([sys.executable, __file__, "--pricat-child", str(items),
                               "--store", store_arg, "--mode", mode], capture_output=True,
                              text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            out.append({"items": items, "mode": mode, "error": proc.stderr[-2000:]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--items", default="20000,100000,300000")
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--batch", type=int, default=100,
                        help="documents per accept_many (the consumer's prefetch)")
    parser.add_argument("--json")
    parser.add_argument("--mode", choices=("stream", "memory", "both"), default="stream",
                        help="price lists handed over as a file (streamed above "
                             "stream_above) or as bytes with streaming off, or both")
    parser.add_argument("--pricat-child", type=int)
    args = parser.parse_args()
    if args.pricat_child:
        _pricat_child(args.pricat_child, args.store, args.mode)
        return
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    if args.docs:
        report["invoices"] = bench_invoices(args.docs, args.store, args.batch)
        print(json.dumps(report["invoices"]), flush=True)
    sizes = [int(x) for x in args.items.split(",") if x]
    modes = ("memory", "stream") if args.mode == "both" else (args.mode,)
    report["price_lists"] = [row for mode in modes
                             for row in bench_pricat(sizes, args.store, mode)]
    for row in report["price_lists"]:
        print(json.dumps(row), flush=True)
    report["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
