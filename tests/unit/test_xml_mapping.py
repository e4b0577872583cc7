"""The XPath mapping engine (``format: xml``): strict loading, paths, types, objects, lists."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.errors import MappingDefinitionError, MappingError
from gateway.core.ports import Sender
from gateway.formats.mapping import MappingSet
from gateway.formats.xml.mapping import XmlMapping, find_xml_mapping, to_xml_date
from gateway.formats.xml.safe import parse_xml

HEAD = """\
id: {id}
format: xml
document: {document}
standard: ACME XML
version: "1"
match: {{root: {root}}}
"""


def load(tmp_path: Path, body: str, *, ident: str = "acme", document: str = "order",
         root: str = "order", head: str | None = None) -> XmlMapping:
    text = (head if head is not None else HEAD.format(id=ident, document=document, root=root))
    (tmp_path / f"{ident}.yaml").write_text(text + textwrap.dedent(body), encoding="utf-8")
    mapping = MappingSet.load(tmp_path, strict=True).get(ident)
    assert isinstance(mapping, XmlMapping)
    return mapping


def bad(tmp_path: Path, body: str, **kwargs) -> MappingDefinitionError:
    with pytest.raises(MappingDefinitionError) as info:
        load(tmp_path, body, **kwargs)
    return info.value


ORDER = b"""<?xml version="1.0"?>
<order number="A-17" xmlns:x="urn:x">
  <date>2024-05-02</date>
  <cii><x:DateTimeString format="102">20240506</x:DateTimeString></cii>
  <buyer gln="4012345000016"><name>Corner Shop</name><vat>DE 123</vat></buyer>
  <note>first</note>
  <note>second</note>
  <line no="1"><gtin>4006381333931</gtin><qty unit="PCE">12</qty><price>1.50</price>
    <price-break from="10">1.40</price-break><price-break from="100">1.20</price-break>
  </line>
  <line no="2"><gtin>4006381333932</gtin><qty unit="KGM">2.5</qty></line>
</order>
"""

SIMPLE_LINES = """\
  lines:
    each: line
    fields:
      line_number: "@no"
      quantity: {path: qty, type: decimal, required: true}
      unit: qty/@unit
"""


def run(mapping: XmlMapping, data: bytes = ORDER, **kwargs):
    root = parse_xml(data).getroot()
    return mapping.map(root, partner_id="acme", **kwargs)


def test_a_mapping_file_with_format_xml_is_compiled_by_the_xml_engine(tmp_path):
    """MappingSet dispatches ``format: xml`` here; the object keeps the registry contract."""
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n" + SIMPLE_LINES)
    assert (mapping.id, mapping.document, mapping.format, mapping.sample_suffix) == (
        "acme", "order", "xml", ".xml")
    assert mapping.auto_match and mapping.file.endswith("acme.yaml")
    order = run(mapping).document
    assert order.order_number == "A-17"
    assert [(line.line_number, line.quantity, line.unit) for line in order.lines] == [
        ("1", Decimal("12"), "PCE"), ("2", Decimal("2.5"), "KGM")]
    assert order.source.format == "xml" and order.source.standard == "ACME XML"
    assert order.source.version == "1" and order.source.mapping == "acme"


def test_types_dates_decimals_gs1_keys_codes_and_defaults(tmp_path):
    """date (ISO and CII @format 102), decimal, gln, gtin with check digits, codes, default."""
    mapping = load(tmp_path, """\
        namespaces: {x: "urn:x"}
        fields:
          order_number: '@number'
          issue_date: {path: date, type: date}
          requested_delivery_date: {path: cii, type: date}
          order_type: {path: missing, default: "220"}
          function: {path: "'9'", codes: {"9": original}}
          currency: {path: "'XYZ'", codes: {EUR: EUR}}
          parties.buyer.gln: {path: buyer/@gln, type: gln}
          parties.buyer.name: buyer/name
          lines:
            each: line
            fields:
              quantity: {path: qty, type: decimal}
              gtin: {path: gtin, type: gtin}
        """)
    mapped = run(mapping)
    order = mapped.document
    assert order.issue_date == dt.date(2024, 5, 2)
    assert order.requested_delivery_date == dt.date(2024, 5, 6)
    assert (order.order_type, order.function, order.currency) == ("220", "original", "XYZ")
    assert order.parties.buyer.gln == "4012345000016"
    assert [line.gtin for line in order.lines] == ["4006381333931", None]
    assert any("check digit" in w for w in mapped.warnings)
    assert any("'XYZ' is not in the mapping's code list" in w for w in mapped.warnings)


def test_iso_and_cii_dates():
    """ISO dates and date-times, CII 102 and 203; anything else is a ConversionError."""
    assert to_xml_date("2024-02-29", None)[0] == dt.date(2024, 2, 29)
    assert to_xml_date("2024-02-29+01:00", None)[0] == dt.date(2024, 2, 29)
    assert to_xml_date("2024-02-29T10:30:00Z", None)[0] == dt.datetime(2024, 2, 29, 10, 30)
    assert to_xml_date("202402291030", "203")[0] == dt.datetime(2024, 2, 29, 10, 30)
    from gateway.formats.mapping.convert import ConversionError

    for text in ("29.02.2024", "2023-02-29", "20240229"):
        with pytest.raises(ConversionError):
            to_xml_date(text, None)


def test_alternatives_all_and_list_fields(tmp_path):
    """Several paths are tried in order; a list field takes every value of every path."""
    mapping = load(tmp_path, """\
        fields:
          order_number: [missing/@x, "@number"]
          notes: note
          parties:
            fields:
              buyer: {at: buyer, fields: {name: [nope, name], vat_id: vat}}
        """)
    order = run(mapping).document
    assert order.order_number == "A-17"
    assert order.notes == ["first", "second"]
    assert (order.parties.buyer.name, order.parties.buyer.vat_id) == ("Corner Shop", "DE 123")


def test_nested_lists_each_relative_to_its_node(tmp_path):
    """A price list's items and their prices: ``each`` inside ``each``, ``..`` climbs."""
    mapping = load(tmp_path, """\
        fields:
          price_list_number: '@number'
          items:
            each: line
            fields:
              gtin: {path: gtin, type: gtin}
              prices:
                each: price | price-break
                fields:
                  type: {path: "self::price-break/@from", codes: {}, default: AAA}
                  amount: {path: ., type: decimal, required: true}
                  quantity_from: {path: "@from", type: decimal}
                  basis_unit: ../qty/@unit
        """, document="price-list")
    items = run(mapping).document.items
    assert [[(p.amount, p.quantity_from, p.basis_unit) for p in i.prices] for i in items] == [
        [(Decimal("1.50"), None, "PCE"), (Decimal("1.40"), Decimal("10"), "PCE"),
         (Decimal("1.20"), Decimal("100"), "PCE")], []]


