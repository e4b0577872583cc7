"""The PDF reader: the embedded Factur-X / ZUGFeRD / Order-X XML handed to the XML reader.

PDFs are generated here (a blank page from pypdf, the XML attached by the ``factur-x``
package or by pypdf directly); no partner's PDF is copied. Most tests give the reader a fake
XML reader, so they check only what the PDF layer adds; ``test_real_xml_reader_*`` run the
real one.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pypdf import PdfWriter

from gateway.config import Partner
from gateway.core.canonical import Invoice, Source
from gateway.core.errors import PayloadError, Position
from gateway.core.ports import FailedMessage, MappedDocument, Sender
from gateway.formats.pdf import PdfPayloadError, PdfReader, extract_embedded_xml, profile_of

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "mappings" / "xml" / "cii-invoice.sample.xml"
PARTNER = Partner(id="papsyn", name="Papeterie Synthétique")


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with(attachments: dict[str, bytes]) -> bytes:
    """A blank PDF with files attached as they are, without any check."""
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    for name, content in attachments.items():
        writer.add_attachment(name, content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def facturx_pdf(xml: bytes) -> bytes:
    """A Factur-X PDF as a partner's invoicing software makes it (XSD-checked XML)."""
    import facturx

    return facturx.generate_from_binary(blank_pdf(), xml, check_xsd=True)


def with_guideline(guideline: str) -> bytes:
    return SAMPLE.read_bytes().replace(b"urn:cen.eu:en16931:2017</ram:ID>",
                                       guideline.encode() + b"</ram:ID>", 1)


@dataclass
class FakeXmlPayload:
    data: bytes
    filename: str | None
    format: str = "xml"
    standard: str | None = "UN/CEFACT CII"
    senders: list[Sender] = field(default_factory=lambda: [Sender("3760123450003", "gln")])
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "CII invoice FA-2025-00042"

    def documents(self, *, partner, transmission_id, filename, known_refs=None):
        source = Source(format="xml", standard="UN/CEFACT CII", version="D16B",
                        mapping="cii-invoice", filename=self.filename)
        invoice = Invoice(message_id="m1", partner=partner.id, invoice_number="FA-2025-00042",
                          issue_date=dt.date(2025, 3, 14), source=source)
        self.warnings.append("noticed while mapping")
        return [MappedDocument(doc_type="invoice", document=invoice, message_id="m1",
                               business_number="FA-2025-00042", interchange_ref=None,
                               message_ref=None, schema_version="edigw.invoice/1"),
                FailedMessage(status="FAILED", stage="map", reason="line 2 has no quantity",
                              message_id="m2", description="CII invoice FA-2")]


class FakeXmlReader:
    format = "xml"

    def __init__(self, error: PayloadError | None = None) -> None:
        self.error = error
        self.seen: list[tuple[bytes, str | None]] = []

    def sniff(self, head: bytes) -> bool:
        return head.lstrip().startswith(b"<")

    def parse(self, data: bytes, *, filename: str | None) -> FakeXmlPayload:
        self.seen.append((data, filename))
        if self.error is not None:
            raise self.error
        return FakeXmlPayload(data, filename)


def test_sniff_knows_a_pdf_by_its_header_even_after_a_little_junk():
    reader = PdfReader(xml_reader=FakeXmlReader())
    assert reader.sniff(b"%PDF-1.7\n%\xe2\xe3")
    assert reader.sniff(b"\r\n%PDF-1.4")
    assert not reader.sniff(b"<?xml version='1.0'?><rsm:CrossIndustryInvoice/>")
    assert not reader.sniff(b"UNA:+.? 'UNB+UNOC:3")


