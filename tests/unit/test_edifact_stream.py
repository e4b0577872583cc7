"""The streamed EDIFACT reader: block by block, it reads what ``read_interchanges`` reads."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from bench.bench_stream import pricat_segments, write_pricat
from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.stream import InterchangeRead, MessageRead, read_stream
from tests.conftest import require_corpus
from tests.corpus.test_corpus_envelope import ROWS

#: (block size in bytes, window in characters): one byte at a time, windows of a few
#: segments (cut everywhere), and the sizes the pipeline uses.
CUTS = [(1, 10**9), (7, 64), (4096, 200), (4096, 1 << 20), (1, 37)]


def _segments(segments) -> list[tuple]:
    return [(s.tag, s.elements, s.index) for s in segments]


def _in_memory(data: bytes) -> list[tuple] | tuple:
    try:
        interchanges = read_interchanges(data)
    except EdifactSyntaxError as exc:
        return ("file error", exc.code, exc.reason)
    out: list[tuple] = []
    for i in interchanges:
        out.append(("interchange", i.control_ref, i.sender_id, i.decimal_mark,
                    i.error.reason if i.error else None, i.error.code if i.error else None))
        out += [("message", m.ref, m.describe(), m.index, _segments(m.segments),
                 m.error.reason if m.error else None, m.error.code if m.error else None)
                for m in i.messages]
    return out


def _streamed(data: bytes, block: int, window: int, **kw) -> list[tuple] | tuple:
    """What ``read_stream`` gives, in the shape of ``_in_memory`` (messages after their
    interchange's line, as ``read_interchanges`` lists them)."""
    blocks = (data[i:i + block] for i in range(0, len(data), block))
    out: list[tuple] = []
    waiting: list[tuple] = []
    try:
        for event in read_stream(blocks, window=window, **kw):
            if isinstance(event, MessageRead):
                m = event.message
                waiting.append(("message", m.ref, m.describe(), m.index, _segments(m.segments),
                                m.error.reason if m.error else None,
                                m.error.code if m.error else None))
            else:
                i = event.interchange
                out.append(("interchange", i.control_ref, i.sender_id, i.decimal_mark,
                            i.error.reason if i.error else None,
                            i.error.code if i.error else None))
                out += waiting
                waiting = []
    except EdifactSyntaxError as exc:
        return ("file error", exc.code, exc.reason)
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("row", ROWS, ids=[r["local_path"][-60:] for r in ROWS])
def test_stream_reads_every_corpus_file_as_in_memory(row):
    """Each corpus EDIFACT file fed in blocks of 1, 7 and 4096 bytes, cut into windows of a
    few segments or of 1 MB, gives the same messages, segments and errors as in memory."""
    data = (require_corpus() / row["local_path"]).read_bytes()
    expected = _in_memory(data)
    for block, window in CUTS:
        assert _streamed(data, block, window) == expected, (block, window)


_RELEASED = ("UNA:+.? '\nUNB+UNOY:3+SENDER:14+RECEIVER:14+240301:0930+REF1'\n"
             "UNH+1+ORDERS:D:96A:UN:EAN008'\nBGM+220+PO?+1?:A??B?'C+9'\n"
             "FTX+AAI+++Crème brûlée ?? 5 €, clef 𝄞 déjà?'vu'\n"
             "NAD+BY+5412345000013::9++Café Ünïcode ?+ Ωmega'\n"
             "UNT+4+1'\nUNZ+1+REF1'\n")


@pytest.mark.parametrize("block", range(1, 10))
def test_release_characters_and_multibyte_utf8_split_across_blocks(block):
    """Released separators and 2-, 3- and 4-byte UTF-8 characters cut between blocks and
    windows read exactly as in memory."""
    data = _RELEASED.encode("utf-8")
    expected = _in_memory(data)
    assert "Crème brûlée ? 5 €, clef 𝄞 déjà'vu" in str(expected)
    for window in (16, 50, 10**6):
        assert _streamed(data, block, window) == expected


def test_latin1_bytes_under_unoc_read_as_in_memory():
    """UNOC (ISO 8859-1) bytes that are not UTF-8 decode as Latin-1, as in memory."""
    data = _RELEASED.replace("UNOY", "UNOC").replace("𝄞", "").replace("€", "E").replace(
        "Ω", "O").encode("latin-1")
    assert _streamed(data, 3, 40) == _in_memory(data)


def test_bom_and_crlf_are_read_as_in_memory():
    data = b"\xef\xbb\xbf" + _RELEASED.replace("\n", "\r\n").encode("utf-8")
    assert _streamed(data, 5, 30) == _in_memory(data)


@pytest.mark.parametrize("data", [b"", b"  \n", b"HELLO WORLD'", b"UNB+UNOA:3+A+B+240101:1200+R'"
                                  b"UNH+1+ORDERS:D:96A:UN'BGM+220+X'"])
def test_file_errors_are_those_of_the_whole_file_reader(data):
    """Empty, not EDIFACT, truncated: the same error (code and reason) as in memory."""
    expected = _in_memory(data)
    assert expected[0] == "file error"
    assert _streamed(data, 4, 20) == expected


def _pricat(items: int, **kw) -> bytes:
    return "".join(pricat_segments(items, **kw)).encode("ascii")


def test_a_huge_message_is_handed_over_in_slices_of_whole_line_groups():
    """Past ``slice_segments`` a PRICAT comes in slices: each its header, whole LIN groups
    and a stand-in UNT; together they hold every segment once, and the UNT is checked."""
    data = _pricat(500)
    whole = read_interchanges(data)[0].messages[0]
    events = list(read_stream([data], window=2000, slice_segments=300))
    slices = [e for e in events if isinstance(e, MessageRead)]
    assert len(slices) > 3 and [e.part for e in slices] == list(range(1, len(slices) + 1))
    assert [e.final for e in slices] == [False] * (len(slices) - 1) + [True]
    header = whole.segments[:whole.segments.index(next(s for s in whole.segments
                                                         if s.tag == "LIN"))]
    body = []
    for e in slices:
        segments = e.message.segments
        assert _segments(segments[:len(header)]) == _segments(header)
        assert segments[len(header)].tag == "LIN" and segments[-1].tag == "UNT"
        body += segments[len(header):] if e.final else segments[len(header):-1]
        if not e.final:
            assert segments[-1].get(0) == str(len(segments))  # the stand-in counts its slice
    assert _segments(header + body) == _segments(whole.segments)
    assert slices[-1].message.error is None
    assert isinstance(events[-1], InterchangeRead) and events[-1].messages == 1


def test_a_wrong_unt_count_fails_the_last_slice():
    """The UNT of a sliced message is checked against every segment read (code 29)."""
    events = list(read_stream([_pricat(300, unt_delta=2)], window=1000, slice_segments=200))
    last = [e for e in events if isinstance(e, MessageRead)][-1]
    assert last.final and last.part and last.part > 1
    assert last.message.error is not None and last.message.error.code == "29"
    assert "UNT segment count" in last.message.error.reason


@pytest.mark.slow
def test_memory_stays_far_below_the_file_size(tmp_path: Path):
    """A 20 MB price list read as a stream peaks (tracemalloc) at a fraction of its size:
    what is held is a window and one slice, not the file (about 20 s: tracemalloc hooks
    every allocation)."""
    path = tmp_path / "big.edi"
    write_pricat(path, size=20_000_000)
    size = path.stat().st_size

    def blocks():
        with path.open("rb") as fh:
            while block := fh.read(1 << 16):
                yield block

    gc.collect()
    tracemalloc.start()
    try:
        slices = 0
        for event in read_stream(blocks(), window=32 * 1024, slice_segments=2000):
            slices += isinstance(event, MessageRead)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert slices > 100
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


# -- through the pipeline (SQLite) ---------------------------------------------------------


def _pipeline(tmp_path: Path, **kw):
    from gateway.config import Identifiers, Partner, PartnerDirectory, UnbIdentifier
    from gateway.core.pipeline import Pipeline
    from gateway.formats.edifact.reader import EdifactReader
    from gateway.formats.mapping import MappingSet
    from gateway.store.archive import Archive
    from gateway.store.db import Store

    partners = PartnerDirectory([Partner(
        id="streamer", name="S",
        identifiers=Identifiers(unb=[UnbIdentifier(id="5412345000013", qualifier="14")]))])
    root = Path(__file__).resolve().parents[2]
    p = Pipeline(store=Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}"),
                 archive=Archive(tmp_path / "archive", fsync=False), partners=partners,
                 readers=[EdifactReader(MappingSet.load(root / "mappings"))], **kw)
    p.stream_window, p.slice_segments = 4096, 500
    return p