def test_a_required_field_that_is_missing_names_the_field_the_xpath_and_the_line(tmp_path):
    """MappingError (stage map) with the field, the XPath and the line of the item."""
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n" + SIMPLE_LINES.replace(
        "path: qty,", "path: qty/@nope,"))
    with pytest.raises(MappingError) as info:
        run(mapping)
    error = info.value
    assert error.stage == "map" and error.field == "quantity"
    assert "line 1 (line 8) has no quantity (qty/@nope)" in error.reason
    assert error.position.line == 8


def test_a_bad_number_or_date_names_its_element_line(tmp_path):
    """A value that does not convert fails with the line of the element that holds it."""
    data = ORDER.replace(b"<date>2024-05-02</date>", b"<date>02/05/2024</date>")
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n"
                   "  issue_date: {path: date, type: date}\n")
    with pytest.raises(MappingError) as info:
        run(mapping, data)
    assert info.value.field == "issue_date" and info.value.position.line == 3
    assert "02/05/2024" in info.value.reason


def test_a_document_the_canonical_model_rejects_names_the_item_line(tmp_path):
    """A line without a quantity fails canonical validation, positioned at its node."""
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n  lines:\n"
                   "    each: line\n    fields:\n      line_number: '@no'\n")
    with pytest.raises(MappingError) as info:
        run(mapping)
    assert "lines.0.quantity" in info.value.reason
    assert info.value.position.line == 8


def test_message_id_is_stable_and_depends_on_partner_number_date_and_sender(tmp_path):
    """The same document gives the same id; another number or sender gives another."""
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n"
                   "  issue_date: {path: date, type: date}\n")
    first = run(mapping, sender=Sender("4012345000016", "gln")).document
    again = run(mapping, sender=Sender("4012345000016", "gln")).document
    other = run(mapping, ORDER.replace(b"A-17", b"A-18"),
                sender=Sender("4012345000016", "gln")).document
    assert first.message_id == again.message_id != other.message_id
    assert first.source.sender_id == "4012345000016" and first.source.sender_qualifier == "gln"


