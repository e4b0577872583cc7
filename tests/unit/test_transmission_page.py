"""The transmission page's parts without a server: the payload's window numbered as the
readers number it, where a reason points, the badge's words, a document made readable."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway.core.lifecycle import DRAFT_REASON, SUSPENDED_REASON
from gateway.store.read.transmission import DocumentCounts
from gateway.store.records import TransmissionRow
from gateway.web.document_view import readable
from gateway.web.outcome import outcome
from gateway.web.segments import (
    MAX_LINE,
    edifact_segments,
    failing_position,
    locate,
    raw_window,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "mappings" / "edifact").glob("*.sample.edi"))


def _blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("size", [1, 5, 64, 1 << 20])
def test_the_window_numbers_segments_as_the_tokenizer_whatever_the_blocks(sample, size):
    """Walking the archive's blocks gives the tokenizer's segments, in its order and count
    (UNA counted, released terminators kept inside), on one line or one per line."""
    data = sample.read_bytes()
    for payload in (data, data.replace(b"\n", b""), data.replace(b"\n", b"\r\n")):
        window = raw_window(_blocks(payload, size), edifact=True, first=1, count=10_000)
        assert [x.text for x in window.lines] == edifact_segments(payload)
        assert [x.number for x in window.lines] == list(range(1, len(window.lines) + 1))
        assert not window.more


def test_a_window_reads_no_further_than_the_line_after_it():
    """Blocks after the window are never asked for."""
    data = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
    read = []

    def blocks():
        for block in _blocks(data, 16):
            read.append(block)
            yield block

    window = raw_window(blocks(), edifact=True, first=3, count=2, failing=4)
    assert [(x.number, x.failing) for x in window.lines] == [(3, False), (4, True)]
    assert window.more and sum(map(len, read)) < 200


def test_a_released_terminator_stays_inside_its_segment():
    data = b"UNA:+.? 'UNB+UNOC:3+A+B+240101:1200+1'FTX+AAI+++it?'s ??'UNZ+0+1'"
    window = raw_window(_blocks(data, 3), edifact=True, first=1, count=10)
    assert [x.text for x in window.lines] == [
        "UNA:+.? '", "UNB+UNOC:3+A+B+240101:1200+1'", "FTX+AAI+++it?'s ??'", "UNZ+0+1'"]


def test_text_lines_count_blank_ones_and_an_overlong_line_is_cut():
    data = b"a\n\nc\n" + b"x" * 200_000 + b"\nlast\n"
    window = raw_window(_blocks(data, 1000), edifact=False, first=1, count=10, failing=3)
    assert [x.number for x in window.lines] == [1, 2, 3, 4, 5]
    assert window.lines[2].failing and window.lines[2].text == "c"
    assert window.lines[3].cut and len(window.lines[3].text) == MAX_LINE
    assert window.lines[4].text == "last"


def test_a_byte_offset_is_located_on_its_line():
    data = b"one\ntwo\nthree\n"
    assert locate(_blocks(data, 2), 9, edifact=False) == 3
    assert locate([b"UNB+UNOC:3+A+B+1+1'UNH+1+X'"], 20, edifact=True) == 2


@pytest.mark.parametrize(("reason", "segment", "line", "byte"), [
    ("QTY/C186/6060: 'xx' is not a number at line 21, column 1, segment 21 (QTY), "
     "element QTY/C186/6060, message 107", 21, 21, None),
    ("1 of 2 message(s) failed; first: … at line 58, column 1, segment 58 (QTY)", 58, 58, None),
    ("DOCTYPE refused at line 2, column 1", None, 2, None),
    ("declared UNOC but byte 1234 is not UTF-8; read as Latin-1", None, None, 1234),
])
def test_where_a_reason_points(reason, segment, line, byte):
    found = failing_position(reason)
    assert found is not None
    assert (found.segment, found.line, found.byte) == (segment, line, byte)


def test_a_reason_without_a_position_points_nowhere():
    assert failing_position("unknown sender id 540 (qualifier 14)") is None
    assert failing_position(None) is None


def _row(status: str, *, stage: str | None = None, reason: str | None = None,
         direction: str = "in") -> TransmissionRow:
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    return TransmissionRow(id="t1", channel="folder", channel_ref=None, partner_id="p",
                           filename="f", size=1, sha256="0" * 64, received_at=now,
                           acknowledged_at=None, status=status, stage=stage, reason=reason,
                           format="edifact", standard=None, document_count=0,
                           duplicate_of=None, updated_at=now, direction=direction)


def _counts(erp: dict[str, int] | None = None, **by_status: int) -> DocumentCounts:
    return DocumentCounts(by_status=by_status,
                          erp={"accepted": 0, "rejected": 0, "waiting": 0, **(erp or {})})


@pytest.mark.parametrize(("row", "counts", "words"), [
    (_row("PARTIAL"), _counts(PUBLISHED=1, FAILED=1), "1 of 2 failed"),
    (_row("PUBLISHED"), _counts(PUBLISHED=20_000), "20,000 documents published"),
    (_row("PUBLISHED"), _counts({"rejected": 1}, PUBLISHED=1), "rejected by the ERP"),
    (_row("PUBLISHED"), _counts({"rejected": 2, "accepted": 3}, PUBLISHED=5),
     "2 of 5 rejected by the ERP"),
    (_row("PUBLISHED"), _counts({"accepted": 1}, PUBLISHED=1),
     "1 document published, accepted by the ERP"),
    (_row("QUARANTINED", stage="identify", reason="unknown sender id 1"), _counts(),
     "quarantined: unknown sender"),
    (_row("QUARANTINED", stage="partner", reason=SUSPENDED_REASON), _counts(),
     "held: partner suspended"),
    (_row("QUARANTINED", stage="partner", reason=DRAFT_REASON), _counts(),
     "kept back: partner not yet in test"),
    (_row("FAILED", stage="parse", reason="x"), _counts(), "failed at parse"),
    (_row("DELIVERED", direction="out"), _counts(), "delivered to the partner"),
])
def test_the_badge_says_what_happened_in_words(row, counts, words):
    assert outcome(row, counts).words == words


def test_an_invoice_reads_with_its_parties_lines_and_totals():
    doc = json.loads((REPO / "mappings" / "xml" / "cii-invoice.expected.json").read_text())
    view = readable(doc[0] if isinstance(doc, list) else doc)
    assert (view.title, view.number, view.currency) == ("Invoice", "FA-2025-00042", "EUR")
    seller = next(p for p in view.parties if p.role == "Seller")
    assert seller.name == "Papeterie Synthétique SARL (PapSyn)"
    assert "GLN 3760123450003" in seller.identifiers and "VAT FR14987654324" in seller.identifiers
    totals = dict(view.totals)
    assert (totals["Net (without VAT)"], totals["VAT"], totals["Gross (with VAT)"]) == (
        "100.00", "15.65", "115.65")
    assert view.lines[0].description == "Ramette papier A4 80 g"
    assert ("Due", "2025-04-13") in view.dates


def test_an_unknown_shape_still_reads_as_its_fields_and_records():
    view = readable({"schema": "acme.thing/1", "thing_id": "T-1",
                     "items": [{"description": "a bolt", "quantity": "2"}]})
    assert (view.kind, view.title) == ("acme.thing", "Acme.thing")
    assert ("Thing id", "T-1") in view.facts
    assert view.lines[0].description == "a bolt" and view.lines[0].quantity == "2"
