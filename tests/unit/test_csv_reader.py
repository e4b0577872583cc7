"""CsvReader as the pipeline calls it: recognising a file, naming its sender, choosing the
mapping from the partner's profile, and a bad group coming back as a FailedMessage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.config import DocumentSettings, Partner
from gateway.core.errors import FormatNotRecognised, MappingError
from gateway.core.ports import FailedMessage, MappedDocument, Sender
from gateway.formats.csv import CsvPayload, CsvReader
from gateway.formats.mapping import MappingSet

REPO = Path(__file__).resolve().parents[2]

GENERIC = ("Order No;Order Date;Buyer GLN;GTIN;Qty;Unit Price\r\n"
           "A-1;05.03.2024;4012345000009;4000862141404;12;3,45\r\n"
           "A-1;05.03.2024;4012345000009;4006381333931;2;1,10\r\n"
           "A-2;06.03.2024;4012345000009;4012345999990;zwölf;8,90\r\n"
           "A-3;06.03.2024;4012345000009;4012345999990;1;8,90\r\n")
HEAD_DETAIL = ("H;PO1;20240305;4012345000009;;;EUR;\nD;1;4000862141404;;;2;PCE;1.00\n"
               "H;PO2;20240305;4012345000009;;;EUR;\nD;1;4000862141404;;;two;PCE;1.00\n")


@pytest.fixture(scope="module")
def reader() -> CsvReader:
    return CsvReader(MappingSet.load(REPO / "mappings"))


def partner(*mappings: tuple[str, str]) -> Partner:
    return Partner(id="acme", name="ACME", documents=[
        DocumentSettings(type=t, format="csv", mapping=m) for t, m in mappings])


def parse(reader: CsvReader, text: str | bytes, filename: str = "orders.csv") -> CsvPayload:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return reader.parse(data, filename=filename)


def test_sniff_says_whether_the_head_looks_delimited(reader):
    """The reader's sniff is the dialect's: a table yes, EDIFACT no."""
    assert reader.sniff(GENERIC.encode()[:4096])
    assert not reader.sniff(b"UNB+UNOA:2+X+Y+240101:1200+1'UNH+1+ORDERS:D:96A:UN'")


def test_an_empty_file_is_not_recognised(reader):
    """Blank bytes are refused before any mapping is tried."""
    with pytest.raises(FormatNotRecognised, match="empty"):
        reader.parse(b"  \r\n", filename="x.csv")


def test_a_header_that_a_mapping_matches_names_the_sender_by_its_gln(reader):
    """csv-orders-generic recognises the header; its buyer GLN column names the sender."""
    payload = parse(reader, GENERIC)
    assert [m.id for m in payload.matched] == ["csv-orders-generic"]
    assert payload.senders == [Sender("4012345000009", "gln")]
    assert payload.unidentified == ""
    assert payload.summary() == "CSV, 6 line(s), recognised by mapping csv-orders-generic"
    assert payload.control_refs() == [] and payload.interchanges_seen() == []


def test_a_file_nothing_recognises_says_how_to_name_its_partner(reader):
    """No match and no identifier column: the reason tells the operator what to do."""
    payload = parse(reader, "Foo;Bar\n1;2\n")
    assert payload.senders == []
    assert payload.unidentified.startswith(
        "CSV file: partner unknown, name it by a partner-specific inbox or an identifier column")


def test_a_recognised_file_without_sender_column_says_so(reader):
    """The article master is recognised by its header but names no sender."""
    header = ('"GTIN/EAN";"ArticleNumber";"Description";"Size";"Color";"BuyerProductGroup";'
              '"RetailPrice";"DateFrom";"PromoPrice";"DateUntill"\r\n')
    payload = parse(reader, header + "7612345678900;A1;Shirt;M;;G1;10,00;01-04-2024;;\r\n")
    assert [m.id for m in payload.matched] == ["csv-pricelist-articledata"]
    assert "names no sender column" in payload.unidentified


def test_documents_come_back_mapped_or_failed_per_order(reader):
    """A-2's bad quantity fails A-2 alone, with stage, line, column and business number."""
    payload = parse(reader, GENERIC)
    results = payload.documents(partner=partner(), transmission_id="t1", filename="orders.csv")
    assert [type(r).__name__ for r in results] == ["MappedDocument", "FailedMessage",
                                                   "MappedDocument"]
    first, failed = results[0], results[1]
    assert isinstance(first, MappedDocument) and isinstance(failed, FailedMessage)
    assert (first.doc_type, first.business_number, first.schema_version, first.message_ref,
            first.interchange_ref) == ("order", "A-1", "edigw.order/1", "lines 2-3", None)
    assert first.message_id == first.document.message_id
    assert first.document.source.transmission_id == "t1"
    assert (failed.status, failed.stage, failed.business_number, failed.message_ref,
            failed.doc_type) == ("FAILED", "map", "A-2", "line 4", "order")
    assert failed.reason == ("order A-2 (line 4): line 4, column \"Qty\" (5): 'zwölf' is not a "
                             "number")


