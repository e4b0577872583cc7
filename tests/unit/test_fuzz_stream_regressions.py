"""Reader fuzzing finds that are generated here rather than kept in ``../shared/fuzz-regressions``.

Each input is rebuilt from a repository sample in the shape the fuzzer made, then read in a
child process (so that the CPU time is its own) in memory and streamed, with the fuzzing's
small windows and with the defaults: read or refused as PayloadError, well under the fuzzing
budget of 10 s of CPU.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Seconds of CPU one input may take; the fixed readers take under half a second for these.
BUDGET = 3.0


def pricat_without_unh(size: int = 1_100_000) -> bytes:
    """The PRICAT sample with its UNH lost (a splice of ``EDIGW_FUZZ_SEED=2``), and three
    line-item segments repeated to ``size`` bytes: every segment after UNB is outside any
    message, so the interchange holds one "also (0085 code 33)" warning per segment.

    The streamed payload merged those into its warnings scanning the list for each one:
    quadratic, 12.8 s of CPU for 1.1 MB (50,000 warnings)."""
    sample = (REPO / "mappings" / "edifact" / "eancom-pricat-d96a.sample.edi").read_bytes()
    lines = [line for line in sample.splitlines(keepends=True) if not line.startswith(b"UNH")]
    head = b"".join(lines[:-2])
    tail = b"".join(lines[-2:])  # UNT, UNZ
    piece = b"PIA+5+FG-3300:SA'\nIMD+F++:::Espresso beans, 250 g'\nPRI+AAA:42.2:EN'\n"
    return head + piece * ((size - len(head) - len(tail)) // len(piece)) + tail


def interchanges_with_stray_segments(size: int = 1_100_000) -> bytes:
    """The PRICAT sample's UNB and UNZ around three segments outside any message, as many
    interchanges as fit in ``size`` bytes, each with an error and three warnings (the two
    other strays, its UNZ count of one message).

    The streamed reader copied the file's warnings onto each interchange it opened, and the
    payload had added every earlier interchange's warnings to that list: interchange n held
    the 3n warnings before it (not so in memory), quadratic in time and memory."""
    sample = (REPO / "mappings" / "edifact" / "eancom-pricat-d96a.sample.edi").read_bytes()
    una, unb, *_rest, unz = sample.splitlines(keepends=True)
    strays = b"FTX+AAI'\nFTX+AAI'\nFTX+AAI'\n"
    one = len(unb) + len(strays) + len(unz) + 4
    return una + b"".join(unb.replace(b"PC240301", b"R%05d" % n) + strays
                          + unz.replace(b"PC240301", b"R%05d" % n)
                          for n in range(size // one))


def invoices_after_packages(size: int = 1_100_000) -> bytes:
    """The INVOIC D96A sample's interchange with 5,000 small packages (UNO..UNP, syntax 4)
    before its messages, repeated to ``size`` bytes: a valid file whose interchange holds
    a warning per package, which every document of it repeats (``map_message``).

    Not a fuzzing find, met next to one: taking those warnings out of each document again
    scanned the interchange's list for each one, 6 s of CPU for 450 KB."""
    sample = (REPO / "mappings" / "edifact" / "eancom-invoic-d96a.sample.edi").read_bytes()
    una, unb, *messages, unz = sample.splitlines(keepends=True)
    packages = b"".join(b"UNO+P%d+1:Doc1+13:x+3'xyzUNP+3+P%d'\n" % (n, n) for n in range(5_000))
    body = b"".join(messages)
    copies = (size - len(packages)) // len(body)
    count = body.count(b"UNH+") * copies + 5_000
    # Each copy's messages renumbered (UNH and UNT 0062): a repeated reference fails them.
    renumbered = b"".join(re.sub(rb"(UNH\+|UNT\+\d+\+)(\w+)", rb"\g<1>%d-\g<2>" % n, body)
                          for n in range(copies))
    return (una + unb + packages + renumbered
            + re.sub(rb"UNZ\+\d+", b"UNZ+%d" % count, unz))


