"""The transmission page for support over real HTTP, on SQLite and PostgreSQL: a 20,000-
document transmission answers one page of 50 rows with a pager, small and quick; the failing
segment of a broken EDIFACT file is marked in a window of the payload; a Factur-X PDF shows
its XML; an order and an invoice read as documents (parties, lines, totals); the badge
says what happened; the API pages the documents and gives a document's readable view."""

from __future__ import annotations

import datetime as dt
import io
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gateway.app import Gateway
from gateway.config import (
    DocumentSettings,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    UnbIdentifier,
)
from gateway.core.ports import Incoming
from gateway.store import schema as s
from gateway.web.auth import Users

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ORDER = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
CII = (REPO / "mappings" / "xml" / "cii-invoice.sample.xml").read_bytes()
BIG = 20_000


def _partners() -> PartnerDirectory:
    return PartnerDirectory([
        Partner(id="bakkerij", name="Bakkerij",
                identifiers=Identifiers(unb=[UnbIdentifier(id="5401234000012", qualifier="14")]),
                documents=[DocumentSettings(type="order", format="edifact",
                                            mapping="eancom-orders-d96a")]),
        Partner(id="papsyn", name="PapSyn", identifiers=Identifiers(gln=["3760123450003"]),
                outbound={"formats": {"invoice": "factur-x"}})])


class Console:
    """The gateway's HTTP app (as ``serve`` builds it) on loopback, a viewer's token."""

    def __init__(self, gw: Gateway) -> None:
        from gateway.http.server import HttpServer, build_app

        self.gw = gw
        routes, state = gw.console_routes()
        self.server = HttpServer(build_app(ready=gw.ready_checks(), routes=routes,
                                           state=state), port=0).start_in_thread()
        users = Users(gw.store)
        users.create("vera", "pw-vera-long-enough", "viewer")
        token = state["auth"].tokens.create(users.by_username("vera"), "test")[0]
        self.http = httpx.Client(base_url=self.server.url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})

    def ingest(self, data: bytes, name: str) -> str:
        p = self.gw.pipeline
        receipt = p.receive(Incoming(data=data, channel="test", filename=name))
        p.process(receipt.transmission_id)
        return receipt.transmission_id

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture
def console(tmp_path, store_url):
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners",
        tracker={"timezone": "Europe/Paris"})
    gw = Gateway.open(settings, partners=_partners())
    c = Console(gw)
    try:
        yield c
    finally:
        c.close()
        gw.close()


def _orders(count: int, *, broken: int | None = None) -> bytes:
    """One interchange of ``count`` copies of the sample order (numbered PO-n); order
    ``broken`` (1-based) with a quantity that is not a number."""
    text = ORDER.decode()
    head, rest = text.split("UNH+", 1)
    message = "UNH+" + rest[:rest.index("UNZ+")]
    body = []
    for n in range(1, count + 1):
        one = message.replace("UNH+107+", f"UNH+{n}+").replace("UNT+37+107", f"UNT+37+{n}")
        one = one.replace("PO-2024-0107", f"PO-{n}")
        if n == broken:
            one = one.replace("QTY+21:40:BG", "QTY+21:xx:BG")
        body.append(one)
    return (head + "".join(body) + f"UNZ+{count}+ICR0042'\n").encode()


def _bulk(gw: Gateway, tid: str, count: int) -> None:
    """``count`` more PUBLISHED documents in transmission ``tid``, inserted in bulk (a copy
    of its first document with new ids and numbers)."""
    d = s.documents
    with gw.store.engine.begin() as conn:
        first = conn.execute(sa.select(d).where(d.c.transmission_id == tid)
                             .order_by(d.c.created_at).limit(1)).one()._mapping
        at = first["created_at"]
        rows = []
        for n in range(count):
            row = dict(first)
            row.update(id=uuid.uuid4().hex, message_id=uuid.uuid4().hex,
                       business_number=f"PO-BULK-{n}", status=s.DOC_PUBLISHED,
                       created_at=at + dt.timedelta(microseconds=n + 1),
                       published_at=at, reason=None, stage=None,
                       message_ref=str(n + 10))
            rows.append(row)
        for start in range(0, count, 5000):
            conn.execute(d.insert(), rows[start:start + 5000])


def _rows(html: str) -> list[str]:
    body = html[html.index('<table class="documents">'):]
    body = body[body.index("<tbody>"):body.index("</tbody>")]
    return re.findall(r"<tr[ >]", body)