def test_senders_by_fixed_scheme_and_by_scheme_code(tmp_path):
    """``scheme`` is fixed; ``scheme_from`` reads a code (0088 GLN, 0009 SIRET, VA …)."""
    data = b"""<inv><seller>
        <id scheme="0088">4012345000016</id><id scheme="0009">73282932000074</id>
        <id scheme="0002">732829320</id><id scheme="ZZZ">skipped</id>
        <id scheme="XX">4012345000023</id><vat>FR44732829320</vat>
        <mail>a@b.example</mail></seller><number>1</number></inv>"""
    mapping = load(tmp_path, """\
        senders:
          - {path: seller/id, scheme_from: "@scheme", codes: {XX: gln}}
          - {path: seller/vat, scheme: vat}
          - {path: seller/mail, scheme: email}
        fields:
          invoice_number: number
        """, document="invoice", root="inv")
    root = parse_xml(data).getroot()
    assert mapping.sender_ids(root) == [
        Sender("4012345000016", "gln"), Sender("73282932000074", "siret"),
        Sender("732829320", "siren"), Sender("4012345000023", "gln"),
        Sender("FR44732829320", "vat"), Sender("a@b.example", "email")]
    assert mapping.map(root, partner_id="p").document.source.sender_id == "4012345000016"


@pytest.mark.parametrize(("body", "line", "words"), [
    ("fields:\n  order_number: '@number'\n  bogus: x\n", 9, "'bogus' is not a field"),
    ("fields:\n  order_number: '@number'\n  message_id: x\n", 9, "'message_id' is not"),
    ("fields:\n  order_number: {path: x, typo: 1}\n", 8, "unknown key 'typo'"),
    ("fields:\n  order_number: 'a[['\n", 8, "bad XPath"),
    ("fields:\n  order_number: 'nope:x'\n", 8, "declare its prefixes"),
    ("fields:\n  order_number: {path: x, type: money}\n", 8, "unknown type 'money'"),
    ("fields:\n  order_number: {path: x, type: date, format: '999'}\n", 8, "date format"),
    ("fields:\n  parties.buyer: x\n", 8, "is an object"),
    ("fields:\n  lines: {at: line, fields: {quantity: q}}\n", 8, "is a list"),
    ("fields:\n  lines: {each: line, fields: {qty: q}}\n", 8, "'qty' is not a field"),
    ("fields:\n  order_number: x\n  issue_date: {each: d, fields: {}}\n", 9, "not an object"),
    ("senders:\n  - {path: x, scheme: duns}\nfields:\n  order_number: x\n", 8,
     "unknown identifier scheme"),
    ("senders:\n  - {path: x}\nfields:\n  order_number: x\n", 8, "either 'scheme'"),
    ("colour: blue\nfields:\n  order_number: x\n", 7, "unknown key 'colour'"),
])
def test_loading_is_strict_and_names_file_and_line(tmp_path, body, line, words):
    """Each malformed rule stops loading with the file, the line and what is wrong."""
    error = bad(tmp_path, body)
    assert words in error.reason
    assert error.file.endswith("acme.yaml") and error.line == line


def test_match_needs_a_root_and_checks_its_keys(tmp_path):
    """``match`` without root, or with an unknown key or a bad pattern, is refused."""
    head = "id: acme\nformat: xml\ndocument: order\n"
    assert "needs 'root'" in bad(tmp_path, "match: {namespace: x}\nfields: {order_number: x}\n",
                                 head=head).reason
    assert "unknown key 'tag'" in bad(tmp_path, "match: {root: a, tag: b}\nfields: "
                                      "{order_number: x}\n", head=head).reason
    assert "regular expression" in bad(tmp_path, "match: {root: a, customization: '('}\n"
                                       "fields: {order_number: x}\n", head=head).reason


def test_matching_prefers_the_most_specific_mapping_and_refuses_a_tie(tmp_path):
    """A customization pattern beats a bare root; two equal claims are a MappingError."""
    ns = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    for ident, extra in (("base", ""), ("peppol", ", customization: peppol")):
        (tmp_path / f"{ident}.yaml").write_text(
            f"id: {ident}\nformat: xml\ndocument: invoice\n"
            f"match: {{root: Invoice, namespace: '{ns}'{extra}}}\n"
            "fields: {invoice_number: x}\n", encoding="utf-8")
    mappings = MappingSet.load(tmp_path).of_format("xml")
    pick = dict(root="Invoice", namespace=ns, profile=None)
    assert find_xml_mapping(mappings, customization="urn:peppol:x", **pick).id == "peppol"
    assert find_xml_mapping(mappings, customization="urn:cen", **pick).id == "base"
    assert find_xml_mapping(mappings, root="Invoice", namespace=None, customization=None,
                            profile=None) is None
    (tmp_path / "twin.yaml").write_text(
        (tmp_path / "base.yaml").read_text().replace("id: base", "id: twin"))
    with pytest.raises(MappingError, match="several XML mappings claim"):
        find_xml_mapping(MappingSet.load(tmp_path).of_format("xml"), customization="x",
                         **pick)


