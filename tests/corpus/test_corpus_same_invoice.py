"""The same invoice in UBL, in CII, in EDIFACT and inside a Factur-X PDF gives the same totals.

The CEN/TC 434 examples in the corpus's ``en16931/`` folder are one set of invoices written
in each syntax (``ubl-tc434-exampleN.xml``, ``CII_exampleN.xml``, ``EDIFACT_EXAMPLEN.TXT`` and
its ISO 20625 XML form ``EDIFACT_EXAMPLEN.xml``).
No Factur-X PDF of them is in the corpus, so each CII example is also put into a PDF here,
with the ``factur-x`` package and a blank page (a generated test input, not a copied
document). The akretion fixtures give a second set: one invoice in the Factur-X BASIC,
EN 16931 and EXTENDED profiles, and the PDF that carries it.

Each member goes through the reader the pipeline uses for it (``XmlReader``, ``PdfReader``,
``EdifactReader``). Members whose plain reading (number and invoice total, read with lxml or
a naive EDIFACT split) differs from the group's are not the same invoice and are left out
with the reason (the corpus's UBL example 3 is a different invoice under the same number).
The canonical invoices of the rest must agree on the number, the mandatory totals (BT-106,
BT-109, BT-112, BT-115), every optional total that more than one of them states, and the VAT
breakdown (category, rate, taxable amount, tax amount). Issue dates are not compared: the
corpus's example 7 gives 2013-05-13 in CII and 2013-03-11 in UBL.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.config import Partner
from gateway.core.canonical import Invoice
from gateway.core.ports import MappedDocument
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.formats.pdf import PdfReader
from gateway.formats.xml.reader import XmlReader
from tests.conftest import require_corpus
from tests.integration.naive_edifact import naive_messages

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
PARTNER = Partner(id="corpus", name="Corpus")

#: EN 16931 totals every invoice states (BG-22 with cardinality 1..1).
MANDATORY_TOTALS = ("line_total", "tax_exclusive", "tax_inclusive", "payable")
OPTIONAL_TOTALS = ("allowance_total", "charge_total", "tax_total", "prepaid", "rounding")

_NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
       "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
       "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
       "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}


def blank_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def facturx_pdf_of(cii: bytes) -> bytes:
    import facturx

    return facturx.generate_from_binary(blank_pdf(), cii, check_xsd=True)


# -- plain readings: (number, invoice total with VAT) -----------------------------------------

def _xpath(data: bytes, *paths: str) -> tuple[str | None, ...]:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    out = []
    for path in paths:
        found = root.xpath(path, namespaces=_NS)
        out.append(found[0].text.strip() if found and found[0].text else None)
    return tuple(out)


def plain_cii(data: bytes) -> tuple[str | None, Decimal | None]:
    number, total = _xpath(data, "rsm:ExchangedDocument/ram:ID",
                           "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
                           "ram:GrandTotalAmount")
    return number, Decimal(total) if total else None


def plain_ubl(data: bytes) -> tuple[str | None, Decimal | None]:
    number, total = _xpath(data, "cbc:ID", "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount")
    return number, Decimal(total) if total else None


def plain_edifact_xml(data: bytes) -> tuple[str | None, Decimal | None]:
    number, total = _xpath(data, "S_BGM/C_C106/D_1004",
                           "G_SG52/S_MOA/C_C516[D_5025='388']/D_5004")
    return number, Decimal(total) if total else None


def plain_edifact(data: bytes) -> tuple[str | None, Decimal | None]:
    message = naive_messages(data)[0]
    # BT-112 is MOA+77 in the EN 16931 binding; some examples give it as MOA+388 instead.
    bgm = message.first("BGM")
    moa = message.first("MOA", "77") or message.first("MOA", "388")
    return (bgm[2][0] if bgm else None,
            Decimal(moa[1][1].replace(",", ".")) if moa else None)


def plain_pdf(data: bytes) -> tuple[str | None, Decimal | None]:
    from pypdf import PdfReader as Pypdf

    return plain_cii(Pypdf(io.BytesIO(data)).attachments["factur-x.xml"][0])


# -- the groups -------------------------------------------------------------------------------

Member = tuple[str, str, Callable[[Path], bytes]]  # (label, reader format, bytes from corpus)


def _file(rel: str) -> Callable[[Path], bytes]:
    return lambda corpus: (corpus / rel).read_bytes()


def _pdf_of(rel: str) -> Callable[[Path], bytes]:
    return lambda corpus: facturx_pdf_of((corpus / rel).read_bytes())


def _groups() -> dict[str, list[Member]]:
    groups: dict[str, list[Member]] = {}
    for n in range(1, 10):
        cii = f"en16931/cii/examples/CII_example{n}.xml"
        groups[f"en16931-example{n}"] = [
            (f"CII CII_example{n}.xml", "xml", _file(cii)),
            (f"UBL ubl-tc434-example{n}.xml", "xml",
             _file(f"en16931/ubl/examples/ubl-tc434-example{n}.xml")),
            (f"EDIFACT EDIFACT_EXAMPLE{n}.TXT", "edifact",
             _file(f"en16931/edifact/examples/EDIFACT_EXAMPLE{n}.TXT")),
            (f"EDIFACT XML EDIFACT_EXAMPLE{n}.xml", "xml",
             _file(f"en16931/edifact/examples/EDIFACT_EXAMPLE{n}.xml")),
            (f"Factur-X PDF made from CII_example{n}.xml", "pdf", _pdf_of(cii)),
        ]
    fx = "akretion-factur-x/tests/fixtures/"
    groups["akretion-F20260023"] = [
        ("Factur-X EN 16931 XML", "xml", _file(fx + "xml/factur-x-en16931.xml")),
        ("Factur-X BASIC XML", "xml", _file(fx + "xml/factur-x-basic.xml")),
        ("Factur-X EXTENDED XML", "xml", _file(fx + "xml/factur-x-extended.xml")),
        ("Factur-X PDF invoice_EN16931.pdf", "pdf", _file(fx + "pdf/invoice_EN16931.pdf")),
    ]
    return groups


GROUPS = _groups()
PLAIN = {"xml": None, "pdf": plain_pdf, "edifact": plain_edifact}


@pytest.fixture(scope="module")
def readers() -> dict[str, Any]:
    mappings = MappingSet.load(REPO / "mappings")
    xml = XmlReader(mappings)
    return {"xml": xml, "pdf": PdfReader(xml_reader=xml), "edifact": EdifactReader(mappings)}


def _plain(fmt: str, data: bytes) -> tuple[str | None, Decimal | None]:
    if fmt == "xml":
        head = data[:4000]
        if b"<M_INVOIC" in head:
            return plain_edifact_xml(data)
        return plain_ubl(data) if b"urn:oasis:names:specification:ubl" in head \
            else plain_cii(data)
    reader = PLAIN[fmt]
    assert reader is not None
    return reader(data)


def _invoice(reader: Any, data: bytes, label: str) -> Invoice:
    parsed = reader.parse(data, filename=label)
    results = parsed.documents(partner=PARTNER, transmission_id=None, filename=label)
    mapped = [r for r in results if isinstance(r, MappedDocument)]
    assert len(mapped) == 1, f"{label}: {[getattr(r, 'reason', r) for r in results]}"
    document = mapped[0].document
    assert isinstance(document, Invoice)
    return document


def _vat(invoice: Invoice) -> list[tuple[Any, ...]]:
    return sorted((v.category, v.rate, v.taxable_amount, v.tax_amount)
                  for v in invoice.vat_breakdown)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_same_invoice_in_every_syntax_gives_the_same_totals_and_vat(group, readers):
    corpus = require_corpus()
    members = GROUPS[group]
    read: list[tuple[str, tuple[str | None, Decimal | None], Invoice]] = []
    left_out: list[str] = []
    reference: tuple[str | None, Decimal | None] | None = None
    for label, fmt, load in members:
        data = load(corpus)
        plain = _plain(fmt, data)
        if reference is None:
            reference = plain
        elif plain != reference:
            # Not the same invoice in the corpus, whatever its number says.
            left_out.append(f"{label}: plain reading {plain} differs from {reference}")
            continue
        read.append((label, plain, _invoice(readers[fmt], data, label)))
    assert len(read) >= 2, f"{group}: fewer than two members are the same invoice: {left_out}"

    first_label, _, first = read[0]
    for label, plain, invoice in read[1:]:
        where = f"{group}: {label} vs {first_label}"
        assert invoice.invoice_number == first.invoice_number == plain[0], where
        for name in MANDATORY_TOTALS:
            mine, theirs = getattr(invoice.totals, name), getattr(first.totals, name)
            assert mine is not None and mine == theirs, f"{where}: {name} {mine} != {theirs}"
        for name in OPTIONAL_TOTALS:
            mine, theirs = getattr(invoice.totals, name), getattr(first.totals, name)
            if mine is not None and theirs is not None:
                assert mine == theirs, f"{where}: {name} {mine} != {theirs}"
        assert invoice.totals.tax_inclusive == plain[1], where
        assert _vat(invoice) == _vat(first), where
    assert _vat(first), f"{group}: no VAT breakdown at all"
    if group == "en16931-example3":
        assert left_out, "the corpus's UBL example 3 is another invoice; it should be left out"


def test_a_factur_x_pdf_and_its_xml_give_the_same_message_id(readers):
    """A supplier that sends the PDF and, later, its XML alone is sending one invoice."""
    corpus = require_corpus()
    cii = (corpus / "en16931/cii/examples/CII_example4.xml").read_bytes()
    from_xml = _invoice(readers["xml"], cii, "CII_example4.xml")
    from_pdf = _invoice(readers["pdf"], facturx_pdf_of(cii), "CII_example4.pdf")
    assert from_pdf.message_id == from_xml.message_id
    assert from_pdf.source.standard == "Factur-X EN 16931"
    assert from_pdf.source.filename == "CII_example4.pdf"
    assert from_pdf.model_dump(exclude={"source"}) == from_xml.model_dump(exclude={"source"})