def test_a_20000_document_transmission_page_shows_50_rows_a_pager_and_stays_small(console):
    """One interchange of two orders (one broken), then 20,000 published documents more: the
    page lists 50, says 1–50 of 20,002 with next and last links, weighs tens of KB, answers
    quickly, and its badge counts the failure; the last page holds the last 2."""
    tid = console.ingest(_orders(2, broken=2), "two.edi")
    console.gw.store.mark_published([i.outbox_id for i in console.gw.store.pending_outbox(10)])
    _bulk(console.gw, tid, BIG)
    console.http.get(f"/transmissions/{tid}")  # warm: templates compiled, connections open
    took = []
    for _ in range(3):
        start = time.perf_counter()
        r = console.http.get(f"/transmissions/{tid}")
        took.append(time.perf_counter() - start)
    assert r.status_code == 200, r.text
    html = r.text
    print(f"\n{BIG + 2:,} documents: page {len(r.content):,} bytes, "
          f"{min(took) * 1000:.0f} ms (best of 3)")
    assert len(_rows(html)) == 50
    assert "1–50 of 20,002" in html
    assert 'rel="next" href="?offset=50#documents"' in html
    assert 'rel="last" href="?offset=20000#documents"' in html
    assert len(r.content) < 200_000
    assert min(took) < 1.0  # 300 ms is the target on an idle machine (docs/support.md)
    assert "1 of 20,002 failed" in html
    # The failing order is the one read, its failing segment marked (the broken QTY).
    assert re.search(r'class="ln fail" data-n="\d+" id="fail">QTY\+21:xx:BG&#39;</span>', html)
    last = console.http.get(f"/transmissions/{tid}?offset=20000")
    assert len(_rows(last.text)) == 2 and "20,001–20,002 of 20,002" in last.text
    failed = console.http.get(f"/transmissions/{tid}?status=FAILED")
    assert len(_rows(failed.text)) == 1 and "1–1 of 1" in failed.text


def test_the_api_pages_a_big_transmissions_documents(console):
    """``GET /api/transmissions/{id}`` carries one page of documents and the counts; the
    ``/documents`` sub-resource pages them in the envelope, filtered by status."""
    tid = console.ingest(_orders(2, broken=2), "two.edi")
    _bulk(console.gw, tid, BIG)
    view = console.http.get(f"/api/transmissions/{tid}").json()
    assert len(view["documents"]) == 50 and view["documents_total"] == BIG + 2
    assert view["document_counts"]["FAILED"] == 1
    assert view["outcome"]["words"]
    page = console.http.get(f"/api/transmissions/{tid}/documents",
                            params={"limit": 100, "offset": 19_950}).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (
        BIG + 2, 100, 19_950, 52)
    failed = console.http.get(f"/api/transmissions/{tid}/documents",
                              params={"status": "FAILED"}).json()
    assert failed["total"] == 1 and failed["items"][0]["status"] == "FAILED"
    none = console.http.get(f"/api/transmissions/{tid}", params={"documents_limit": 0}).json()
    assert none["documents"] == [] and none["documents_total"] == BIG + 2
    assert console.http.get("/api/transmissions/nope/documents").status_code == 404


