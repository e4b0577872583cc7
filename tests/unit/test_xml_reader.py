"""The XML reader as the pipeline uses it: sniff, parse, detect, validate, map, fail well."""

from __future__ import annotations

import codecs
import shutil
from pathlib import Path

import pytest

from gateway.config import Partner
from gateway.core.ports import FailedMessage, MappedDocument, Sender
from gateway.formats.mapping import MappingSet
from gateway.formats.xml import schemas
from gateway.formats.xml.detect import detect
from gateway.formats.xml.reader import XmlReader
from gateway.formats.xml.safe import XmlError, parse_xml

REPO = Path(__file__).resolve().parents[2]
XML = REPO / "mappings" / "xml"
ACME = Partner(id="acme", name="Acme")
UBL = "urn:oasis:names:specification:ubl:schema:xsd:"


@pytest.fixture(scope="module")
def reader() -> XmlReader:
    return XmlReader(MappingSet.load(REPO / "mappings"))


def sample(name: str) -> bytes:
    return (XML / f"ubl-{name}.sample.xml").read_bytes()


def one(reader: XmlReader, data: bytes, partner: Partner = ACME):
    payload = reader.parse(data, filename="in.xml")
    results = payload.documents(partner=partner, transmission_id="t-1", filename="in.xml")
    assert len(results) == 1
    return payload, results[0]


def test_sniff_takes_xml_after_a_bom_or_white_space_and_nothing_else(reader):
    """'<' first (after a BOM, blanks, or in UTF-16) is XML; EDIFACT, CSV, PDF are not."""
    for head in (b"<?xml version='1.0'?><a/>", b"\xef\xbb\xbf<Invoice", b"\r\n  <Order",
                 codecs.BOM_UTF16_LE + "<a/>".encode("utf-16-le"), b"<\x00?\x00x\x00"):
        assert reader.sniff(head)
    for head in (b"UNA:+.? 'UNB+UNOC:3", b"order;qty\n1;2", b"%PDF-1.7", b""):
        assert not reader.sniff(head)


@pytest.mark.parametrize(("name", "doc_type", "standard"), [
    ("invoice", "invoice", "Peppol BIS Billing 3.0"),
    ("creditnote", "invoice", "Peppol BIS Billing 3.0"),
    ("order", "order", "Peppol BIS Ordering 3"),
    ("catalogue", "price-list", "Peppol BIS Catalogue 3"),
])
def test_every_ubl_sample_is_schema_valid_and_maps(reader, name, doc_type, standard):
    """The shipped samples pass the UBL 2.1 XSD and code lists and become documents."""
    payload, result = one(reader, sample(name))
    assert payload.invalid is None and payload.kind.schema.startswith("ubl-2.1:")
    assert isinstance(result, MappedDocument), getattr(result, "reason", "")
    assert result.doc_type == doc_type and result.warnings == []
    assert result.document.source.standard == standard
    assert result.document.source.format == "xml" and result.document.partner == "acme"
    assert result.business_number and result.message_id == result.document.message_id


def test_senders_are_the_sellers_ids_for_invoices_and_the_buyers_for_orders(reader):
    """Identifiers come with their scheme: GLN, SIRET, SIREN, VAT."""
    invoice = reader.parse(sample("invoice"), filename=None)
    assert invoice.senders == [Sender("3012345000017", "gln"), Sender("73282932000074", "siret"),
                               Sender("732829320", "siren"), Sender("FR44732829320", "vat")]
    order = reader.parse(sample("order"), filename=None)
    assert order.senders[0] == Sender("3012345000024", "gln")
    assert Sender("FR61552100554", "vat") in order.senders


def test_a_credit_note_is_an_invoice_of_type_381(reader):
    """CreditNote maps to the canonical invoice with its lines and the invoice it corrects."""
    _, result = one(reader, sample("creditnote"))
    doc = result.document
    assert doc.invoice_type == "381" and doc.preceding_invoice_reference == "FA-2025-00042"
    assert [str(line.quantity) for line in doc.lines] == ["4"]