def _process(p, data: bytes, tmp_path: Path):
    from gateway.core.ports import Incoming

    path = tmp_path / "in.edi"
    path.write_bytes(data)
    receipt = p.receive(Incoming(data=b"", channel="cli", filename="in.edi", path=path))
    return receipt.transmission_id, p.process(receipt.transmission_id)


def test_price_list_read_in_memory_goes_out_in_parts_over_the_size(tmp_path):
    """Below the streaming threshold a price list over max_message_bytes is cut into parts
    with their total at once, each within the limit."""
    p = _pipeline(tmp_path, max_message_bytes=20_000)
    tid, outcome = _process(p, _pricat(200), tmp_path)
    assert outcome.status == "PROCESSED" and outcome.queued == outcome.documents > 2
    rows = p.store.documents_of(tid)
    bodies = [p.store.document_payload(r.id) for r in rows]
    assert {b["part_count"] for b in bodies} == {len(bodies)}
    assert sum(len(b["items"]) for b in bodies) == 200
    assert {r.message_id for r in rows} == {f"{bodies[0]['message_id']}-p{n}"
                                            for n in range(1, len(rows) + 1)}


def test_streamed_file_releases_a_good_interchange_and_fails_a_bad_one(tmp_path):
    """Two interchanges streamed: the first (UNZ right) is queued in parts, the second (UNZ
    count wrong, known at its end) publishes nothing; the transmission names the reason."""
    good = _pricat(300, ref="PL-GOOD")
    bad = _pricat(300, ref="PL-BAD").replace(b"UNZ+1+", b"UNZ+2+").replace(
        b"UNA:+.? '\n", b"")
    p = _pipeline(tmp_path, stream_above=1000, max_message_bytes=50_000)
    tid, outcome = _process(p, good + bad, tmp_path)
    rows = p.store.documents_of(tid)
    by_status: dict[str, set[str]] = {}
    for r in rows:
        by_status.setdefault(r.status, set()).add(r.interchange_ref)
    assert by_status == {"PENDING": {"PL-GOOD"}, "FAILED": {"PL-BAD"}}
    assert outcome.status == "PROCESSED" and outcome.queued == len(
        [r for r in rows if r.status == "PENDING"])
    assert "UNZ control count" in (outcome.reason or "")
    assert [i["status"] for i in p.store.interchanges_of(tid)] == ["ACCEPTED", "REJECTED"]
