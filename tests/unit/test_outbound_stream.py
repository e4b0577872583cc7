"""Large price lists (issue 16): checked item by item and rendered as a stream, with the
same bytes, the same failures and the same gap-free control references as in memory."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.intake import OutboundIntake
from gateway.config import Partner, PartnerOutbound
from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.structure import MessageCheck, validate_message
from gateway.formats.render import OutboundMappings
from gateway.store.archive import Archive
from gateway.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings/outbound/edifact/eancom-pricat-d01b.sample.json"
NOW = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)


def _gtin(i: int) -> str:
    body = f"{400000000000 + i:012d}"
    check = (10 - sum((3 if n % 2 else 1) * int(d) for n, d in enumerate(body)) % 10) % 10
    return body + str(check)


def _price_list(count: int, **changes: Any) -> dict[str, Any]:
    sample = json.loads(SAMPLE.read_text())
    base = sample["items"][0]
    doc = {k: v for k, v in sample.items() if k not in ("items", "message_id", "source")}
    doc["partner"] = "acme"
    doc["items"] = []
    for i in range(count):
        item = copy.deepcopy(base)
        item.update(line_number=str(i + 1), gtin=_gtin(i), description=f"Article {i}")
        item.pop("item_code", None)
        item["prices"] = [dict(p, amount=f"{i % 997 + 1}.{i % 100:02d}")
                          for p in base["prices"][:3]]
        doc["items"].append(item)
    doc.update(changes)
    return doc


def _intake(tmp: Path, stream_above: int) -> OutboundIntake:
    partners = {"acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
        formats={"price-list": "eancom-pricat-d01b"}, recipient_id="5400000000003"))}
    return OutboundIntake(
        store=Store.from_url(f"sqlite:///{tmp / 'edigw.db'}"), archive=Archive(tmp / "archive"),
        partners=partners.get, mappings=OutboundMappings.load(ROOT / "mappings"),
        sender_id="5412345000013", stream_above=stream_above, _clock=lambda: NOW)


@pytest.fixture(scope="module")
def big() -> bytes:
    return json.dumps(_price_list(30_000)).encode()


def test_a_streamed_price_list_is_the_same_interchange_as_in_memory(
        tmp_path: Path, big: bytes) -> None:
    (tmp_path / "mem").mkdir()
    (tmp_path / "stream").mkdir()
    in_memory = _intake(tmp_path / "mem", stream_above=1 << 30)
    streamed = _intake(tmp_path / "stream", stream_above=1 << 20)
    (tmp_path / "big.json").write_bytes(big)

    a = in_memory.accept(big, origin="erp", ref="m1", partner="acme")
    b = streamed.accept_file(tmp_path / "big.json", origin="erp", ref="m1", partner="acme")

    assert a.status == b.status == "RENDERED", (a.reason, b.reason)
    assert a.outbound is not None and b.outbound is not None
    assert b.outbound.control_ref == a.outbound.control_ref == "1"
    assert b.outbound.filename.replace((b.transmission_id or "")[-8:], "") == \
        a.outbound.filename.replace((a.transmission_id or "")[-8:], "")
    sealed = streamed.archive.get(b.outbound.sha256)
    assert sealed == in_memory.archive.get(a.outbound.sha256)
    assert sealed.count(b"\nLIN+") == 30_000
    # The ERP's bytes were archived first, as sent.
    row = streamed.store.get_transmission(b.transmission_id or "")
    assert row is not None and streamed.archive.get(row.sha256) == big
    # Nothing is left in the spool.
    assert not [p for p in (tmp_path / "stream" / "archive").iterdir() if p.name.startswith(".")]
    # The document row holds the header and the item count, and is found by its number.
    found = streamed.store.find_documents(business_number="PL-2025-07")
    assert len(found) == 1 and found[0].status == "OUTBOUND"
    header = streamed.store.document_payload(found[0].id)
    assert "items" not in header and header["items_omitted"]["count"] == 30_000
    assert header["price_list_number"] == "PL-2025-07"
    # A redelivery is a repeat: no second rendering, no second reference.
    again = streamed.accept_file(tmp_path / "big.json", origin="erp", ref="m1", partner="acme")
    assert again.repeat and again.transmission_id == b.transmission_id
    assert streamed.store.last_control_ref("acme") == 1
    # Sent again (reprocess): read from the archive as a stream, the next reference.
    resent = streamed.resend(b.transmission_id or "", by="ops", reason="lost")
    assert resent.status == "RENDERED" and resent.outbound is not None
    assert resent.outbound.control_ref == "2"
    assert streamed.archive.get(resent.outbound.sha256) == sealed.replace(
        b"+1'\nUNH", b"+2'\nUNH").replace(b"UNZ+1+1'", b"UNZ+1+2'")
    # Bytes handed over in memory above the threshold take the streamed path too.
    c = streamed.accept(big, origin="erp", ref="m2", partner="acme")
    assert c.status == "RENDERED" and c.outbound is not None and c.outbound.control_ref == "3"


@pytest.mark.parametrize(("spoil", "stage", "where"), [
    # The canonical model takes any text as a GTIN: the directory (LIN 7140 an..35) does not.
    (lambda item: item.update(gtin="4" * 40), "render", "at items[19999]"),
    (lambda item: item["prices"][1].pop("amount"), "validate", "items.19999.prices.1.amount"),
])
def test_a_bad_item_fails_the_whole_list_and_takes_no_reference(
        tmp_path: Path, spoil: Any, stage: str, where: str) -> None:
    doc = _price_list(25_000)
    spoil(doc["items"][19_999])
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    intake = _intake(tmp_path, stream_above=1 << 20)

    result = intake.accept_file(tmp_path / "bad.json", origin="erp", ref="b1", partner="acme")

    assert result.status == "FAILED" and result.stage == stage
    assert where in (result.reason or ""), result.reason
    assert intake.store.last_control_ref("acme") == 0
    assert not [p for p in (tmp_path / "archive").iterdir() if p.name.startswith(".")]
    again = intake.accept_file(tmp_path / "bad.json", origin="erp", ref="b1", partner="acme")
    assert again.repeat and again.status == "FAILED"
    # The next list takes the first reference: none was lost.
    good = intake.accept(json.dumps(_price_list(3)).encode(), origin="erp", ref="g1",
                         partner="acme")
    assert good.outbound is not None and good.outbound.control_ref == "1"


def test_a_rendering_that_breaks_the_directory_fails_as_in_memory(tmp_path: Path) -> None:
    doc = _price_list(12_000)
    doc["items"][10_500]["action"] = "a code far too long"  # LIN 1229 is an..3
    data = json.dumps(doc).encode()
    (tmp_path / "mem").mkdir()
    (tmp_path / "stream").mkdir()
    a = _intake(tmp_path / "mem", 1 << 30).accept(data, origin="erp", ref="x", partner="acme")
    streamed = _intake(tmp_path / "stream", 1 << 20)
    b = streamed.accept(data, origin="erp", ref="x", partner="acme")
    assert a.status == b.status == "FAILED" and a.stage == b.stage == "render"
    assert b.reason == a.reason and "items[10500]" in (b.reason or "")
    assert streamed.store.last_control_ref("acme") == 0
    assert not [p for p in (tmp_path / "stream" / "archive").iterdir()
                if p.name.startswith(".")]


def test_message_check_fed_in_pieces_finds_what_validate_message_finds() -> None:
    text = ("UNA:+.? 'UNB+UNOC:3+5412345000013:14+5400000000003:14+260102:0304+1'"
            "UNH+1+PRICAT:D:01B:UN:EAN008'BGM+9+PL1+9'DTM+137:20261340:102'"
            "LIN+1++4000000000006:SRV'PRI+AAA:abc'LIN+2+toolong+4000000000013:SRV'"
            "UNT+7+1'UNZ+1+1'")
    message = read_interchanges(text.encode())[0].messages[0]
    expected = validate_message(message)
    assert len(expected) >= 3
    check = MessageCheck(message, limit=2)
    for segment in message.segments:
        check.feed(segment)
    got = check.finish()
    assert [str(e) for e in got] == [str(e) for e in expected[:2]]


def test_streamed_header_faults_and_limits(tmp_path: Path) -> None:
    intake = _intake(tmp_path, stream_above=1000)
    bad_date = tmp_path / "bad-date.json"
    bad_date.write_text(json.dumps(_price_list(50, issue_date="not a date")))
    result = intake.accept_file(bad_date, origin="erp", ref="h1", partner="acme")
    assert result.stage == "validate" and "issue_date" in (result.reason or "")
    wrapped = tmp_path / "wrapped.json"  # a one-document list, as expected files hold them
    wrapped.write_text(json.dumps([_price_list(50)]))
    assert intake.accept_file(wrapped, origin="erp", ref="h2", partner="acme").outbound
    (doc,) = intake.store.find_documents(business_number="PL-2025-07")
    assert intake.store.document_payload(doc.id)["items_omitted"]["count"] == 50
    two = tmp_path / "two.json"
    two.write_text(json.dumps([_price_list(5), _price_list(5)]))
    result = intake.accept_file(two, origin="erp", ref="h3", partner="acme")
    assert result.stage == "parse" and "a list of 2 documents" in (result.reason or "")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(_price_list(50))[:-30])
    result = intake.accept_file(broken, origin="erp", ref="h4", partner="acme")
    assert result.stage == "parse" and "not JSON" in (result.reason or "")
    intake.max_size = 2000
    result = intake.accept_file(wrapped, origin="erp", ref="h5", partner="acme")
    assert result.stage == "parse" and "more than the 2000" in (result.reason or "")
    assert intake.store.last_control_ref("acme") == 1