def test_detection_tells_the_standards_apart():
    """UBL by root and namespace, Peppol by customization, CII and Order-X by guideline."""
    cases = {
        f'<Invoice xmlns="{UBL}Invoice-2"/>': ("ubl", "invoice", "UBL"),
        f'<OrderResponse xmlns="{UBL}OrderResponse-2"/>': ("ubl", None, "UBL"),
        '<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:'
        'CrossIndustryInvoice:100" xmlns:ram="urn:x"><rsm:ExchangedDocumentContext>'
        '<ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:factur-x.eu:1p0:minimum'
        '</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>'
        '</rsm:ExchangedDocumentContext></rsm:CrossIndustryInvoice>':
            ("cii", "invoice", "Factur-X MINIMUM"),
        '<rsm:SCRDMCCBDACIOMessageStructure xmlns:rsm="urn:un:unece:uncefact:data:'
        'SCRDMCCBDACIOMessageStructure:100"/>': ("order-x", "order", "Order-X"),
        "<message><order/></message>": ("xml", None, "XML"),
    }
    for text, expected in cases.items():
        kind = detect(parse_xml(text.encode()).getroot())
        assert (kind.kind, kind.doc_type, kind.standard) == expected
    kind = detect(parse_xml(sample("invoice")).getroot())
    assert kind.customization.endswith("poacc:billing:3.0")
    assert kind.describe() == "UBL 2.1 Invoice (Peppol BIS Billing 3.0)"


def test_a_schema_error_is_a_failed_document_at_stage_validate_naming_line_and_element(reader):
    """A misspelt element fails the document (not the parse) with the XSD's complaint."""
    data = sample("invoice").replace(b"<cbc:BuyerReference>ACH-77</cbc:BuyerReference>",
                                     b"<cbc:BuyerRef>ACH-77</cbc:BuyerRef>")
    payload, result = one(reader, data)
    assert isinstance(result, FailedMessage)
    assert (result.status, result.stage, result.doc_type) == ("FAILED", "validate", "invoice")
    assert result.business_number == "FA-2025-00042"
    assert "BuyerRef" in result.reason and "line 17" in result.reason
    assert payload.invalid.position.element == "BuyerRef"
    assert payload.invalid.position.line == 17
    # The same failure always gets the same id, so a reprocessed fix replaces it.
    assert result.message_id == one(reader, data)[1].message_id


def test_a_value_outside_the_ubl_code_lists_fails_validation(reader):
    """An unknown currency is refused by the code-list step with its element and line."""
    data = sample("order").replace(b"<cbc:DocumentCurrencyCode>EUR<",
                                   b"<cbc:DocumentCurrencyCode>EUX<")
    _, result = one(reader, data)
    assert result.stage == "validate"
    assert "DocumentCurrencyCode 'EUX' is not in the UBL 2.1 CurrencyCode code list" in \
        result.reason


def test_unknown_xml_is_unsupported_with_its_root_and_namespace(reader):
    """XML no mapping claims ends UNSUPPORTED, saying what it is."""
    _, result = one(reader, b'<?xml version="1.0"?><stock xmlns="urn:acme:stock"><a/></stock>')
    assert (result.status, result.stage) == ("UNSUPPORTED", "map")
    assert result.reason.startswith(
        "unsupported XML document stock in namespace urn:acme:stock")
    _, result = one(reader, f'<OrderResponse xmlns="{UBL}OrderResponse-2"><x/>'
                    '</OrderResponse>'.encode())
    assert result.status == "UNSUPPORTED" and "UBL document OrderResponse" in result.reason


def test_unreadable_xml_is_refused_at_parse(reader):
    """Not well-formed or hostile XML raises XmlError from parse (a failed transmission)."""
    with pytest.raises(XmlError) as info:
        reader.parse(b"<Invoice><cbc:ID>1</Invoice>", filename="x.xml")
    assert info.value.stage == "parse" and info.value.position.line == 1


def test_a_mapping_failure_is_a_failed_document_at_stage_map(reader):
    """A bad date in a schema-valid document fails mapping with the field and its line."""
    reader_no_xsd = XmlReader(reader.mappings, validate=False)
    data = sample("invoice").replace(b"<cbc:DueDate>2025-04-13<", b"<cbc:DueDate>13/04/2025<")
    _, result = one(reader_no_xsd, data)
    assert (result.status, result.stage) == ("FAILED", "map")
    assert "due_date" in result.reason and "line 12, element cbc:DueDate" in result.reason