def test_a_partner_overlay_without_match_is_chosen_by_id_only(tmp_path):
    """``extends`` inherits the base's match but the overlay is not auto-matched."""
    load(tmp_path, "fields:\n  order_number: '@number'\n" + SIMPLE_LINES)
    (tmp_path / "acme-shop.yaml").write_text(
        "id: acme-shop\nformat: xml\nextends: acme\nfields:\n  notes: null\n"
        "  order_number: buyer/name\n", encoding="utf-8")
    mappings = MappingSet.load(tmp_path).of_format("xml")
    overlay = next(m for m in mappings if m.id == "acme-shop")
    assert not overlay.auto_match
    assert find_xml_mapping(mappings, root="order", namespace=None, customization=None,
                            profile=None).id == "acme"
    chosen = find_xml_mapping(mappings, root="order", namespace=None, customization=None,
                              profile=None, mapping_id="acme-shop")
    assert run(chosen).document.order_number == "Corner Shop"
    with pytest.raises(MappingError, match="is for order"):
        find_xml_mapping(mappings, root="other", namespace=None, customization=None,
                         profile=None, mapping_id="acme-shop")


def test_namespaced_documents_map_whatever_their_prefixes(tmp_path):
    """The mapping's prefixes bind the namespaces; the document's own prefixes do not matter."""
    head = ("id: ns\nformat: xml\ndocument: order\n"
            "match: {root: Order, namespace: 'urn:o'}\nnamespaces: {o: 'urn:o'}\n")
    mapping = load(tmp_path, "fields:\n  order_number: o:ID\n", ident="ns", head=head)
    for data in (b'<Order xmlns="urn:o"><ID>1</ID></Order>',
                 b'<Bob:Order xmlns:Bob="urn:o"><Bob:ID>1</Bob:ID></Bob:Order>'):
        assert run(mapping, data).document.order_number == "1"


def test_match_when_tells_apart_documents_with_one_root(tmp_path):
    """Partners' XML often uses one root for several documents: ``when`` decides by content."""
    head = ("id: inv\nformat: xml\ndocument: invoice\nstandard: ACME XML\nversion: '1'\n"
            "match: {root: message, namespace: null, when: 'lines/line/invqua or invmon'}\n")
    mapping = load(tmp_path, """\
        fields:
          invoice_number: {path: docnum, required: true}
        """, ident="inv", head=head)
    invoice = parse_xml(b"<message><docnum>7</docnum><invmon>10</invmon></message>").getroot()
    despatch = parse_xml(b"<message><docnum>8</docnum><lines><line><delqua>1</delqua></line>"
                         b"</lines></message>").getroot()
    pick = dict(root="message", namespace=None, customization=None, profile=None)
    assert find_xml_mapping([mapping], document=invoice, **pick) is mapping
    assert find_xml_mapping([mapping], document=despatch, **pick) is None
    assert find_xml_mapping([mapping], **pick) is None  # no document, no content condition
    assert "when lines/line/invqua or invmon" in mapping.match.describe()


def test_match_when_must_be_an_xpath(tmp_path):
    head = ("id: inv\nformat: xml\ndocument: invoice\nstandard: ACME XML\nversion: '1'\n"
            "match: {root: message, when: 'lines/[['}\n")
    error = bad(tmp_path, "fields:\n  invoice_number: docnum\n", ident="inv", head=head)
    assert "match when: not an XPath" in error.reason and error.line is not None


# -- several documents in one file (``documents``) ---------------------------------------------

ENVELOPE_HEAD = ("id: env\nformat: xml\ndocument: order\nstandard: ACME XML\nversion: '1'\n"
                 "match: {root: envelope}\n")
ENVELOPE_BODY = """\
    documents: {each: message, when: "not(type) or type = 'orders'"}
    senders:
      - {path: buyer, scheme: gln}
    fields:
      order_number: {path: docnum, required: true}
      issue_date: {path: docdtm, type: date}
      lines:
        each: line
        fields:
          line_number: "@no"
          quantity: {path: qty, type: decimal, required: true}
    """
ENVELOPE = b"""<envelope>
  <message><type>orders</type><buyer>4012345000016</buyer><docnum>A-1</docnum>
    <docdtm>2025-03-10</docdtm><line no="1"><qty>3</qty></line></message>
  <message><type>invoices</type><docnum>F-9</docnum></message>
  <message><buyer>4012345000023</buyer><docnum>A-2</docnum><docdtm>2025-03-11</docdtm>
    <line no="1"><qty>1</qty></line><line no="2"><qty>2</qty></line></message>
</envelope>"""


