"""Outbound CSV rendering: declared columns, rows per list, partner overrides, and the
price list read back through the inbound article-master CSV mapping."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.config import DocumentSettings, Partner
from gateway.core.errors import MappingDefinitionError
from gateway.core.ports import MappedDocument
from gateway.formats.csv import CsvReader
from gateway.formats.mapping import MappingSet
from gateway.formats.render import SAMPLE_CONTEXT, OutboundMappings, RenderError
from gateway.formats.render.csv import compile_csv_renderer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outbound() -> OutboundMappings:
    return OutboundMappings.load(REPO / "mappings")


def sample(mapping: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        Path(mapping.file).with_name(f"{mapping.id}.sample.json").read_text(encoding="utf-8"))
    return doc


def rows(data: bytes, encoding: str = "utf-8", delimiter: str = ";") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(encoding)), delimiter=delimiter))


def test_price_list_csv_reads_back_through_the_article_master_mapping(outbound):
    mapping = outbound.choose("price-list", "csv")
    doc = sample(mapping)
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    reader = CsvReader(MappingSet.load(REPO / "mappings"))
    partner = Partner(id="sample", name="Sample", documents=[
        DocumentSettings(type="price-list", format="csv", mapping="csv-pricelist-articledata")])
    payload = reader.parse(data, filename="ART-2024-04.csv")
    [result] = payload.documents(partner=partner, transmission_id=None,
                                 filename="ART-2024-04.csv")
    assert isinstance(result, MappedDocument), getattr(result, "reason", result)
    back = result.document
    assert back.source.mapping == "csv-pricelist-articledata"
    assert [i.gtin for i in back.items] == [i["gtin"] for i in doc["items"]]
    assert [i.description for i in back.items] == [i["description"] for i in doc["items"]]
    assert [i.supplier_article for i in back.items] == [i["supplier_article"]
                                                        for i in doc["items"]]
    for item, source in zip(back.items, doc["items"], strict=True):
        assert [(p.specification, p.amount, p.valid_to) for p in item.prices] == [
            (p["specification"], Decimal(p["amount"]),
             dt_or_none(p.get("valid_to"))) for p in source["prices"]]
        assert item.valid_from.isoformat() == source["valid_from"]


def dt_or_none(text: str | None) -> Any:
    import datetime as dt

    return dt.date.fromisoformat(text) if text else None


def test_invoice_csv_repeats_the_document_fields_on_each_line(outbound):
    mapping = outbound.choose("invoice", "csv")
    doc = sample(mapping)
    table = rows(mapping.render(doc, SAMPLE_CONTEXT).seal("1"))
    assert len(table) == len(doc["lines"])
    assert {r["InvoiceNumber"] for r in table} == {doc["invoice_number"]}
    assert {r["TotalInclVAT"] for r in table} == {"164.44"}
    assert [r["LineAmount"] for r in table] == ["125.00", "8.00"]
    assert table[0]["Description"] == 'Moulin à café "Classic" <inox> & bois'
    assert table[1]["VATRate"] == "5.5"


def test_order_response_csv_uses_its_code_tables_and_date_format(outbound):
    mapping = outbound.choose("order-response", "csv")
    table = rows(mapping.render(sample(mapping), SAMPLE_CONTEXT).seal("1"))
    assert [r["LineStatus"] for r in table] == ["ACCEPTED", "CHANGED", "REJECTED"]
    assert table[0]["OrderStatus"] == "CHANGED"
    assert table[0]["ResponseDate"] == "02.03.2024"
    assert table[1]["UnitPrice"] == "7,20"
    assert table[1]["Reason"] == "Partial stock; the rest follows in week 12."


def test_a_partner_overrides_delimiter_decimal_encoding_and_header(outbound):
    mapping = outbound.choose("price-list", "csv")
    ctx = dataclasses.replace(SAMPLE_CONTEXT, options={
        "delimiter": ",", "decimal": ".", "encoding": "utf-8", "header": False,
        "quoting": "all"})
    data = mapping.render(sample(mapping), ctx).seal("1")
    first = data.decode("utf-8").splitlines()[0]
    assert first == ('"7612345678900","CH-1001","Chemise lin écru, manches longues","","",'
                     '"","59.90","01-04-2024","",""')
    with pytest.raises(RenderError, match="delimiter"):
        mapping.render(sample(mapping), dataclasses.replace(SAMPLE_CONTEXT,
                                                            options={"delimiter": ";;"}))


def test_a_missing_required_value_names_its_path(outbound):
    mapping = outbound.choose("price-list", "csv")
    doc = sample(mapping)
    doc["items"][2]["prices"] = []
    with pytest.raises(RenderError) as caught:
        mapping.render(doc, SAMPLE_CONTEXT)
    assert caught.value.path == "items[2].prices[specification=RTP].amount"
    invoice = outbound.choose("invoice", "csv")
    doc = sample(invoice)
    del doc["totals"]["tax_total"]
    with pytest.raises(RenderError, match=r"at totals\.tax_total$"):
        invoice.render(doc, SAMPLE_CONTEXT)


def test_a_character_the_encoding_cannot_write_is_a_render_error(outbound):
    mapping = outbound.choose("price-list", "csv")
    doc = sample(mapping)
    doc["items"][1]["description"] = "Chemise 100 € lin"
    with pytest.raises(RenderError, match="iso-8859-1") as caught:
        mapping.render(doc, SAMPLE_CONTEXT)
    assert caught.value.path == "line 3 of the rendering"


def test_definition_errors_name_the_file():
    base = {"id": "x", "document": "invoice", "syntax": "csv"}
    with pytest.raises(MappingDefinitionError, match="columns"):
        compile_csv_renderer(base, "x.yaml", {})
    with pytest.raises(MappingDefinitionError, match="path segment"):
        compile_csv_renderer({**base, "columns": [{"name": "A", "path": "lines[x"}]},
                             "x.yaml", {})
    with pytest.raises(MappingDefinitionError, match="code table"):
        compile_csv_renderer({**base, "columns": [{"name": "A", "path": "a", "code": "t"}]},
                             "x.yaml", {})
    with pytest.raises(MappingDefinitionError, match="delimiter"):
        compile_csv_renderer({**base, "delimiter": "ab", "columns": [{"name": "A",
                                                                      "value": "1"}]},
                             "x.yaml", {})