def test_a_partner_profile_naming_a_mapping_gets_it(tmp_path):
    """``documents: [{type: invoice, format: xml, mapping: …}]`` overrides matching."""
    root = tmp_path / "mappings"
    shutil.copytree(XML, root / "xml")
    (root / "acme-invoice.yaml").write_text(
        "id: acme-invoice\nformat: xml\nextends: ubl-invoice\n"
        "fields:\n  buyer_reference: cac:OrderReference/cbc:ID\n", encoding="utf-8")
    reader = XmlReader(MappingSet.load(root))
    partner = Partner(id="acme", name="Acme", documents=[
        {"type": "invoice", "format": "xml", "mapping": "acme-invoice"}])
    _, result = one(reader, sample("invoice"), partner)
    assert result.document.source.mapping == "acme-invoice"
    assert result.document.buyer_reference == "PO-9912"
    _, plain = one(reader, sample("invoice"))
    assert plain.document.source.mapping == "ubl-invoice"
    wrong = Partner(id="acme", name="Acme", documents=[
        {"type": "invoice", "format": "xml", "mapping": "ubl-order"}])
    _, failed = one(reader, sample("invoice"), wrong)
    assert failed.status == "FAILED" and "is for Order" in failed.reason


def test_payload_answers_the_whole_parsed_payload_protocol(reader):
    """No control references, interchanges or replies; a one-line summary."""
    payload = reader.parse(sample("catalogue"), filename="c.xml")
    assert payload.format == "xml" and payload.standard == "Peppol BIS Catalogue 3"
    assert payload.control_refs() == [] and payload.interchanges_seen() == []
    assert payload.replies(partner=ACME, transmission_id="t") == []
    assert payload.summary().startswith("XML, UBL 2.1 Catalogue (Peppol BIS Catalogue 3)")
    assert "schema valid" in payload.summary()


def test_schemas_are_registered_by_key_and_loaded_once(tmp_path):
    """Another helper registers its XSD by key; the compiled schema is cached."""
    xsd = tmp_path / "note.xsd"
    xsd.write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
                   '<xs:element name="note" type="xs:string"/></xs:schema>')
    schemas.register_schema("test:note", xsd)
    assert schemas.validate(parse_xml(b"<note>hi</note>"), "test:note") is True
    assert schemas.load_schema(xsd) is schemas.load_schema(xsd)
    with pytest.raises(XmlError) as info:
        schemas.validate(parse_xml(b"<note><b/></note>"), "test:note")
    assert info.value.stage == "validate" and info.value.position.element == "note"
    assert schemas.validate(parse_xml(b"<x/>"), "no-such-key") is False
    assert "ubl-2.1:Invoice" in schemas.known_schemas()


# -- several documents in one file (a mapping with ``documents``) ------------------------------

PARTNERS = XML / "partners"


def envelope(*messages: str) -> bytes:
    """A Bots in-house order file holding these ``<message>`` bodies."""
    return ("<?xml version='1.0'?>\n<envelope>\n"
            + "".join(f"  <message>\n{m}\n  </message>\n" for m in messages)
            + "</envelope>\n").encode()


def order(number: str, *, quantity: str = "5", date: str = "20250310",
          buyer: str = "3760555123452", kind: str = "orders") -> str:
    return (f"    <type>{kind}</type><docnum>{number}</docnum><docdtm>{date}</docdtm>\n"
            f"    <partys><party><qual>BY</qual><gln>{buyer}</gln></party></partys>\n"
            f"    <lines><line><num>1</num><gtin>3012345678933</gtin>"
            f"<numbergtincu>{quantity}</numbergtincu></line></lines>")