def test_factur_x_pdf_hands_its_xml_to_the_xml_reader_and_says_so_in_the_source():
    xml_reader = FakeXmlReader()
    reader = PdfReader(xml_reader=xml_reader)
    parsed = reader.parse(facturx_pdf(SAMPLE.read_bytes()), filename="FA-2025-00042.pdf")
    assert xml_reader.seen[0][0] == SAMPLE.read_bytes()
    assert xml_reader.seen[0][1] == "FA-2025-00042.pdf#factur-x.xml"
    assert parsed.format == "pdf"
    assert parsed.standard == "Factur-X EN 16931"
    assert parsed.senders == [Sender("3760123450003", "gln")]
    assert "factur-x.xml" in parsed.summary() and "CII invoice" in parsed.summary()
    results = parsed.documents(partner=PARTNER, transmission_id="t1",
                               filename="FA-2025-00042.pdf")
    doc, failed = results
    assert isinstance(doc, MappedDocument) and isinstance(failed, FailedMessage)
    source = doc.document.source
    assert (source.format, source.standard, source.version) == ("xml", "Factur-X EN 16931",
                                                                "D16B")
    assert source.filename == "FA-2025-00042.pdf"
    assert doc.document.message_id == "m1"  # the same as the XML sent alone
    assert "PDF attachment factur-x.xml" in failed.description
    assert parsed.warnings == ["noticed while mapping"]  # the XML payload's, live


@pytest.mark.parametrize(("guideline", "standard"), [
    ("urn:factur-x.eu:1p0:minimum", "Factur-X MINIMUM"),
    ("urn:factur-x.eu:1p0:basicwl", "Factur-X BASIC WL"),
    ("urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic", "Factur-X BASIC"),
    ("urn:cen.eu:en16931:2017", "Factur-X EN 16931"),
    ("urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended", "Factur-X EXTENDED"),
    ("urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
     "Factur-X XRECHNUNG"),
])
def test_profile_comes_from_the_guideline_id_of_the_embedded_xml(guideline, standard):
    # Attached with pypdf: the factur-x package refuses a MINIMUM XML with lines in it.
    pdf = pdf_with({"factur-x.xml": with_guideline(guideline)})
    parsed = PdfReader(xml_reader=FakeXmlReader()).parse(pdf, filename="f.pdf")
    assert parsed.standard == standard
    doc = parsed.documents(partner=PARTNER, transmission_id=None, filename="f.pdf")[0]
    assert doc.document.source.standard == standard


def test_profile_names_of_zugferd_1_and_order_x():
    assert profile_of("urn:ferd:CrossIndustryDocument:invoice:1p0:comfort").standard == \
        "ZUGFeRD 1.0 COMFORT"
    assert profile_of("urn:order-x.eu:1p0:extended").standard == "Order-X EXTENDED"
    assert profile_of("urn:peppol:something") is None


def test_zugferd_2_attachment_name_is_found_too():
    pdf = pdf_with({"zugferd-invoice.xml": SAMPLE.read_bytes()})
    parsed = PdfReader(xml_reader=FakeXmlReader()).parse(pdf, filename="z.pdf")
    assert parsed.attachment.lower() == "zugferd-invoice.xml"


def test_plain_pdf_without_invoice_xml_is_refused_with_a_reason():
    reader = PdfReader(xml_reader=FakeXmlReader())
    with pytest.raises(PdfPayloadError, match="carries no Factur-X.*attachments: none"):
        reader.parse(blank_pdf(), filename="scan.pdf")
    other = pdf_with({"conditions.txt": b"CGV"})
    with pytest.raises(PdfPayloadError, match=r"attachments: conditions\.txt"):
        reader.parse(other, filename="scan.pdf")


def test_pdf_over_the_size_limit_is_refused_before_it_is_read():
    reader = PdfReader(xml_reader=FakeXmlReader(), max_bytes=1000)
    with pytest.raises(PdfPayloadError, match="over the limit of 1000 bytes"):
        reader.parse(facturx_pdf(SAMPLE.read_bytes()), filename="big.pdf")


@pytest.mark.parametrize("data", [
    b"%PDF-1.7\n garbage that is no PDF",
    b"%PDF-",
    b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF",
])
def test_broken_pdf_is_refused_as_a_payload_error_never_a_library_exception(data):
    with pytest.raises(PdfPayloadError, match="the PDF cannot be read|carries no"):
        PdfReader(xml_reader=FakeXmlReader()).parse(data, filename="broken.pdf")


