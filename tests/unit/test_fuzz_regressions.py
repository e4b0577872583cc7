"""The fuzz regressions of ``../shared/fuzz-regressions`` (INDEX.tsv) through the readers.

Each input once crashed, hung, looped or blew up memory. Through the reader its format
sniffs as (in memory, and streamed for EDIFACT) each must end within 10 s of CPU, with a
peak below ``MEMORY_FACTOR`` times its size (or the floor under which size is not judged),
either read or refused as PayloadError. The pipeline-level test lives beside the pipeline.
In the corpus tier (``shared("fuzz-regressions")``): not run when the folder is absent, which
fails under CI=true (tests/conftest.py).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.formats.edifact import tokenizer
from tests.conftest import shared_dir

REPO = Path(__file__).resolve().parents[2]
FOLDER = shared_dir("fuzz-regressions") or REPO.parent / "shared" / "fuzz-regressions"
BUDGET = 10.0

pytestmark = pytest.mark.shared("fuzz-regressions")


def regressions() -> list[tuple[str, str, str]]:
    index = FOLDER / "INDEX.tsv"
    if not index.is_file():
        return []
    with index.open(newline="") as f:
        return [(row["file"], row["kind"], row["note"])
                for row in csv.DictReader(f, delimiter="\t")]


CASES = regressions()


def test_the_regression_folder_is_there():
    """Present on the developers' machines and in CI (the corpus tier); all of it."""
    assert len(CASES) >= 29, f"{FOLDER}/INDEX.tsv lists {len(CASES)} inputs"


#: Run in a child process, so that its peak resident memory is this input's alone.
CHILD = r"""
import gzip, json, resource, sys, time
from pathlib import Path
from gateway.core.errors import PayloadError
from gateway.formats.csv import CsvReader
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.formats.sms.reader import SmsReader
from gateway.formats.xml.reader import XmlReader

path, way, repo = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
data = path.read_bytes()
data = gzip.decompress(data) if path.name.endswith(".gz") else data
mappings = MappingSet.load(Path(repo) / "mappings")
readers = [EdifactReader(mappings), SmsReader(), XmlReader(mappings), CsvReader(mappings)]
reader = next((r for r in readers if r.sniff(data[:4096])), None)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
try:
    if reader is None:
        outcome = "no reader"
    elif way == "streamed":
        if not isinstance(reader, EdifactReader):
            outcome = "not streamed"
        else:
            payload = reader.stream((data[i:i + 65536] for i in range(0, len(data), 65536)),
                                    filename=path.name)
            payload.open()
            outcome = f"read, {len(payload._ahead) + sum(1 for _ in payload._events)} events"
    else:
        outcome = "read: " + reader.parse(data, filename=path.name).summary()[:80]
except PayloadError as exc:
    outcome = f"refused: {type(exc).__name__}: {str(exc)[:120]}"
print(json.dumps({"cpu": time.process_time() - start, "size": len(data), "outcome": outcome,
                  "grown": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024}))
"""


@pytest.mark.parametrize(("name", "kind", "note"), CASES or [pytest.param(
    "-", "-", "-", marks=pytest.mark.skip(reason=f"{FOLDER} is absent"))],
    ids=[c[0] for c in CASES] or ["absent"])
@pytest.mark.parametrize("way", ["memory", "streamed"])
def test_a_fuzz_regression_is_read_or_refused_quickly_in_bounded_memory(name, kind, note, way):
    """INDEX.tsv's input through the reader that sniffs it: read or PayloadError (anything
    else makes the child fail), < 10 s of CPU, resident memory grown by less than
    MEMORY_FACTOR x max(size, DENSITY_FLOOR); EDIFACT also streamed."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(FOLDER / name), way, str(REPO)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, f"{name} ({kind}: {note}): {run.stderr[-800:]}"
    got = json.loads(run.stdout.splitlines()[-1])
    assert got["outcome"] != "no reader", f"{name}: no reader sniffs it ({kind}: {note})"
    assert got["cpu"] < BUDGET, f"{name} ({kind}): {got['cpu']:.1f} s of CPU"
    bound = tokenizer.MEMORY_FACTOR * max(got["size"], tokenizer.DENSITY_FLOOR)
    assert got["grown"] < bound, \
        f"{name} ({kind}): grew {got['grown'] / got['size']:.0f} times its size"
