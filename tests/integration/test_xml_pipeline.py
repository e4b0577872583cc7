"""XML through the real pipeline and store: identified by the ids it carries, mapped, queued.

A UBL invoice (the repository's own sample) finds its partner by the seller's VAT id or GLN
and becomes an ``invoice.<partner>`` document in the outbox; a hostile XML file (XXE) and an
XML document edigw has no mapping for end FAILED with their reasons, their bytes archived.
SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import GatewaySettings, Identifiers, Partner, PartnerDirectory
from gateway.core.ports import Incoming

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "mappings" / "xml" / "ubl-invoice.sample.xml"


@pytest.fixture
def gw(tmp_path, store_url):
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    seller = Partner(id="seller", name="Seller SA",
                     identifiers=Identifiers(vat=["FR 44 732829320"]))
    g = Gateway.open(settings, partners=PartnerDirectory([seller]))
    yield g
    g.close()


def _ingest(gw: Gateway, data: bytes, name: str):
    receipt = gw.pipeline.receive(Incoming(data=data, channel="test", filename=name))
    return gw.pipeline.process(receipt.transmission_id)


def test_ubl_invoice_is_identified_by_the_sellers_vat_id_and_queued(gw):
    out = _ingest(gw, SAMPLE.read_bytes(), "invoice.xml")
    assert (out.status, out.partner_id, out.queued) == ("PROCESSED", "seller", 1), out.reason
    (doc,) = gw.store.documents_of(out.transmission_id)
    payload = gw.store.document_payload(doc.id)
    assert doc.doc_type == "invoice" and payload["schema"] == "edigw.invoice/1"
    assert doc.business_number == payload["invoice_number"]
    assert payload["source"]["format"] == "xml"
    row = gw.store.get_transmission(out.transmission_id)
    assert (row.format, row.status) == ("xml", "PROCESSED")
    item = gw.store.pending_outbox(10)[0]
    assert item.routing_key == "invoice.seller"


def test_xxe_is_refused_and_kept(gw, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    hostile = (f'<?xml version="1.0"?>\n<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file://{secret}">]>'
               '\n<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">'
               "&x;</Invoice>").encode()
    out = _ingest(gw, hostile, "xxe.xml")
    assert (out.status, out.stage) == ("FAILED", "parse")
    assert "DOCTYPE" in out.reason and "line 2" in out.reason
    assert "TOP-SECRET" not in out.reason
    row = gw.store.get_transmission(out.transmission_id)
    assert gw.archive.get(row.sha256) == hostile


def test_unknown_xml_document_without_sender_is_quarantined_saying_what_it_is(gw):
    """Nobody to attribute it to: quarantined, with the document kind in the reason."""
    out = _ingest(gw, b'<?xml version="1.0"?><Shipment xmlns="urn:example:x"><ID>1</ID>'
                      b"</Shipment>", "other.xml")
    assert (out.status, out.stage) == ("QUARANTINED", "identify")
    assert "no sender" in out.reason and "Shipment" in out.reason


def test_resent_invoice_is_a_duplicate_document_by_its_number(gw):
    """The same invoice sent again in other bytes (a new file): recorded, not queued again."""
    first = _ingest(gw, SAMPLE.read_bytes(), "invoice.xml")
    again = _ingest(gw, SAMPLE.read_bytes() + b"\n<!-- resent -->\n", "invoice-again.xml")
    assert first.queued == 1 and again.queued == 0
    (doc,) = gw.store.documents_of(again.transmission_id)
    assert doc.status == "DUPLICATE"
    events = [e["event"] for e in gw.store.events(again.transmission_id)]
    assert "duplicate-documents" in events
    assert gw.store.outbox_size() == 1


def test_factur_x_pdf_is_read_as_cii_and_the_pdf_kept(tmp_path, store_url):
    """A Factur-X PDF (made here from the CII sample and a blank page): the seller is found
    by its GLN, the invoice is the CII one, and the archive keeps the PDF as received."""
    import io

    import facturx
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    blank = io.BytesIO()
    writer.write(blank)
    xml = (REPO / "mappings" / "xml" / "cii-invoice.sample.xml").read_bytes()
    pdf = facturx.generate_from_binary(blank.getvalue(), xml, check_xsd=True)
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    papsyn = Partner(id="papsyn", name="PapSyn", identifiers=Identifiers(gln=["3760123450003"]))
    gw = Gateway.open(settings, partners=PartnerDirectory([papsyn]))
    try:
        out = _ingest(gw, pdf, "facture.pdf")
        assert (out.status, out.partner_id, out.queued) == ("PROCESSED", "papsyn", 1), out.reason
        (doc,) = gw.store.documents_of(out.transmission_id)
        payload = gw.store.document_payload(doc.id)
        assert payload["source"]["standard"].startswith("Factur-X")
        assert payload["source"]["filename"] == "facture.pdf"
        row = gw.store.get_transmission(out.transmission_id)
        assert row.format == "pdf" and gw.archive.get(row.sha256) == pdf
    finally:
        gw.close()
