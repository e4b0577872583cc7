"""The transmission page in chromium as support reads it: an order rendered as a document,
the documents' pager of a big transmission, the failing segment of a broken file marked."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.browser.conftest import ROOT
from tests.browser.test_console import login

pytestmark = pytest.mark.integration

#: brouwer's second UNB id: its own file, so the other tests' partners are untouched.
BROUWER = b"4012345000016"
EXTRA = 120


@pytest.fixture(scope="module")
def big(console) -> str:
    """A transmission of brouwer's with the sample order and 120 more documents (bulk), all
    published: three pages of 50."""
    from gateway.store import schema as s

    data = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
    data = data.replace(b"5401234000012:14", BROUWER + b":14").replace(b"ICR0042", b"ICR7001")
    tid = console.ingest(data, "brouwer-big.edi")
    gw = console.gateway
    gw.store.mark_published([i.outbox_id for i in gw.store.pending_outbox(1000)])
    d = s.documents
    with gw.store.engine.begin() as conn:
        first = conn.execute(sa.select(d).where(d.c.transmission_id == tid)).one()._mapping
        conn.execute(d.insert(), [
            {**first, "id": uuid.uuid4().hex, "message_id": uuid.uuid4().hex,
             "business_number": f"PO-BULK-{n}", "message_ref": str(1000 + n),
             "created_at": first["created_at"] + dt.timedelta(milliseconds=n + 1)}
            for n in range(EXTRA)])
    return tid


def test_an_order_reads_as_a_document_and_the_documents_page_fifty_at_a_time(
        page: Page, shots, big):
    """Support opens a big transmission: the badge says what happened, the order reads with
    its parties, lines and total; the pager goes to the next and the last page, and "read"
    shows another document of the page."""
    login(page, "vera", f"/transmissions/{big}")
    expect(page.locator("p.outcome")).to_have_text(f"{EXTRA + 1} documents published")
    doc = page.locator("section.readable")
    expect(doc.locator("h2")).to_contain_text("Order PO-2024-0107")
    expect(doc.locator(".party")).to_have_count(4)
    expect(doc.locator(".party", has_text="Buyer")).to_contain_text("Bakkerij De Gouden Aar BV")
    expect(doc.locator(".party", has_text="Buyer")).to_contain_text("GLN 5401234000012")
    expect(doc.locator("table.lines tbody tr")).to_have_count(3)
    expect(doc.locator("table.lines tbody tr").first).to_contain_text(
        "Tarwebloem type 550, zak 25 kg")
    expect(doc.locator("table.lines tfoot")).to_contain_text("877.15 EUR")
    rows = page.locator("table.documents tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator(".pager .range")).to_have_text(f"1–50 of {EXTRA + 1}")
    page.screenshot(path=shots / "transmission-document.png", full_page=True)
    page.click(".pager a[rel=next]")
    expect(page.locator(".pager .range")).to_have_text(f"51–100 of {EXTRA + 1}")
    expect(rows).to_have_count(50)
    page.click(".pager a[rel=last]")
    expect(page.locator(".pager .range")).to_have_text(f"101–{EXTRA + 1} of {EXTRA + 1}")
    expect(rows).to_have_count(EXTRA + 1 - 100)
    page.screenshot(path=shots / "transmission-pager.png", full_page=True)
    link = rows.last.locator("a.read")
    chosen = re.search(r"document=(\w+)", link.get_attribute("href") or "").group(1)
    link.click()
    expect(doc.locator("h2")).to_contain_text(f"document {chosen}")
    expect(rows.last).to_have_class("chosen")
    expect(page.locator(".pager .range")).to_have_text(f"101–{EXTRA + 1} of {EXTRA + 1}")


def test_the_failing_segment_of_a_broken_order_is_marked(page: Page, shots):
    """The order that failed validation: "Where it failed" shows the reason and its segment
    among its neighbours, and the payload below marks the same segment."""
    login(page, "otto", "/transmissions?status=FAILED")
    page.locator("#log-rows tr", has_text="po-bad-7.edi").first.locator("a").click()
    expect(page.locator("p.outcome")).to_have_text("failed at validate")
    near = page.locator("section.failing-line")
    expect(near.locator(".reason")).to_contain_text("segment 21 (QTY)")
    expect(near.locator(".ln.fail")).to_have_text("QTY+21:xx:BG'")
    expect(near.locator(".ln")).to_have_count(7)
    marked = page.locator("pre.raw .ln.fail#fail")
    expect(marked).to_have_text("QTY+21:xx:BG'")
    assert re.fullmatch(r"21", marked.get_attribute("data-n") or "")
    page.screenshot(path=shots / "transmission-failing.png", full_page=True)
