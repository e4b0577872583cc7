"""Every EDIFACT ORDERS file of the shared corpus, read and mapped, checked against its source.

Rows are chosen from ``MANIFEST.tsv`` by ``document_type``, so a new row is tested without a
code change. The corpus folder is ``$EDIGW_CORPUS`` or ``<repo>/../shared/corpus``; when it
is missing the corpus tier is not run (tests/conftest.py), which under ``CI=true`` fails.

Policies (decided here, on purpose):
- A wrong UNT count fails the message even when the file is labelled usable: rsedi
  ``orders_with_warnings.edi`` (UNT says 15, the message has 17 segments) is in
  KNOWN_REJECTIONS with the reason its message fails with.
- A UNZ reference that does not repeat UNB 0020 is accepted with a warning (code 28): the
  German Wikipedia example repeats 0026 there, and each of its messages checks out.
- ORDERS D03B maps through ``eancom-orders-d03b`` (the D01B rules compiled for D03B).
- The nantic message without UNB/UNZ is read with sender None, but its UNT count is wrong
  (16 for 17 segments), so the message fails on that count.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.errors import EdifactSyntaxError, MappingError
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping import MappingSet, map_message
from tests.conftest import corpus_dir, require_corpus
from tests.corpus.plain import plain_messages

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
CORPUS = corpus_dir() or REPO.parent / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"

#: Positive-labelled rows that edigw rejects on purpose, with the reason it gives.
KNOWN_REJECTIONS = {
    "rsedi/testdata/edi/orders_with_warnings.edi":
        "UNT segment count is 15 but the message has 17 segments",
}
ENVELOPE_LESS_REASON = "UNT segment count is 16 but the message has 17 segments"


@dataclass(frozen=True)
class Row:
    path: str
    document_type: str

    def __str__(self) -> str:
        return self.path


def _rows() -> list[Row]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [Row(r["local_path"], r["document_type"]) for r in reader]


ROWS = _rows()
POSITIVE = [r for r in ROWS if r.document_type.startswith(("EDIFACT ORDERS", "EANCOM ORDERS"))]
NEGATIVE = [r for r in ROWS
            if r.document_type.startswith("NEGATIVE") and "ORDERS" in r.document_type.upper()]
ENVELOPE_LESS = [r for r in ROWS if r.document_type.startswith("Edge: EDIFACT ORDERS")
                 and "WITHOUT interchange envelope" in r.document_type]


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet.load(REPO / "mappings")


def test_corpus_is_present_and_has_orders_rows():
    """The manifest lists ORDERS rows of each kind."""
    require_corpus()
    assert POSITIVE and NEGATIVE and ENVELOPE_LESS


# -- an independent reading of the source, with plain splits (no edigw code) ---------------

def _unh_count(data: bytes) -> int:
    """UNH segments counted with a naive split on the segment terminator."""
    text = data.decode("latin-1").lstrip()
    term, elem = ("'", "+") if not text.startswith("UNA") else (text[8], text[4])
    return sum(1 for raw in text.split(term) if raw.strip().startswith("UNH" + elem))


def _expected_quantities(message: list[list[list[str]]]) -> list[str]:
    """Per LIN, the first QTY with qualifier 21 (ordered) or 1 (discrete)."""
    quantities: list[str | None] = []
    for seg in message:
        tag = seg[0][0]
        if tag == "LIN":
            quantities.append(None)
        elif tag == "UNS":
            break
        elif tag == "QTY" and quantities and quantities[-1] is None and seg[1][0] in ("21", "1"):
            quantities[-1] = seg[1][1]
    return [q for q in quantities if q is not None]


@pytest.mark.parametrize("row", POSITIVE, ids=str)
def test_positive_orders_file_maps_every_message(row, mappings):
    """Each UNH becomes one order whose number, lines and quantities match the source."""
    require_corpus()
    data = (CORPUS / row.path).read_bytes()
    interchanges = read_interchanges(data, filename=row.path)
    if row.path in KNOWN_REJECTIONS:
        errors = [m.error for i in interchanges for m in i.messages if m.error]
        assert errors and KNOWN_REJECTIONS[row.path] in errors[0].reason
        return
    assert not [i.error for i in interchanges if i.error]
    assert not [m.error for i in interchanges for m in i.messages if m.error]
    orders = []
    for interchange in interchanges:
        for message in interchange.messages:
            mapped = map_message(mappings.find(message), interchange, message,
                                 partner_id="corpus", filename=row.path)
            orders.append(mapped.document)
    assert len(orders) == _unh_count(data) == sum(len(i.messages) for i in interchanges)
    plain = plain_messages(data)
    if plain is None:
        return
    assert len(plain) == len(orders)
    for order, message in zip(orders, plain, strict=True):
        bgm = next(seg for seg in message if seg[0][0] == "BGM")
        assert order.order_number == bgm[2][0]
        assert len(order.lines) == sum(1 for seg in message if seg[0][0] == "LIN")
        assert [line.quantity for line in order.lines] == [
            Decimal(q.replace(",", ".")) for q in _expected_quantities(message)]
        assert order.source.message_ref == message[0][1][0]


@pytest.mark.parametrize("row", NEGATIVE, ids=str)
def test_negative_orders_file_fails_with_a_reason(row, mappings):
    """A NEGATIVE ORDERS row fails with EdifactSyntaxError or MappingError, never another error."""
    require_corpus()
    data = (CORPUS / row.path).read_bytes()
    with pytest.raises((EdifactSyntaxError, MappingError)) as info:
        for interchange in read_interchanges(data, filename=row.path):
            if interchange.error:
                raise interchange.error
            for message in interchange.messages:
                if message.error:
                    raise message.error
                map_message(mappings.find(message), interchange, message,
                            partner_id="corpus", filename=row.path)
    assert info.value.reason and info.value.position is not None


@pytest.mark.parametrize("row", ENVELOPE_LESS, ids=str)
def test_message_without_envelope_fails_on_its_unt_count(row):
    """The file has no UNB (sender would be None) but its UNT count is wrong: code 29."""
    require_corpus()
    data = (CORPUS / row.path).read_bytes()
    assert b"UNB" not in data and b"UNH" in data
    (interchange,) = read_interchanges(data, filename=row.path)
    assert interchange.sender_id is None
    error = interchange.messages[0].error
    assert error is not None and ENVELOPE_LESS_REASON in error.reason and error.code == "29"
