"""Streaming benchmark: a generated EANCOM PRICAT D96A of 10 MB and of 100 MB through
``edigw ingest``; peak memory must not grow with the file (issue 3, item 6).

Run: ``.venv/bin/python bench/bench_stream.py`` (``--sizes 10,100`` in MB, ``--keep`` to
leave the temporary folder). Each size runs ``edigw ingest --no-publish`` in a subprocess
with its own ``gateway.toml`` (SQLite store and archive in a temporary folder, the shipped
mappings, one partner), and prints the child's peak RSS (``ru_maxrss``), wall time, MB/s,
the number of parts stored and the largest part. See docs/performance.md for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUPPLIER = "5412345000013"
BUYER = "5401234000005"


def gtin13(n: int) -> str:
    """A valid GTIN-13 (GS1 check digit) for item ``n``."""
    body = f"541234{n % 10**6:06d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def pricat_segments(items: int, *, ref: str = "PL-STREAM-1",
                    unt_delta: int = 0) -> Iterator[str]:
    """The segments (terminated, one per line) of one interchange holding one PRICAT D96A
    message of ``items`` LIN groups, as the EANCOM PRICAT mapping reads them: LIN with a
    GTIN and an action code, PIA supplier article, IMD description, QTY+53 minimum
    quantity, PRI AAA (net) and AAB (gross) with a basis quantity. ``unt_delta`` is added
    to the UNT count (a wrong count rejects the message at its very end)."""
    yield "UNA:+.? '\n"
    yield f"UNB+UNOC:3+{SUPPLIER}:14+{BUYER}:14+240301:0930+{ref[-14:]}'\n"
    header = ["UNH+1+PRICAT:D:96A:UN:EAN005'", f"BGM+9+{ref}+9'", "DTM+137:20240301:102'",
              "DTM+194:20240401:102'", f"NAD+SU+{SUPPLIER}::9++Streaming Supplier NV'",
              f"NAD+BY+{BUYER}::9'", "CUX+2:EUR:8'", "PGI+2'"]
    for segment in header:
        yield segment + "\n"
    count = len(header)
    for n in range(1, items + 1):
        action = "123"[n % 3]
        price = f"{1 + n % 997}.{n % 100:02d}"
        yield (f"LIN+{n}+{action}+{gtin13(n)}:EN'\nPIA+5+ART-{n:07d}:SA'\n"
               f"IMD+F++:::Streamed article {n:07d}'\n"
               f"QTY+53:{1 + n % 12}'\nPRI+AAA:{price}:CA::1:PCE'\nPRI+AAB:{price}1:CA::1:PCE'\n")
        count += 6
    yield f"UNT+{count + 1 + unt_delta}+1'\n"
    yield f"UNZ+1+{ref[-14:]}'\n"


#: Bytes of one LIN group as written by ``pricat_segments`` (about; for sizing a file).
_ITEM_BYTES = 151


def write_pricat(path: Path, *, size: int | None = None, items: int | None = None,
                 unt_delta: int = 0, ref: str = "PL-STREAM-1") -> int:
    """Write a PRICAT of about ``size`` bytes (or exactly ``items`` items); returns the
    number of items."""
    if items is None:
        assert size is not None
        items = max(1, size // _ITEM_BYTES)
    with path.open("w", encoding="ascii", newline="") as fh:
        buffer: list[str] = []
        for segment in pricat_segments(items, ref=ref, unt_delta=unt_delta):
            buffer.append(segment)
            if len(buffer) >= 4096:
                fh.write("".join(buffer))
                buffer.clear()
        fh.write("".join(buffer))
    return items


_CONFIG = """\
mappings = "{mappings}"
partners = "{partners}"

[store]
url = "sqlite:///{db}"

[archive]
path = "{archive}"
fsync = false

[processing]
stream_above = {stream_above}

[[inbox]]
path = "{inbox}"
"""

_PARTNER = """\
id = "streamer"
name = "Streaming Supplier"
channels = ["folder"]

[identifiers]
unb = [{{ id = "{supplier}", qualifier = "14" }}]
"""


def run_ingest(folder: Path, edi: Path, *, stream_above: int = 1 << 20
               ) -> dict[str, float | int | str]:
    """``edigw ingest --no-publish`` on ``edi`` in a child process; its figures."""
    (folder / "partners").mkdir(parents=True, exist_ok=True)
    (folder / "partners" / "streamer.toml").write_text(_PARTNER.format(supplier=SUPPLIER))
    config = folder / "gateway.toml"
    config.write_text(_CONFIG.format(db=folder / "edigw.sqlite3", archive=folder / "archive",
                                     mappings=ROOT / "mappings", partners=folder / "partners",
                                     inbox=folder / "inbox", stream_above=stream_above))
    script = ("import resource, sys\n"
              "from gateway.cli import main\n"
              "try:\n"
              "    main(standalone_mode=False, args=sys.argv[1:])\n"
              "finally:\n"
              "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "    print(f'PEAK_KB {peak}', file=sys.stderr)\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, "--config", str(config), "ingest",
                           "--no-publish", str(edi)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    peak_kb = next((int(line.split()[1]) for line in done.stderr.splitlines()
                    if line.startswith("PEAK_KB")), 0)
    if done.returncode != 0 and "queued" not in done.stdout:
        raise SystemExit(f"ingest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    with sqlite3.connect(folder / "edigw.sqlite3") as db:
        parts = db.execute("SELECT count(*), max(length(payload)) FROM documents "
                           "WHERE doc_type = 'price-list' AND status = 'PENDING'").fetchone()
        status = db.execute("SELECT status FROM transmissions").fetchone()[0]
        sample = db.execute("SELECT payload FROM documents WHERE status = 'PENDING' "
                            "LIMIT 1").fetchone()
    part_count = json.loads(sample[0])["part_count"] if sample else None
    return dict(peak_mb=peak_kb / 1024, seconds=elapsed, parts=parts[0] or 0,
                largest=parts[1] or 0, part_count=part_count or 0, status=status,
                output=done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100", help="file sizes in MB, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--stream-above", type=int, default=1 << 20,
                        help="processing.stream_above in bytes (default 1 MiB, so that every "
                             "size streams; a value above the file shows the in-memory path)")
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="edigw-bench-stream-"))
    try:
        print(f"{'size':>8} {'items':>9} {'peak RSS':>9} {'time':>8} {'MB/s':>6} "
              f"{'parts':>6} {'largest part':>13}  status")
        for mb in (int(s) for s in args.sizes.split(",")):
            folder = top / f"{mb}mb"
            folder.mkdir()
            edi = folder / f"pricat-{mb}mb.edi"
            items = write_pricat(edi, size=mb * 1_000_000)
            size = edi.stat().st_size
            r = run_ingest(folder, edi, stream_above=args.stream_above)
            print(f"{size / 1e6:>6.1f}MB {items:>9} {r['peak_mb']:>7.0f}MB "
                  f"{r['seconds']:>7.1f}s {size / 1e6 / float(r['seconds']):>6.2f} "
                  f"{r['parts']:>6} {r['largest']:>11} B  {r['status']} "
                  f"(part_count {r['part_count']})", flush=True)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), "
              f"children ru_maxrss {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} KB")
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
