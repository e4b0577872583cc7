"""A CSV file through the real pipeline (SQLite store): received, read by CsvReader after
the EDIFACT reader passed, mapped for the partner of its inbox, stored and queued; a bad
order kept FAILED with its line and column while the others go on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DocumentSettings, Identifiers, Partner, PartnerDirectory
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.csv import CsvReader
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store

REPO = Path(__file__).resolve().parents[2]

ORDERS = ("Bestellnummer;Bestelldatum;GLN Käufer;EAN;Menge;Einzelpreis\r\n"
          "B-1;05.03.2024;4012345000009;4000862141404;12;3,45\r\n"
          "B-2;05.03.2024;4012345000009;4006381333931;zwölf;1,10\r\n"
          "B-3;06.03.2024;4012345000009;4012345999990;6;8,90\r\n").encode("cp1252")


@pytest.fixture
def pipeline(tmp_path):
    mappings = MappingSet.load(REPO / "mappings")
    partners = PartnerDirectory([Partner(
        id="shop7", name="Shop 7", identifiers=Identifiers(gln=["4012345000009"]),
        documents=[DocumentSettings(type="order", format="csv", mapping="csv-orders-generic")])])
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    return Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                    readers=[EdifactReader(mappings), CsvReader(mappings)])


def test_csv_orders_from_a_partner_inbox_are_stored_and_a_bad_one_kept_failed(pipeline):
    """Two orders queued, B-2 FAILED at map with line 3, column "Menge" (5); the file's
    Windows-1252 encoding is noted on the timeline."""
    receipt = pipeline.receive(Incoming(data=ORDERS, channel="folder", filename="b.csv",
                                        partner_hint="shop7"))
    out = pipeline.process(receipt.transmission_id)
    assert (out.status, out.partner_id, out.documents, out.queued) == (s.PROCESSED, "shop7", 3, 2)
    docs = pipeline.store.documents_of(receipt.transmission_id)
    assert [(d.business_number, d.status) for d in docs] == [
        ("B-1", s.PENDING), ("B-2", s.DOC_FAILED), ("B-3", s.PENDING)]
    failed = docs[1]
    assert failed.stage == "map" and failed.message_ref == "line 3"
    assert "line 3, column \"Menge\" (5): 'zwölf' is not a number" in failed.reason
    row = pipeline.store.get_transmission(receipt.transmission_id)
    assert (row.format, row.standard) == ("csv", "CSV")
    details = " ".join(e["detail"] or "" for e in pipeline.store.events(receipt.transmission_id))
    assert "recognised by mapping csv-orders-generic" in details
    assert "windows-1252" in details


def test_a_csv_file_from_a_shared_inbox_without_sender_is_quarantined(pipeline):
    """No partner-specific inbox and no identifier column: quarantined, not failed."""
    data = b"Foo;Bar\r\n1;2\r\n"
    receipt = pipeline.receive(Incoming(data=data, channel="folder", filename="x.csv"))
    out = pipeline.process(receipt.transmission_id)
    assert out.status == s.QUARANTINED and out.stage == "identify"


def test_a_csv_order_from_a_shared_inbox_finds_its_partner_by_the_buyer_gln(pipeline):
    """The generic mapping recognises the header; its buyer GLN column names the partner."""
    receipt = pipeline.receive(Incoming(data=ORDERS, channel="folder", filename="b.csv"))
    out = pipeline.process(receipt.transmission_id)
    assert (out.status, out.partner_id, out.queued) == (s.PROCESSED, "shop7", 2)