def test_each_message_of_an_envelope_becomes_its_own_document(reader):
    """The shipped Bots sample holds three orders: three documents, each with its own id."""
    data = (PARTNERS / "bots-orders-envelope.sample.xml").read_bytes()
    payload = reader.parse(data, filename="orders.xml")
    assert payload.senders == [Sender("3760555123452", "gln"), Sender("3760555123452", "unb")]
    results = payload.documents(partner=ACME, transmission_id="t-1", filename="orders.xml")
    assert all(isinstance(r, MappedDocument) for r in results), results
    assert [r.business_number for r in results] == ["QE-2025-031", "QE-2025-027", "QE-2025-032"]
    assert [len(r.document.lines) for r in results] == [2, 1, 3]
    assert len({r.message_id for r in results}) == 3
    assert {r.document.source.mapping for r in results} == {"bots-orders-envelope"}


def test_one_bad_order_in_a_file_of_three_fails_alone_naming_its_line_and_number(reader):
    """A bad quantity fails its own message, named by line and number; the others go on."""
    data = envelope(order("PO-1"), order("PO-2", quantity="five"), order("PO-3"))
    payload = reader.parse(data, filename="orders.xml")
    results = payload.documents(partner=ACME, transmission_id="t-1", filename="orders.xml")
    assert [type(r).__name__ for r in results] == ["MappedDocument", "FailedMessage",
                                                   "MappedDocument"]
    failed = results[1]
    assert (failed.status, failed.stage, failed.business_number) == ("FAILED", "map", "PO-2")
    assert failed.description == ("XML document envelope (no namespace), message 2 of 3 at "
                                  "line 8, order PO-2")
    assert failed.reason.startswith(failed.description + ": ")
    assert "quantity" in failed.reason and "line 11" in failed.reason
    assert len({r.message_id for r in results}) == 3
    again = reader.parse(data, filename="orders.xml").documents(
        partner=ACME, transmission_id="t-2", filename="orders.xml")
    assert again[1].message_id == failed.message_id  # a reprocessed fix replaces it


def test_a_message_of_another_kind_is_unsupported_not_failed(reader):
    """A ``<type>`` other than orders is skipped as UNSUPPORTED, saying which node and why."""
    data = envelope(order("PO-1"), order("INV-7", kind="invoices"))
    results = reader.parse(data, filename=None).documents(partner=ACME, transmission_id=None,
                                                          filename=None)
    assert isinstance(results[0], MappedDocument)
    skipped = results[1]
    assert (skipped.status, skipped.stage) == ("UNSUPPORTED", "map")
    assert skipped.reason.startswith("unsupported message 2 of 2 at line 8: not a document "
                                     "mapping 'bots-orders-envelope' reads")


def test_unnamed_failures_of_one_file_keep_apart_and_each_uses_its_own_sender(reader):
    """Two messages without a number fail with distinct ids; a message's own buyer names it."""
    data = envelope(order("", quantity="x"), order("", quantity="y"),
                    order("PO-9", buyer="3760555123469"))
    results = reader.parse(data, filename=None).documents(partner=ACME, transmission_id=None,
                                                          filename=None)
    assert [r.status for r in results[:2]] == ["FAILED", "FAILED"]
    assert results[0].message_id != results[1].message_id
    assert "message 1 of 3 at line 3" in results[0].reason
    assert results[2].document.source.sender_id == "3760555123469"


def test_an_envelope_without_messages_fails_whole_with_its_line(reader):
    """``documents`` selecting nothing in a received file is one FAILED result, not silence."""
    results = reader.parse(b"<envelope>\n</envelope>", filename=None).documents(
        partner=ACME, transmission_id=None, filename=None)
    assert len(results) == 1 and results[0].status == "FAILED"
    assert "no document in the file: documents 'message' selects nothing at line 1" in \
        results[0].reason


def test_a_bots_unh_message_other_than_orders_is_unsupported(reader):
    """The UNH mapping claims ORDERS only (``match when``): an INVOIC is not read as an order."""
    data = (PARTNERS / "bots-orders-unh.sample.xml").read_bytes()
    _, result = one(reader, data)
    assert isinstance(result, MappedDocument) and result.business_number == "PO-UNH-4711"
    _, result = one(reader, data.replace(b">ORDERS<", b">INVOIC<"))
    assert result.status == "UNSUPPORTED"
    assert result.reason.startswith("unsupported XML document UNH")