def test_the_partners_csv_mapping_is_used_even_without_match(reader):
    """csv-orders-header-detail has no match: the partner's profile chooses it."""
    payload = parse(reader, HEAD_DETAIL)
    assert payload.matched == [] and payload.senders == []
    results = payload.documents(partner=partner(("order", "csv-orders-header-detail")),
                                transmission_id=None, filename="hd.csv")
    assert isinstance(results[0], MappedDocument)
    assert isinstance(results[1], FailedMessage) and results[1].business_number == "PO2"
    assert results[1].reason.startswith("order PO2 (lines 3-4): line 4, record D, column 6: 'two'")


def test_the_partners_overlay_wins_over_the_generic_match(reader, tmp_path):
    """A partner naming its overlay gets it, though the generic mapping matches the header."""
    root = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", root)
    (root / "csv" / "acme-orders.yaml").write_text(
        "id: acme-orders\nextends: csv-orders-generic\ndecimal: '.'\nthousands: ','\n",
        encoding="utf-8")
    payload = CsvReader(MappingSet.load(root)).parse(
        b"Order No;Qty;Unit Price\nB-1;1,000;2.50\n", filename="b.csv")
    [doc] = payload.documents(partner=partner(("order", "acme-orders")), transmission_id=None,
                              filename="b.csv")
    assert doc.document.source.mapping == "acme-orders"
    assert (doc.document.lines[0].quantity, doc.document.lines[0].unit_price) == (1000, 2.5)


@pytest.mark.parametrize(("named", "words"), [
    ([("order", "nope")], "names CSV mapping 'nope', which does not exist"),
    ([("price-list", "csv-orders-generic")], "for price-list, but it makes a order"),
    ([("order", "csv-orders-header-detail"), ("order", "csv-orders-flat30")],
     "names several CSV mappings"),
    ([], "no CSV mapping for this file"),
])
def test_a_mapping_that_cannot_be_chosen_fails_the_file(reader, named, words):
    """Wrong names, ambiguity, or nothing to go by: a MappingError for the whole file."""
    payload = parse(reader, "Foo;Bar\n1;2\n")
    with pytest.raises(MappingError, match=words):
        payload.documents(partner=partner(*named), transmission_id=None, filename="x.csv")


def test_of_two_named_mappings_the_one_whose_match_fits_is_used(reader):
    """A partner sending orders and price lists as CSV names both; the header decides."""
    p = partner(("order", "csv-orders-generic"), ("price-list", "csv-pricelist-articledata"))
    results = parse(reader, GENERIC).documents(partner=p, transmission_id=None, filename="o")
    assert {r.doc_type for r in results} == {"order"}


def test_encoding_fallback_and_ignored_records_reach_the_payload_warnings(reader):
    """Warnings about the file as a whole are the payload's, for the timeline."""
    data = ("Order No;Qty;Note\nA;1;Crème brûlée\n").encode("cp1252")
    payload = reader.parse(data, filename="o.csv")
    payload.documents(partner=partner(("order", "csv-orders-generic")), transmission_id=None,
                      filename="o.csv")
    assert any("not UTF-8" in w and "windows-1252" in w for w in payload.warnings)