#: Reads argv[1] in the way argv[2]; prints the CPU time and the outcome as JSON.
CHILD = r"""
import json, sys, time
from pathlib import Path
from gateway.config import DocumentSettings, Partner
from gateway.core.errors import PayloadError
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet

path, way, repo, mapping = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = path.read_bytes()
mappings = MappingSet.load(Path(repo) / "mappings")
reader = EdifactReader(mappings)
documents = [DocumentSettings(type=mappings.get(mapping).document, format="edifact",
                              mapping=mapping)] if mapping else []
partner = Partner(id="acme", name="Acme", documents=documents)
start = time.process_time()
try:
    if way == "memory":
        payload = reader.parse(data, filename=path.name)
        payload.summary()
        documents = payload.documents(partner=partner, transmission_id="t1", filename=path.name)
        outcome = f"read, {len(documents)} documents, {type(documents[0]).__name__ if documents else None} first"
    else:
        sizes = {"small-windows": {"window": 8192, "slice_segments": 50}, "default": {}}[way]
        blocks = (data[i:i + 4096] for i in range(0, len(data), 4096))
        payload = reader.stream(blocks, filename=path.name, **sizes)
        payload.open()
        events = [type(e).__name__ for e in payload.events(
            partner=partner, transmission_id="t1", filename=path.name, known=lambda ref: None)]
        outcome = f"read, {len(events)} events, {len(payload.warnings)} warnings"
except PayloadError as exc:
    outcome = f"refused: {type(exc).__name__}: {str(exc)[:120]}"
print(json.dumps({"cpu": time.process_time() - start, "outcome": outcome}))
"""


def read_in_child(data: bytes, way: str, tmp_path: Path, mapping: str = "") -> dict[str, object]:
    path = tmp_path / "input.edi"
    path.write_bytes(data)
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), way, str(REPO), mapping],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr[-800:]
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.parametrize("way", ["small-windows", "default", "memory"])
def test_segments_outside_any_message_are_read_in_linear_time(way: str, tmp_path: Path) -> None:
    """50,000 stray segments (each a warning of the interchange) cost well under the budget
    however the file is read, and every warning reaches the streamed payload once."""
    data = pricat_without_unh()
    assert len(data) > 1_000_000
    got = read_in_child(data, way, tmp_path)
    assert got["cpu"] < BUDGET, f"{way}: {got['cpu']:.1f} s of CPU ({got['outcome']})"
    assert str(got["outcome"]).startswith("read"), got["outcome"]
    if way != "memory":
        # Every segment but UNB and UNZ is stray (UNT too); the first is the interchange's
        # error, the others its warnings, and so is the UNZ count (1 message, none read).
        strays = data.count(b"'") - 3  # UNA's terminator, UNB and UNZ
        assert f", {strays - 1 + 1} warnings" in str(got["outcome"]), got["outcome"]


@pytest.mark.parametrize("way", ["small-windows", "default", "memory"])
def test_many_interchanges_with_warnings_are_read_in_linear_time(way: str,
                                                                 tmp_path: Path) -> None:
    """Thousands of interchanges, each with its own warnings: well under the budget."""
    data = interchanges_with_stray_segments()
    assert len(data) > 1_000_000
    got = read_in_child(data, way, tmp_path)
    assert got["cpu"] < BUDGET, f"{way}: {got['cpu']:.1f} s of CPU ({got['outcome']})"
    assert str(got["outcome"]).startswith("read"), got["outcome"]


def test_a_streamed_interchange_holds_its_own_warnings_only() -> None:
    """As in memory: no interchange gets the warnings of the ones before it, whatever the
    window; the payload's warnings hold each interchange's once."""
    from gateway.config import Partner
    from gateway.formats.edifact.envelope import read_interchanges
    from gateway.formats.edifact.stream import StreamedPayload
    from gateway.formats.mapping import MappingSet

    data = interchanges_with_stray_segments(20_000)
    expected = [i.warnings for i in read_interchanges(data)]
    assert len(expected) > 100 and all(len(w) == 3 for w in expected)
    for window in (1024, 8192):
        blocks = [data[i:i + 512] for i in range(0, len(data), 512)]
        payload = StreamedPayload(blocks, mappings=MappingSet.load(REPO / "mappings"),
                                  window=window, slice_segments=50)
        payload.open()
        for _event in payload.events(partner=Partner(id="acme", name="Acme"),
                                     transmission_id="t1", filename=None,
                                     known=lambda ref: None):
            pass
        assert [o.interchange.warnings for o in payload._done] == expected, window
        assert payload.warnings == [w for ws in expected for w in ws], window


@pytest.mark.parametrize("way", ["small-windows", "default", "memory"])
def test_documents_of_an_interchange_with_many_warnings_are_mapped_in_linear_time(
        way: str, tmp_path: Path) -> None:
    """Hundreds of invoices mapped, each repeating 5,000 package warnings: well under the
    budget, in memory and streamed."""
    data = invoices_after_packages()
    assert len(data) > 1_000_000
    got = read_in_child(data, way, tmp_path, mapping="eancom-invoic-d96a")
    assert got["cpu"] < BUDGET, f"{way}: {got['cpu']:.1f} s of CPU ({got['outcome']})"
    outcome = str(got["outcome"])
    assert outcome.startswith("read"), outcome
    if way == "memory":
        assert outcome.endswith("MappedDocument first"), outcome