def test_documents_maps_each_node_with_its_own_number_date_and_sender(tmp_path):
    """``documents`` makes one canonical document per node, fields and senders relative to it."""
    mapping = load(tmp_path, ENVELOPE_BODY, ident="env", head=ENVELOPE_HEAD)
    root = parse_xml(ENVELOPE).getroot()
    nodes = mapping.document_nodes(root)
    assert [(n.index, n.count, n.node.sourceline, n.skipped is None) for n in nodes] == [
        (1, 3, 2, True), (2, 3, 4, False), (3, 3, 5, True)]
    assert nodes[2].label == "message 3 of 3 at line 5"
    assert mapping.sender_ids(root) == [Sender("4012345000016", "gln"),
                                        Sender("4012345000023", "gln")]
    first, third = (mapping.map(n.node, partner_id="acme").document for n in (nodes[0], nodes[2]))
    assert (first.order_number, first.issue_date, first.source.sender_id) == (
        "A-1", dt.date(2025, 3, 10), "4012345000016")
    assert (third.order_number, third.issue_date, third.source.sender_id) == (
        "A-2", dt.date(2025, 3, 11), "4012345000023")
    assert [line.quantity for line in third.lines] == [Decimal("1"), Decimal("2")]
    assert first.message_id != third.message_id
    assert mapping.reference(nodes[2].node) == ("A-2", "2025-03-11")


def test_documents_produce_gives_every_document_of_the_sample_and_skips_other_kinds(tmp_path):
    """``produce`` (``edigw mappings test``) returns one JSON per document node, in order."""
    mapping = load(tmp_path, ENVELOPE_BODY, ident="env", head=ENVELOPE_HEAD)
    sample = tmp_path / "env.sample.xml"
    sample.write_bytes(ENVELOPE)
    produced = mapping.produce(sample)
    assert [d["order_number"] for d in produced] == ["A-1", "A-2"]
    skipped = mapping.document_nodes(parse_xml(ENVELOPE).getroot())[1].skipped
    assert skipped.startswith("unsupported message 2 of 3 at line 4: not a document mapping "
                              "'env' reads") and "type = 'orders'" in skipped


def test_documents_selecting_nothing_in_the_sample_names_the_mapping_file_and_line(tmp_path):
    """A ``documents`` path that finds no node in the sample is the mapping's mistake."""
    mapping = load(tmp_path, ENVELOPE_BODY.replace("each: message", "each: messages"),
                   ident="env", head=ENVELOPE_HEAD)
    sample = tmp_path / "env.sample.xml"
    sample.write_bytes(ENVELOPE)
    with pytest.raises(MappingDefinitionError) as info:
        mapping.produce(sample)
    assert "documents 'messages' selects nothing in the sample env.sample.xml" in \
        info.value.reason
    assert info.value.file.endswith("env.yaml") and info.value.line == 7


def test_without_documents_the_root_is_the_one_document(tmp_path):
    """A mapping without ``documents`` keeps mapping the whole file as one document."""
    mapping = load(tmp_path, "fields:\n  order_number: '@number'\n")
    root = parse_xml(ORDER).getroot()
    (node,) = mapping.document_nodes(root)
    assert node.node is root and node.skipped is None and mapping.documents is None


@pytest.mark.parametrize(("documents", "line", "words"), [
    ("documents: 'message[['\n", 7, "bad XPath 'message[['"),
    ("documents: {each: 'count(message)'}\n", 7, "gives a float, not elements"),
    ("documents: {each: 'string(message)'}\n", 7, "not elements"),
    ("documents: {each: message, where: x}\n", 7, "unknown key 'where' in documents"),
    ("documents: {when: 'type'}\n", 7, "documents needs 'each'"),
    ("documents: {each: message, when: 'type[['}\n", 7, "documents when: not an XPath"),
    ("documents: {each: message, when: 'p:type'}\n", 7, "documents when: not an XPath"),
    ("documents: [message]\n", 7, "'documents' is an XPath"),
    ("documents:\n  each: 'nope:message'\n", 8, "declare its prefixes"),
])
def test_documents_is_checked_when_loading_with_file_and_line(tmp_path, documents, line, words):
    """A malformed ``documents`` stops loading, naming the file, the line and what is wrong."""
    error = bad(tmp_path, documents + "fields:\n  order_number: docnum\n", ident="env",
                head=ENVELOPE_HEAD)
    assert words in error.reason
    assert error.file.endswith("env.yaml") and error.line == line