def test_the_failing_segment_of_a_big_broken_interchange_is_marked_in_its_window(console):
    """Order 1,500 of 2,000 has a quantity that is not a number: the page shows that
    segment marked with the lines around it, not the start of the 2 MB payload."""
    tid = console.ingest(_orders(2000, broken=1500), "big.edi")
    html = console.http.get(f"/transmissions/{tid}").text
    mark = re.search(r'class="ln fail" data-n="(\d+)" id="fail">(.*?)</span>', html)
    assert mark and mark.group(2) == "QTY+21:xx:BG&#39;"
    segment = int(mark.group(1))
    assert segment == 2 + 1499 * 37 + 19  # UNA, UNB, then 37 segments per message
    assert f'data-n="{segment - 20}"' in html and f'data-n="{segment - 21}"' not in html
    assert "UNB+UNOC" not in html and len(html) < 100_000
    assert "Where it failed" in html and f"segment {segment} (QTY)" in html
    assert "1 of 2,000 failed" in html
    earlier = re.search(r'rel="earlier" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    start = console.http.get(f"/transmissions/{tid}{earlier.split('#')[0]}").text
    assert f'data-n="{segment - 120}"' in start
    seg = console.http.get(f"/api/transmissions/{tid}/segments",
                           params={"first": segment, "count": 2})
    assert seg.text.splitlines() == ["QTY+21:xx:BG'", "MOA+203:738.00'"]
    assert seg.headers["x-segments-more"] == "true"


def test_a_small_broken_file_fails_whole_and_its_line_is_marked(console):
    """A file that fails as a whole (the sample with its quantity broken): the reason's
    segment 21 is the marked line, every segment of the short file shown."""
    tid = console.ingest(ORDER.replace(b"QTY+21:40:BG", b"QTY+21:xx:BG"), "bad.edi")
    html = console.http.get(f"/transmissions/{tid}").text
    assert '<span class="ln fail" data-n="21" id="fail">QTY+21:xx:BG&#39;</span>' in html
    assert 'data-n="1">UNA:+.? &#39;</span>' in html and "UNZ+1+ICR0042&#39;" in html


def test_a_factur_x_pdf_shows_its_xml_and_its_invoice_reads_as_a_document(console):
    """The PDF's bytes are not shown: its embedded CII XML is, escaped; the invoice reads
    with seller, buyer, lines and totals."""
    import facturx
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    blank = io.BytesIO()
    writer.write(blank)
    pdf = facturx.generate_from_binary(blank.getvalue(), CII, check_xsd=True)
    tid = console.ingest(pdf, "facture.pdf")
    html = console.http.get(f"/transmissions/{tid}").text
    assert "the Factur-X XML attached as factur-x.xml" in html
    assert "&lt;rsm:CrossIndustryInvoice" in html and "%PDF" not in html
    assert "Papeterie Synthétique SARL (PapSyn)" in html
    assert "GLN 3760123450003" in html and "VAT FR14987654324" in html
    assert "Ramette papier A4 80 g" in html
    assert re.search(r"Gross \(with VAT\)</th><td class=\"num\">115.65 EUR", html)
    assert "1 document published" not in html  # not published: no broker here
    assert "1 document waiting for the broker" in html


def test_a_factur_x_invoice_sent_shows_its_xml_from_the_outbound_row(console):
    """An invoice the ERP sends papsyn as Factur-X: its page shows the ERP's JSON as
    received, and the rendered PDF (linked from "Sent to the partner") as its XML."""
    sample = REPO / "mappings" / "outbound" / "pdf" / "factur-x-invoice.sample.json"
    done = console.gw.intake.accept(sample.read_bytes(), origin="erp", partner="papsyn",
                                    doc_type="invoice")
    assert done.status == "RENDERED", done.reason
    html = console.http.get(f"/transmissions/{done.transmission_id}").text
    assert "rendered, waiting to be sent" in html
    link = re.search(r'<a class="sent" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    sent = console.http.get(f"/transmissions/{done.transmission_id}{link.split('#')[0]}").text
    assert "sent: invoice" in sent and "the Factur-X XML attached as factur-x.xml" in sent
    assert "&lt;rsm:CrossIndustryInvoice" in sent and "%PDF" not in sent


def test_an_order_reads_as_a_document_and_its_view_is_in_the_api(console):
    """The sample order: buyer, supplier and delivery with names and GLNs, dates, lines
    with item, description, quantity, unit, price and amount, and the lines' sum."""
    tid = console.ingest(ORDER, "order.edi")
    console.gw.store.mark_published([i.outbox_id for i in console.gw.store.pending_outbox(10)])
    html = console.http.get(f"/transmissions/{tid}").text
    assert "1 document published" in html
    for text in ("Order <span class=\"number\">PO-2024-0107</span>", "Buyer",
                 "Bakkerij De Gouden Aar BV", "GLN 5401234000012", "Supplier",
                 "Muehlenwerke Nord GmbH", "Delivery", "Bakkerij De Gouden Aar - Depot",
                 "<dt>Issued</dt><dd>2024-03-05</dd>", "Tarwebloem type 550, zak 25 kg",
                 '<td class="num">18.45</td><td class="num">738.00</td>', "877.15 EUR"):
        assert text in html, text
    (doc,) = console.gw.store.documents_of(tid)
    view = console.http.get(f"/api/documents/{doc.id}/view").json()["view"]
    assert view["title"] == "Order" and view["number"] == "PO-2024-0107"
    assert [p["role"] for p in view["parties"]] == ["Buyer", "Supplier", "Delivery",
                                                    "Invoicee"]
    assert view["lines"][1]["quantity"] == "12.5" and view["lines"][1]["unit"] == "KGM"
    assert console.http.get("/api/documents/nope/view").status_code == 404


def test_a_file_from_an_unknown_sender_says_quarantined_unknown_sender(console):
    tid = console.ingest(ORDER.replace(b"5401234000012:14", b"5409999999999:14"), "x.edi")
    html = console.http.get(f"/transmissions/{tid}").text
    assert '<p class="outcome tone-held" role="status">quarantined: unknown sender</p>' in html
    assert console.http.get(f"/api/transmissions/{tid}").json()["outcome"] == {
        "words": "quarantined: unknown sender", "tone": "held"}
