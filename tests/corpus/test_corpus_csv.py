"""Every CSV and flat-file row of the corpus through the reader the pipeline uses.

Rows come from ``MANIFEST.tsv``: a ``.csv`` file, or a document type naming CSV or a FLAT
file. Each goes through ``CsvReader.parse`` and ``CsvPayload.documents`` for a partner that
names no mapping, so the mappings' ``match`` must recognise the file on its own, and ends
in one of these outcomes:

- **mapped**: canonical orders or a price list whose numbers, line or item counts and first
  line match a plain reading of the same file with Python's ``csv`` module or ``str.split``
  (sharing no code with the gateway);
- **failed**: a group kept with a reason naming its line;
- **refused**: a PayloadError for the whole file, with the reason the row calls for. The
  'alto' invoice comes as a header file and a detail file (``*.ETRHDR.csv`` paired with
  ``*.ETRDTL.csv`` by invoice number); a transmission holds one file, and pairing two
  transmissions is out of scope (docs/csv-mappings.md), so each half is refused as a file
  no mapping claims. CSV invoices are not mapped at all (they come as XML or EDIFACT).

The EDIWIN-style flat ORDERS (one EDIFACT segment per line, '|' between elements) is read
by a CSV mapping with record types (``csv-orders-ediwin-d96a``): a record-type file is
delimited text whose first column says what each line is.

No other exception may escape. Counts per outcome: ``summary_lines``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import Partner
from gateway.core.errors import PayloadError
from gateway.core.ports import FailedMessage, MappedDocument
from gateway.formats.csv import CsvReader
from gateway.formats.mapping import MappingSet
from tests.conftest import manifest_rows, require_corpus

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
PARTNER = Partner(id="corpus", name="Corpus")


def _is_csv_row(row: dict[str, str]) -> bool:
    return row["local_path"].lower().endswith(".csv") or bool(
        re.search(r"\bCSV\b|\bFLAT file\b", row["document_type"]))


ROWS = [r for r in manifest_rows() if _is_csv_row(r)]

OUTCOMES: Counter[str] = Counter()
ROWS_BY: dict[str, set[str]] = defaultdict(set)


@pytest.fixture(scope="module")
def reader() -> CsvReader:
    return CsvReader(MappingSet.load(REPO / "mappings"))


# -- plain readings, independent of the gateway ------------------------------------------------


def _plain_rows(data: bytes, delimiter: str) -> list[list[str]]:
    text = data.decode("latin-1")
    return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            if any(c.strip() for c in r)]


def _check_price_list(doc: MappedDocument, data: bytes) -> None:
    header, *rows = _plain_rows(data, ";")
    col = {name: i for i, name in enumerate(header)}
    plist = doc.document
    assert len(plist.items) == len(rows), (len(plist.items), len(rows))
    first, item = rows[0], plist.items[0]
    assert item.gtin == first[col["GTIN/EAN"]].strip()
    assert item.supplier_article == first[col["ArticleNumber"]].strip()
    assert item.description == first[col["Description"]].strip()
    retail = Decimal(first[col["RetailPrice"]].strip().replace(",", "."))
    assert item.prices[0].amount == retail
    promos = sum(1 for r in rows if r[col["PromoPrice"]].strip())
    assert sum(len(i.prices) - 1 for i in plist.items) == promos
    OUTCOMES["(price lists checked against a plain reading)"] += 1


def _check_flat30(orders: list[MappedDocument], data: bytes) -> None:
    rows = _plain_rows(data, ",")
    numbers = list(dict.fromkeys(r[4] for r in rows))
    assert [o.business_number for o in orders] == numbers
    for order in orders:
        mine = [r for r in rows if r[4] == order.business_number]
        lines = order.document.lines
        assert [(x.item_code, x.quantity) for x in lines] == [
            (r[26], Decimal(r[29])) for r in mine]
    OUTCOMES["(orders checked against a plain reading)"] += len(orders)


def _check_ediwin(orders: list[MappedDocument], data: bytes) -> None:
    lines = [line.split("|") for line in data.decode("latin-1").splitlines() if line.strip()]
    ords = [f for f in lines if f[0] == "ORD"]
    assert [o.business_number for o in orders] == [f[1] for f in ords]
    [order] = orders
    lin = [f for f in lines if f[0] == "LIN"]
    qty = [f for f in lines if f[0] == "QTYLIN" and f[1] == "21"]
    assert len(order.document.lines) == len(lin) == len(qty)
    first = order.document.lines[0]
    assert (first.gtin, first.line_number, first.quantity) == (lin[0][1], lin[0][3],
                                                              Decimal(qty[0][2]))
    buyer = next(f for f in lines if f[0] == "NADBY")
    assert order.document.parties.buyer.gln == buyer[1]
    OUTCOMES["(orders checked against a plain reading)"] += 1


# -- the rows --------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS or [None], ids=lambda r: r["local_path"] if r else "none")
def test_row_ends_in_documents_or_precise_reasons(row, reader):
    """Each CSV row maps (checked against a plain reading), or is refused for its reason."""
    folder = require_corpus()
    if row is None:
        pytest.fail("the manifest lists no CSV row")
    path = row["local_path"]
    label = f"{row['document_type']} {row['notes']}"
    data = (folder / path).read_bytes()
    assert reader.sniff(data[:4096]), f"{path}: not recognised as delimited text"
    results: list[MappedDocument | FailedMessage] = []
    payload = None
    try:
        payload = reader.parse(data, filename=path)
        results = payload.documents(partner=PARTNER, transmission_id=None, filename=path)
    except PayloadError as exc:
        OUTCOMES["file refused"] += 1
        ROWS_BY["refused"].add(path)
        if re.search(r"invoice", label, re.IGNORECASE) and re.search(
                r"header/detail split|pairs with", label):
            assert "no CSV mapping for this file" in exc.reason, exc.reason
            assert payload is not None and "partner unknown" in payload.unidentified
            OUTCOMES["(two-file header/detail refused: out of scope)"] += 1
            return
        pytest.fail(f"{path}: refused: {exc}")
    except Exception as exc:  # the point: nothing else escapes
        pytest.fail(f"{path}: {type(exc).__name__} escaped the CSV reader: {exc}")
    assert results, f"{path}: read but neither documents nor failures"
    mapped = [r for r in results if isinstance(r, MappedDocument)]
    for result in results:
        if isinstance(result, FailedMessage):
            OUTCOMES["group failed"] += 1
            ROWS_BY["failed"].add(path)
            assert re.search(r"\bline \d+", result.reason), result.reason
        else:
            OUTCOMES[f"{result.doc_type} mapped"] += 1
            ROWS_BY["mapped"].add(path)
    if row["document_type"].startswith("NEGATIVE"):
        assert path not in ROWS_BY["mapped"] or path in ROWS_BY["failed"], \
            f"NEGATIVE row {path} mapped cleanly"
        return
    assert len(mapped) == len(results), [r.reason for r in results
                                         if isinstance(r, FailedMessage)]
    mapping = mapped[0].document.source.mapping
    if re.search(r"price list", label, re.IGNORECASE):
        assert mapping == "csv-pricelist-articledata"
        _check_price_list(mapped[0], data)
    elif re.search(r"FLAT file", label):
        assert mapping == "csv-orders-ediwin-d96a"
        assert payload is not None and payload.senders[0].qualifier == "gln"
        _check_ediwin(mapped, data)
    elif re.search(r"CSV orders", label):
        assert mapping == "csv-orders-flat30"
        _check_flat30(mapped, data)
    else:
        pytest.fail(f"{path}: say what this row's documents must look like")


def test_only_the_csv_rows_of_the_corpus_look_delimited(reader):
    """sniff takes every CSV row and no EDIFACT, XML, PDF or schema file of the corpus."""
    folder = require_corpus()
    taken, missed = [], []
    for row in manifest_rows():
        path = folder / row["local_path"]
        if not path.is_file():
            continue
        with path.open("rb") as fh:
            head = fh.read(4096)
        if reader.sniff(head) != _is_csv_row(row):
            (missed if _is_csv_row(row) else taken).append(row["local_path"])
    assert not taken, f"sniffed as CSV: {taken[:10]}"
    assert not missed, f"CSV rows not sniffed: {missed}"
    OUTCOMES["(corpus files sniffed, none taken wrongly)"] += 1


def summary_lines() -> list[str]:
    """The counts per outcome, for the terminal summary (empty when the test did not run)."""
    if not OUTCOMES:
        return []
    files = set().union(*ROWS_BY.values())
    lines = [f"{len(files)} CSV rows: {len(ROWS_BY['mapped'])} gave documents, "
             f"{len(ROWS_BY['refused'])} were refused whole, "
             f"{len(ROWS_BY['failed'])} had failed groups"]
    lines += [f"  {kind:<48} {n:>5}" for kind, n in sorted(OUTCOMES.items())]
    return lines
