"""Outbound XML and Factur-X rendering: each rendering read back through edigw's own
inbound readers gives the same invoice (or price list); required values, XSD faults and
escaping are checked on the real mappings under mappings/outbound/."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Partner
from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.ports import MappedDocument
from gateway.formats.mapping import MappingSet
from gateway.formats.pdf import PdfReader
from gateway.formats.render import (
    SAMPLE_CONTEXT,
    SAMPLE_CONTROL_REF,
    OutboundMappings,
    RenderError,
)
from gateway.formats.render.xml import XmlTemplate
from gateway.formats.xml.reader import XmlReader
from gateway.formats.xml.safe import parse_xml

REPO = Path(__file__).resolve().parents[2]
PARTNER = Partner(id="sample", name="Sample")


@pytest.fixture(scope="module")
def outbound() -> OutboundMappings:
    return OutboundMappings.load(REPO / "mappings")


@pytest.fixture(scope="module")
def xml_reader() -> XmlReader:
    return XmlReader(MappingSet.load(REPO / "mappings"))


def sample(mapping: Any) -> dict[str, Any]:
    path = Path(mapping.file).with_name(f"{mapping.id}.sample.json")
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def read_back(reader: Any, data: bytes, filename: str) -> Any:
    payload = reader.parse(data, filename=filename)
    results = payload.documents(partner=PARTNER, transmission_id=None, filename=filename)
    assert len(results) == 1
    result = results[0]
    assert isinstance(result, MappedDocument), getattr(result, "reason", result)
    return result.document


def dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def assert_same_invoice(original: dict[str, Any], back: Any) -> None:
    assert back.invoice_number == original["invoice_number"]
    for key in ("tax_exclusive", "tax_total", "tax_inclusive", "payable", "line_total"):
        assert getattr(back.totals, key) == dec(original["totals"][key]), key
    assert len(back.lines) == len(original["lines"])
    for line, source in zip(back.lines, original["lines"], strict=True):
        assert line.line_net_amount == dec(source["line_net_amount"])
        assert line.quantity == dec(source["quantity"])
        assert line.net_price == dec(source["net_price"])
        assert line.description == source["description"]
    assert [(v.rate, v.tax_amount) for v in back.vat_breakdown] == [
        (dec(v["rate"]), dec(v["tax_amount"])) for v in original["vat_breakdown"]]
    assert back.parties.seller.vat_id == original["parties"]["seller"]["vat_id"]
    assert back.payment.account_id == original["payment"]["account_id"]


def test_every_outbound_sample_is_a_valid_canonical_document_and_renders_as_expected(outbound):
    mine = [m for m in outbound if m.syntax in ("xml", "pdf", "csv")]
    assert {m.id for m in mine} >= {
        "ubl-invoice-out", "cii-invoice-out", "ubl-catalogue-out", "ubl-order-response",
        "ubl-despatch-advice", "factur-x-invoice", "csv-pricelist-out", "csv-invoice-out",
        "csv-order-response-out"}
    for mapping in mine:
        doc = sample(mapping)
        CANONICAL_MODELS[mapping.document].model_validate(doc)
        rendered = mapping.render(doc, SAMPLE_CONTEXT).seal(SAMPLE_CONTROL_REF)
        expected = Path(mapping.file).with_name(
            f"{mapping.id}.expected{mapping.suffix}").read_bytes()
        if hasattr(mapping, "sample_equal"):
            assert mapping.sample_equal(rendered, expected), mapping.id
        else:
            assert rendered == expected, mapping.id


def test_aliases_choose_one_mapping_per_document(outbound):
    assert outbound.choose("invoice", "ubl").id == "ubl-invoice-out"
    assert outbound.choose("invoice", "cii").id == "cii-invoice-out"
    assert outbound.choose("invoice", "factur-x").id == "factur-x-invoice"
    assert outbound.choose("price-list", "ubl").id == "ubl-catalogue-out"
    assert outbound.choose("order-response", "ubl").id == "ubl-order-response"
    assert outbound.choose("despatch-advice", "ubl").id == "ubl-despatch-advice"


def test_ubl_invoice_round_trip(outbound, xml_reader):
    mapping = outbound.choose("invoice", "ubl")
    doc = sample(mapping)
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("ignored")
    back = read_back(xml_reader, data, "out.xml")
    assert_same_invoice(doc, back)
    assert back.source.mapping == "ubl-invoice"
    assert back.source.standard == "Peppol BIS Billing 3.0"
    assert back.totals.prepaid == Decimal("20.00")
    assert [a.amount for a in back.allowances] == [Decimal("5.00")]
    assert back.lines[0].gross_price == Decimal("13.00")
    assert back.lines[1].allowance_amounts == [Decimal("0.40")]


def test_a_credit_note_type_renders_a_ubl_credit_note(outbound, xml_reader):
    mapping = outbound.choose("invoice", "ubl")
    doc = sample(mapping)
    doc.update(invoice_type="381", preceding_invoice_reference="FA-2025-00007",
               preceding_invoice_date="2025-02-10")
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    assert parse_xml(data).getroot().tag.endswith("}CreditNote")
    back = read_back(xml_reader, data, "credit.xml")
    assert back.source.mapping == "ubl-creditnote"
    assert back.invoice_type == "381"
    assert back.preceding_invoice_reference == "FA-2025-00007"
    assert_same_invoice(doc, back)


def test_cii_invoice_round_trip(outbound, xml_reader):
    mapping = outbound.choose("invoice", "cii")
    doc = sample(mapping)
    back = read_back(xml_reader, mapping.render(doc, SAMPLE_CONTEXT).seal("1"), "out.xml")
    assert back.source.mapping == "cii-invoice"
    assert_same_invoice(doc, back)
    assert back.due_date.isoformat() == doc["due_date"]
    assert [c.amount for c in back.charges] == [Decimal("10.00")]


def test_factur_x_round_trip_through_the_pdf_reader(outbound, xml_reader):
    mapping = outbound.choose("invoice", "factur-x")
    doc = sample(mapping)
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    assert data.startswith(b"%PDF-")
    back = read_back(PdfReader(xml_reader=xml_reader), data, "invoice.pdf")
    assert back.source.standard == "Factur-X EN 16931"
    assert_same_invoice(doc, back)


def test_the_factur_x_page_is_readable_and_sample_equal_compares_content(outbound):
    from pypdf import PdfReader as Pypdf

    mapping = outbound.choose("invoice", "factur-x")
    doc = sample(mapping)
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    text = "\n".join(p.extract_text() for p in Pypdf(io.BytesIO(data)).pages)
    for words in ("FA-2025-00042", "Moulins Durand SAS", "Grossiste Alpin SARL",
                  "Farine de seigle T130", "164.44", "144.44", "26.00", "0.44", "2025-03-14"):
        assert words in text, words
    other = copy.deepcopy(doc)
    other["totals"]["payable"] = "144.45"
    changed = mapping.render(other, SAMPLE_CONTEXT).seal("1")
    assert mapping.sample_equal(data, data)
    assert not mapping.sample_equal(data, changed)
    assert not mapping.sample_equal(data, b"not a pdf")


def test_price_list_as_ubl_catalogue_round_trip(outbound, xml_reader):
    mapping = outbound.choose("price-list", "ubl")
    doc = sample(mapping)
    back = read_back(xml_reader, mapping.render(doc, SAMPLE_CONTEXT).seal("1"), "cat.xml")
    assert back.price_list_number == doc["price_list_number"]
    assert back.source.mapping == "ubl-catalogue"
    assert [i.gtin for i in back.items] == [i["gtin"] for i in doc["items"]]
    assert [i.action for i in back.items] == ["add", "change", "delete", "change"]
    for item, source in zip(back.items, doc["items"], strict=True):
        assert [(p.type, p.amount, p.quantity_from, p.valid_to) for p in item.prices] == [
            (p["type"], dec(p["amount"]), dec(p.get("quantity_from")),
             dt.date.fromisoformat(p["valid_to"]) if "valid_to" in p else None)
            for p in source["prices"]]


def test_order_response_and_despatch_advice_are_valid_ubl(outbound):
    response = outbound.choose("order-response", "ubl")
    root = parse_xml(response.render(sample(response), SAMPLE_CONTEXT).seal("1")).getroot()
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
          "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}
    assert root.findtext("cbc:OrderResponseCode", namespaces=ns) == "CA"
    assert root.xpath("cac:OrderLine/cac:LineItem/cbc:LineStatusCode/text()",
                      namespaces=ns) == ["5", "3", "7"]
    advice = outbound.choose("despatch-advice", "ubl")
    root = parse_xml(advice.render(sample(advice), SAMPLE_CONTEXT).seal("1")).getroot()
    assert root.xpath("cac:DespatchLine/cac:Shipment/cac:TransportHandlingUnit/cbc:ID/text()",
                      namespaces=ns) == ["340123450000000016"] * 2 + ["340123450000000023"]
    assert root.findtext("cac:Shipment/cac:ShipmentStage/cbc:TransportModeCode",
                         namespaces=ns) == "3"
    assert len(root.findall("cac:DespatchLine", ns)) == 4


@pytest.mark.parametrize("fmt", ["ubl", "cii", "factur-x"])
def test_a_missing_required_value_names_its_canonical_path(outbound, fmt):
    mapping = outbound.choose("invoice", fmt)
    doc = sample(mapping)
    del doc["lines"][1]["line_net_amount"]
    with pytest.raises(RenderError) as caught:
        mapping.render(doc, SAMPLE_CONTEXT)
    assert caught.value.path == "lines[1].line_net_amount"
    assert caught.value.mapping == mapping.id
    doc = sample(mapping)
    doc["parties"]["seller"]["name"] = ""
    with pytest.raises(RenderError, match="parties.seller.name"):
        mapping.render(doc, SAMPLE_CONTEXT)
    doc = sample(mapping)
    del doc["parties"]["buyer"]
    with pytest.raises(RenderError, match=r"at parties\.buyer$"):
        mapping.render(doc, SAMPLE_CONTEXT)


def test_an_xsd_violation_is_a_render_error_with_element_and_line(outbound):
    mapping = outbound.choose("invoice", "ubl")
    doc = sample(mapping)
    doc["lines"][0]["quantity"] = "ten"  # not a decimal: the filter refuses it
    with pytest.raises(RenderError, match="not a decimal"):
        mapping.render(doc, SAMPLE_CONTEXT)
    doc = sample(mapping)
    doc["issue_date"] = "14/03/2025"
    with pytest.raises(RenderError, match="not an ISO date"):
        mapping.render(doc, SAMPLE_CONTEXT)
    doc = sample(mapping)
    doc["currency"] = "EURO"  # passes the template, fails the UBL currency code list
    with pytest.raises(RenderError, match="CurrencyCode"):
        mapping.render(doc, SAMPLE_CONTEXT)
    template: XmlTemplate = mapping.xml
    bad = mapping.render(sample(mapping), SAMPLE_CONTEXT).seal("1").replace(
        b"<cbc:IssueDate>2025-03-14</cbc:IssueDate>", b"<cbc:IssueDate>soon</cbc:IssueDate>")
    with pytest.raises(RenderError) as caught:
        template.check(bad)
    assert caught.value.path == "Invoice/cbc:IssueDate (line 8)"
    assert "not valid against UBL-Invoice-2.1.xsd" in caught.value.reason


def test_cii_xsd_violation_is_caught(outbound):
    mapping = outbound.choose("invoice", "cii")
    data = mapping.render(sample(mapping), SAMPLE_CONTEXT).seal("1")
    with pytest.raises(RenderError, match="not valid against CrossIndustryInvoice") as caught:
        mapping.xml.check(data.replace(b"<ram:TypeCode>380</ram:TypeCode>",
                                       b"<ram:Typecode>380</ram:Typecode>"))
    assert caught.value.path == "rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:Typecode (line 16)"
    data = mapping.render(sample(mapping), SAMPLE_CONTEXT).seal("1")
    second_line = data.index(b"<ram:BilledQuantity", data.index(b"<ram:LineID>2<"))
    bad = data[:second_line] + data[second_line:].replace(b">4</ram:BilledQuantity>",
                                                             b">four</ram:BilledQuantity>", 1)
    with pytest.raises(RenderError) as caught:
        mapping.xml.check(bad)
    assert caught.value.path is not None and caught.value.path.startswith(
        "rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/"
        "ram:IncludedSupplyChainTradeLineItem[2]/ram:SpecifiedLineTradeDelivery/"
        "ram:BilledQuantity (line ")
    pdf = outbound.choose("invoice", "factur-x")
    # The Factur-X mapping validates against the Factur-X EN 16931 XSD the same way.
    extended = data.replace(b"<ram:BuyerReference>", b"<ram:SellerTradeParty><ram:Name>x"
                            b"</ram:Name></ram:SellerTradeParty><ram:BuyerReference>", 1)
    with pytest.raises(RenderError, match="not valid"):
        pdf.xml.check(extended)


def test_markup_characters_in_values_are_escaped(outbound, xml_reader):
    mapping = outbound.choose("invoice", "ubl")
    doc = sample(mapping)
    doc["notes"] = ['Say "hi" & <b>bye</b> \'now\'']
    doc["parties"]["buyer"]["name"] = "A&B <Trading> \"SA\""
    data = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    assert b"&lt;inox&gt; &amp; bois" in data
    back = read_back(xml_reader, data, "out.xml")
    assert back.notes == doc["notes"]
    assert back.parties.buyer.name == "A&B <Trading> \"SA\""
    assert back.lines[0].description == 'Moulin à café "Classic" <inox> & bois'


def test_the_test_indicator_and_control_reference_do_not_change_xml(outbound):
    import dataclasses

    mapping = outbound.choose("invoice", "ubl")
    doc = sample(mapping)
    test_ctx = dataclasses.replace(SAMPLE_CONTEXT, test=True)
    assert (mapping.render(doc, SAMPLE_CONTEXT).seal("1")
            == mapping.render(doc, test_ctx).seal("99"))
    assert mapping.uses_control_ref is False


def test_render_and_validate_timings(outbound, capsys):
    """Measured once for the record (printed with -s), bounded loosely."""
    ubl = outbound.choose("invoice", "ubl")
    pdf = outbound.choose("invoice", "factur-x")
    doc = sample(ubl)
    ubl.render(doc, SAMPLE_CONTEXT)
    pdf.render(doc, SAMPLE_CONTEXT)  # warm: schemas compiled, libraries imported
    start = time.perf_counter()
    for _ in range(20):
        ubl.render(doc, SAMPLE_CONTEXT)
    per_ubl = (time.perf_counter() - start) / 20
    start = time.perf_counter()
    for _ in range(3):
        pdf.render(doc, SAMPLE_CONTEXT)
    per_pdf = (time.perf_counter() - start) / 3
    print(f"UBL invoice render+validate {per_ubl * 1000:.1f} ms; "
          f"Factur-X PDF {per_pdf * 1000:.1f} ms")
    assert per_ubl < 1.0 and per_pdf < 10.0


def test_xml_definition_errors_name_the_file(tmp_path):
    from gateway.core.errors import MappingDefinitionError
    from gateway.formats.render.xml import compile_xml_renderer

    base = {"id": "x", "document": "invoice", "syntax": "xml"}
    with pytest.raises(MappingDefinitionError, match="unknown schema key"):
        compile_xml_renderer({**base, "schema": "ubl-9:Invoice"}, str(tmp_path / "x.yaml"), {})
    with pytest.raises(MappingDefinitionError, match="template x.xml.j2 not found"):
        compile_xml_renderer({**base, "schema": "ubl-2.1:Invoice"}, str(tmp_path / "x.yaml"),
                             {})
    (tmp_path / "x.xml.j2").write_text("{% if %}", encoding="utf-8")
    with pytest.raises(MappingDefinitionError, match=r"x\.xml\.j2:1"):
        compile_xml_renderer({**base, "schema": "ubl-2.1:Invoice"}, str(tmp_path / "x.yaml"),
                             {})
    with pytest.raises(MappingDefinitionError, match="'document'"):
        compile_xml_renderer({**base, "document": "order", "schema": "ubl-2.1:Invoice"},
                             str(tmp_path / "x.yaml"), {})


def test_a_code_without_entry_is_a_render_error(outbound):
    mapping = outbound.choose("order-response", "ubl")
    doc = sample(mapping)
    doc["status"] = "maybe"
    with pytest.raises(RenderError, match="'maybe' has no code in table 'response'"):
        mapping.render(doc, SAMPLE_CONTEXT)


def test_without_a_truetype_font_the_page_falls_back_to_helvetica(outbound):
    from pypdf import PdfReader as Pypdf

    from gateway.formats.mapping.yamlsrc import load_with_lines
    from gateway.formats.render.facturx import compile_facturx_renderer

    path = REPO / "mappings" / "outbound" / "pdf" / "factur-x-invoice.yaml"
    data, lines = load_with_lines(path)
    mapping = compile_facturx_renderer({**data, "fonts": ["/nonexistent/Font.ttf"]},
                                       str(path), lines)
    assert mapping.font is None
    doc = sample(mapping)
    doc["notes"] = ["Prix en € — merci"]
    pdf = mapping.render(doc, SAMPLE_CONTEXT).seal("1")
    text = Pypdf(io.BytesIO(pdf)).pages[0].extract_text()
    assert "Échéance" in text and "164.44" in text
    assert mapping.sample_equal(pdf, pdf)


def test_a_misspelt_canonical_name_in_a_template_fails_loudly(tmp_path):
    from gateway.formats.render.xml import compile_xml_renderer

    (tmp_path / "x.xml.j2").write_text(
        "<Invoice>{% for line in doc.lines %}{{ line.net_prise }}{% endfor %}</Invoice>",
        encoding="utf-8")
    mapping = compile_xml_renderer({"id": "x", "document": "invoice", "syntax": "xml",
                                    "schema": "ubl-2.1:Invoice"}, str(tmp_path / "x.yaml"), {})
    with pytest.raises(RenderError, match="'net_prise', which the canonical InvoiceLine"):
        mapping.render({"invoice_number": "1", "lines": [{"quantity": "1"}]}, SAMPLE_CONTEXT)