def test_encrypted_pdf_is_refused_with_what_to_ask_the_partner():
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("factur-x.xml", SAMPLE.read_bytes())
    writer.encrypt("secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(PdfPayloadError, match="encrypted.*unencrypted Factur-X"):
        PdfReader(xml_reader=FakeXmlReader()).parse(out.getvalue(), filename="locked.pdf")


def test_not_a_pdf_at_all_is_refused_at_its_first_byte():
    with pytest.raises(PdfPayloadError) as info:
        extract_embedded_xml(b"<xml/>")
    assert info.value.position == Position(line=1, column=1)


def test_an_xml_reader_refusal_names_the_pdf_attachment():
    refusal = PayloadError("DTD is not allowed", position=Position(line=1, column=10))
    reader = PdfReader(xml_reader=FakeXmlReader(error=refusal))
    with pytest.raises(PayloadError) as info:
        reader.parse(facturx_pdf(SAMPLE.read_bytes()), filename="f.pdf")
    assert info.value.reason == "PDF attachment factur-x.xml: DTD is not allowed"
    assert "line 1" in str(info.value)


def test_hostile_xml_under_the_factur_x_name_reaches_the_xml_reader_for_its_reason():
    """The factur-x package skips XML it cannot parse; the reader still hands an attachment
    with the standard name to the XML reader, which says why it is refused."""
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
              b'<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:'
              b'CrossIndustryInvoice:100">&b;</rsm:CrossIndustryInvoice>')
    xml_reader = FakeXmlReader(error=PayloadError("DTD is not allowed"))
    with pytest.raises(PayloadError, match="factur-x.xml: DTD is not allowed"):
        PdfReader(xml_reader=xml_reader).parse(pdf_with({"factur-x.xml": laughs}),
                                               filename="evil.pdf")
    assert xml_reader.seen[0][0] == laughs


# -- with the real XML reader -------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_reader() -> PdfReader:
    from gateway.formats.mapping import MappingSet
    from gateway.formats.xml.reader import XmlReader

    return PdfReader(xml_reader=XmlReader(MappingSet.load(REPO / "mappings")))


def test_real_xml_reader_maps_the_factur_x_pdf_to_the_canonical_invoice(real_reader):
    pdf = facturx_pdf(SAMPLE.read_bytes())
    parsed = real_reader.parse(pdf, filename="FA-2025-00042.pdf")
    assert parsed.standard == "Factur-X EN 16931"
    assert parsed.senders[0] == Sender("3760123450003", "gln")
    (doc,) = parsed.documents(partner=PARTNER, transmission_id="t1", filename="FA-2025-00042.pdf")
    assert isinstance(doc, MappedDocument)
    invoice = doc.document
    assert invoice.invoice_number == "FA-2025-00042"
    assert str(invoice.totals.payable) == "115.65"
    assert [(str(v.rate), str(v.tax_amount)) for v in invoice.vat_breakdown] == [
        ("20.00", "14.00"), ("5.50", "1.65")]
    assert (invoice.source.format, invoice.source.standard) == ("xml", "Factur-X EN 16931")
    assert invoice.source.mapping == "cii-invoice"


def test_real_xml_reader_refuses_a_doctype_smuggled_into_the_pdf(real_reader):
    xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:'
           b'CrossIndustryInvoice:100"><x>&x;</x></rsm:CrossIndustryInvoice>')
    with pytest.raises(PayloadError, match=r"factur-x\.xml: refused: .*DOCTYPE") as info:
        real_reader.parse(pdf_with({"factur-x.xml": xxe}), filename="evil.pdf")
    assert info.value.position is not None and info.value.position.line == 1


def test_real_xml_reader_keeps_a_schema_invalid_factur_x_as_a_failed_document(real_reader):
    broken = SAMPLE.read_bytes().replace(b"<ram:TypeCode>380</ram:TypeCode>",
                                         b"<ram:Unknown>380</ram:Unknown>", 1)
    parsed = real_reader.parse(pdf_with({"factur-x.xml": broken}), filename="bad.pdf")
    (result,) = parsed.documents(partner=PARTNER, transmission_id=None, filename="bad.pdf")
    assert isinstance(result, FailedMessage) and result.status == "FAILED"
    assert "Unknown" in result.reason and "line" in result.reason
    assert "PDF attachment factur-x.xml" in result.description
