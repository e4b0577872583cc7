"""Explain an order: each verdict on real pipeline data (EANCOM samples, SQLite, a fixed clock)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.config import (
    Identifiers,
    Partner,
    PartnerDirectory,
    TrackerRules,
    TrackerSettings,
    UnbIdentifier,
)
from gateway.core import clock
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.tracker import explain as ex

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
GOUDEN = b"5401234000012"
START = dt.datetime(2024, 3, 5, 7, 0, tzinfo=dt.UTC)  # a Tuesday, 08:00 in Paris


def order(ref: str, number: str, *, sender: bytes = GOUDEN, bad: bool = False,
          prepared: str = "240305:1012") -> bytes:
    """The EANCOM D96A sample as interchange ``ref`` carrying order ``number``."""
    data = (SAMPLE.replace(b"ICR0042", ref.encode()).replace(b"PO-2024-0107", number.encode())
            .replace(GOUDEN + b":14", sender + b":14")
            .replace(b"240305:1012", prepared.encode()))
    if bad:  # a quantity that is not a number: fails validation at line 21
        data = data.replace(b"QTY+21:40:BG", b"QTY+21:xx:BG")
    return data


class Gateway:
    """A real pipeline over SQLite with two partners and the test's clock."""

    def __init__(self, tmp_path: Path, rules: TrackerRules | None = None) -> None:
        self.partners = PartnerDirectory([
            Partner(id="gouden", name="De Gouden Aar", tracker=rules or TrackerRules(),
                    identifiers=Identifiers(unb=[UnbIdentifier(id=GOUDEN.decode(),
                                                               qualifier="14")])),
            Partner(id="quiet", name="Quiet Ltd",
                    identifiers=Identifiers(unb=[UnbIdentifier(id="5400000000001")]))])
        self.store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
        self.archive = Archive(tmp_path / "archive", fsync=False)
        self.pipeline = Pipeline(store=self.store, archive=self.archive, partners=self.partners,
                                 readers=[EdifactReader(MappingSet.load(ROOT / "mappings"))])
        self.tracker = TrackerSettings(timezone="Europe/Paris")

    def send(self, data: bytes, *, filename: str = "orders.edi", channel: str = "folder") -> str:
        receipt = self.pipeline.receive(Incoming(data=data, channel=channel,
                                                 channel_ref=f"/in/{filename}",
                                                 filename=filename))
        self.pipeline.acknowledged([receipt], "moved to processed/")
        if receipt.needs_processing:
            self.pipeline.process(receipt.transmission_id)
        return receipt.transmission_id

    def publish(self) -> None:
        """What the publisher does once the broker confirms."""
        self.store.mark_published([i.outbox_id for i in self.store.pending_outbox(1000)])

    def erp(self, number: str, status: str, reason: str | None = None) -> None:
        """What the ERP acknowledgement consumer records."""
        now = clock.now()
        with self.store.engine.begin() as conn:
            doc = conn.execute(sa.select(s.documents.c.id, s.documents.c.message_id)
                               .where(s.documents.c.business_number == number)
                               .where(s.documents.c.status == s.DOC_PUBLISHED)).one()
            conn.execute(s.documents.update().where(s.documents.c.id == doc.id)
                         .values(erp_status=status, erp_at=now, erp_reason=reason))
            conn.execute(s.erp_acks.insert().values(
                received_at=now, document_id=doc.id, message_id=doc.message_id,
                status=status, reason=reason, acked_at=now, raw=b"{}"))

    def explain(self, **kw: object) -> ex.Explanation:
        return ex.explain(self.store, self.partners, self.tracker, archive=self.archive, **kw)


@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def gw(tmp_path, when):
    return Gateway(tmp_path)


def kinds(e: ex.Explanation) -> list[str]:
    return [f.kind for f in e.evidence]


def test_failed_order_names_stage_reason_file_and_position(gw, when):
    """An order whose quantity is not a number: failed at validate, with its file, the
    line and segment, its transmission, and no reprocess yet."""
    tid = gw.send(order("1042", "PO-2", bad=True), filename="po2.edi")
    when.advance(minutes=30)
    e = gw.explain(partner="gouden", number="PO-2", doc_type="order")
    assert e.verdict == "failed"
    assert "failed at validate" in e.summary and "po2.edi" in e.summary
    assert "08:00 CET" in e.summary  # local time for the phone
    assert "line 21" in e.summary and "Not reprocessed yet" in e.summary
    position = next(f for f in e.evidence if f.kind == "position")
    assert position.text.startswith("in the payload at line 21, column 1, segment 21 (QTY)")
    assert position.ref == tid
    assert e.transmissions[0].id == tid and e.documents[0].status == "FAILED"


def test_failed_order_reports_a_reprocess_attempt_and_its_outcome(gw, when):
    """A failed transmission replayed as a new attempt: the attempt, who asked, why and
    how it ended are in the evidence and the summary."""
    tid = gw.send(order("1042", "PO-2", bad=True))
    when.advance(hours=1)
    again = gw.store.record_received(channel="reprocess", channel_ref=None,
                                     filename="orders.edi", size=1, sha256="0" * 64)
    gw.store.record_failed(again, stage="validate", reason="still not a number")
    with gw.store.engine.begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == again).values(
            reprocess_of=tid, requested_by="ops@example.com", request_reason="mapping fixed"))
    e = gw.explain(partner="gouden", number="PO-2")
    assert e.verdict == "failed"
    assert f"reprocessed 2024-03-05 09:00 CET as transmission {again}: FAILED" in e.summary
    fact = next(f for f in e.evidence if f.kind == "reprocess")
    assert "ops@example.com" in fact.text and "mapping fixed" in fact.text
    assert fact.ref == again


def test_published_order_waits_for_the_erp_and_is_overdue_after_the_sla(gw, when):
    """Published at 08:00, no ERP acknowledgement: within the 30 min SLA at 08:10,
    overdue by 15 min at 08:45."""
    gw.send(order("1045", "PO-3"))
    gw.publish()
    when.advance(minutes=10)
    e = gw.explain(partner="gouden", number="PO-3")
    assert e.verdict == "waiting-erp"
    assert "within the 30 min SLA, due by 2024-03-05 08:30 CET" in e.summary
    when.advance(minutes=35)
    e = gw.explain(partner="gouden", number="PO-3")
    assert e.verdict == "waiting-erp"
    assert "published 2024-03-05 08:00 CET" in e.summary
    assert "no ERP acknowledgement for 45 min (overdue by 15 min" in e.summary
    assert any(f.kind == "sla" and "overdue" in f.text for f in e.evidence)


def test_partner_sla_per_document_type_is_used(tmp_path, when):
    """The partner's own erp_ack_minutes for orders replaces the default 30."""
    gw = Gateway(tmp_path, TrackerRules(erp_ack_minutes={"order": 120}))
    gw.send(order("1045", "PO-3"))
    gw.publish()
    when.advance(minutes=45)
    assert "within the 120 min SLA" in gw.explain(number="PO-3").summary


def test_erp_acknowledged_and_rejected(gw, when):
    """Accepted: when; rejected: when and the ERP's reason."""
    gw.send(order("1041", "PO-1"))
    gw.send(order("1042", "PO-2"))
    gw.publish()
    when.advance(minutes=5)
    gw.erp("PO-1", "ACCEPTED")
    gw.erp("PO-2", "REJECTED", "unknown article 4020000012359")
    ok = gw.explain(partner="gouden", number="PO-1")
    assert ok.verdict == "acknowledged"
    assert "accepted by the ERP 2024-03-05 08:05 CET" in ok.summary
    assert "erp-ack" in kinds(ok)
    bad = gw.explain(partner="gouden", number="po-2")  # any case
    assert bad.verdict == "rejected"
    assert bad.summary.endswith("rejected by the ERP 2024-03-05 08:05 CET: unknown article "
                                "4020000012359.")


def test_order_not_yet_confirmed_by_the_broker_is_in_progress(gw, when):
    """Processed while the broker is down: in the outbox since when, and the broker's error."""
    gw.send(order("1041", "PO-1"))
    gw.store.record_publish_failure([i.outbox_id for i in gw.store.pending_outbox(10)],
                                    "connection refused")
    when.advance(minutes=20)
    e = gw.explain(number="PO-1")
    assert e.verdict == "in-progress"
    assert "waited in the outbox for the broker since 2024-03-05 08:00 CET (20 min)" in e.summary
    assert "connection refused" in e.summary
    assert any(f.kind == "outbox" and "1 publish attempt" in f.text for f in e.evidence)


def test_resent_interchange_is_a_duplicate_of_the_first_document(gw, when):
    """The same interchange sent again (another preparation time, so other bytes): the repeat
    is a duplicate naming the first document, which the ERP accepted."""
    gw.send(order("1041", "PO-1"))
    gw.publish()
    gw.erp("PO-1", "ACCEPTED")
    first = gw.store.find_documents(business_number="PO-1")[0]
    when.advance(hours=2)
    gw.send(order("1041", "PO-1", prepared="240305:1215"), filename="again.edi")
    e = gw.explain(partner="gouden", number="PO-1")
    assert e.verdict == "duplicate"
    assert f"repeat of document {first.id}" in e.summary
    assert "not sent to the ERP again" in e.summary and "accepted by the ERP" in e.summary
    assert len(e.documents) == 2


def test_identical_bytes_by_file_name_are_a_duplicate_transmission(gw, when):
    """The very same file twice: asked by its second name, the repeat names the first."""
    tid = gw.send(order("1041", "PO-1"), filename="monday.edi")
    when.advance(hours=1)
    again = gw.send(order("1041", "PO-1"), filename="monday-copy.edi")
    e = gw.explain(filename="monday-copy.edi")
    assert e.verdict == "duplicate"
    assert f"exact repeat of transmission {tid}" in e.summary
    assert e.transmissions[0].id == again
    # Asked by its number, the order is the first one's; the repeat is in the evidence.
    by_number = gw.explain(number="PO-1")
    assert any(f.kind == "repeat" and f.ref == again for f in by_number.evidence)


def test_same_number_twice_is_about_the_latest_with_the_other_listed(gw, when):
    """PO-1 in interchange 1041 (published) and again in 1046 (failed): the verdict is the
    latest's, the first is evidence."""
    gw.send(order("1041", "PO-1"))
    gw.publish()
    when.advance(days=1)
    gw.send(order("1046", "PO-1", bad=True))
    e = gw.explain(partner="gouden", number="PO-1")
    assert e.verdict == "failed" and len(e.documents) == 2
    other = next(f for f in e.evidence if f.kind == "also-received")
    assert "published 2024-03-05 08:00 CET" in other.text


def test_order_never_received_shows_last_contact_gap_channel_and_alerts(gw, when):
    """An order number that never existed: the partner's last contact on each channel, the
    interchange references missing around then, its failing channel and its silence alert."""
    gw.send(order("1041", "PO-1"), channel="folder")
    when.advance(hours=1)
    gw.send(order("1042", "PO-2"), channel="folder")
    when.advance(hours=1)
    gw.send(order("1045", "PO-3"), channel="as2")
    when.advance(minutes=30)
    ChannelRecords(gw.store).failed("sftp:gouden", "sftp", "Connection refused",
                                    partner_id="gouden")
    with gw.store.engine.begin() as conn:
        conn.execute(s.alerts.insert().values(
            kind="silence", partner_id="gouden", key="silence:gouden:2024-03-05",
            status="open", summary="no order from gouden by 10:00", opened_at=clock.now(),
            last_seen_at=clock.now()))
    e = gw.explain(partner="gouden", number="PO-404", doc_type="order")
    assert e.verdict == "never-received"
    contact = [f for f in e.evidence if f.kind == "last-contact"]
    assert [f.text.split(":")[0] for f in contact] == ["last transmission via as2",
                                                       "last transmission via folder"]
    assert "2024-03-05 10:00 CET" in contact[0].text and "PUBLISHED" not in contact[0].text
    gap = next(f for f in e.evidence if f.kind == "gap")
    assert gap.text.startswith("interchange references 1043-1044 missing: received 1045")
    assert any(f.kind == "channel" and "Connection refused" in f.text for f in e.evidence)
    assert any(f.kind == "alert" and "no order from gouden by 10:00" in f.text
               for f in e.evidence)
    assert e.summary.startswith("No order PO-404 from gouden has been received")
    assert "last contact 2024-03-05 10:00 CET" in e.summary
    assert "1043-1044 missing" in e.summary and "silence alert" in e.summary
    json.dumps(e.as_dict())  # the HTTP API's answer


def test_never_received_lists_only_unreadable_files_that_could_be_the_partners(gw, when):
    """A sender-less file that failed before any number was read is a suspect when it names
    the partner (its id or an identifier); one that names nobody is not told about it."""
    gw.send(b"this is not EDI at all", filename="gouden-garbage.txt")
    gw.send(b"5401234000012 but not EDI either", filename="odd.txt")
    gw.send(b"nothing to do with them", filename="stranger.txt")
    when.advance(hours=1)
    e = gw.explain(partner="gouden", number="PO-404")
    assert e.verdict == "never-received"
    suspects = [f.text for f in e.evidence if f.kind == "unreadable"]
    # Named by file name, and by its UNB id (in the reader's excerpt of the reason).
    assert len(suspects) == 2 and "odd.txt" in suspects[0]
    assert "gouden-garbage.txt" in suspects[1] and "FAILED at detect" in suspects[1]
    # Without a partner: every unidentified file could be it.
    anyone = gw.explain(number="PO-404")
    assert len([f for f in anyone.evidence if f.kind == "unreadable"]) == 3


def test_never_received_tells_ten_suspects_then_and_n_more(gw, when):
    """Twelve unreadable files: ten are told, then "and 2 more"; the JSON counts them."""
    for n in range(12):
        gw.send(b"not EDI %d" % n, filename=f"gouden-{n:02d}.txt")
        when.advance(minutes=1)
    e = gw.explain(partner="gouden", number="PO-404")
    assert len([f for f in e.evidence if f.kind == "unreadable"]) == 10
    more = next(f for f in e.evidence if f.kind == "more-unreadable")
    assert more.text.startswith("and 2 more unreadable file(s) that could be gouden's")
    assert e.as_dict()["more_evidence"] == 2 and "12 payload(s)" in e.summary


def test_partner_with_no_traffic_at_all(gw, when):
    """A partner that never sent anything says so."""
    e = gw.explain(partner="quiet", number="Q-1")
    assert e.verdict == "never-received"
    assert "nothing from this partner is on record" in e.summary
    assert kinds(e)[0] == "no-contact"


def test_order_from_an_unknown_sender_is_quarantined(gw, when):
    """An order whose sender no profile lists: asked by its number, it is found in the
    quarantined payload's raw bytes; asked by file, it is quarantined."""
    tid = gw.send(order("77", "PO-9", sender=b"5499999999999"), filename="stranger.edi")
    when.advance(minutes=10)
    e = gw.explain(number="PO-9", doc_type="order")
    assert e.verdict == "quarantined"
    assert "unknown sender id 5499999999999" in e.summary and tid in e.summary
    assert any(f.kind == "found-in-payload" and f.ref == tid for f in e.evidence)
    assert gw.explain(filename="STRANGER.EDI").verdict == "quarantined"
    assert gw.explain(interchange_ref="77").verdict == "never-received"  # never parsed


def test_search_by_number_interchange_file_and_dates(gw, when):
    """search finds documents by number (exact, then any case), interchange, whole file
    name (any case; a part of a name is not a lookup), partner and dates, and
    transmissions without documents by file."""
    gw.send(order("1041", "PO-1"), filename="a-monday.edi")
    when.advance(days=1)
    gw.send(order("1042", "PO-2"), filename="b-tuesday.edi")
    gw.send(b"not EDI", filename="b-broken.txt")
    store = gw.store
    assert [h.business_number for h in ex.search(store, number="po-1")] == ["PO-1"]
    assert [h.business_number for h in ex.search(store, interchange_ref="1042")] == ["PO-2"]
    assert [h.filename for h in ex.search(store, filename="B-Tuesday.edi")] == ["b-tuesday.edi"]
    assert ex.search(store, filename="tuesday") == []
    hits = ex.search(store, filename="b-broken.txt")
    assert [(h.kind, h.filename) for h in hits] == [("transmission", "b-broken.txt")]
    day2 = START + dt.timedelta(hours=12)
    assert [h.business_number for h in ex.search(store, partner="gouden", since=day2)] == ["PO-2"]
    assert [h.business_number for h in ex.search(store, partner="gouden", until=day2)] == ["PO-1"]
    assert ex.search(store, number="PO-1", doc_type="invoice") == []


def test_a_gap_the_tracker_already_raised_is_told_once(gw, when):
    """With the gap rule's alert open, the computed gap is not repeated beside it."""
    for ref, number in (("1042", "PO-2"), ("1045", "PO-3")):
        gw.send(order(ref, number), filename=f"{ref}.edi")
    with gw.store.engine.begin() as conn:
        conn.execute(s.alerts.insert().values(
            kind="gap", partner_id="gouden", key="gap:gouden:1043-1044", status="open",
            summary="gouden: received 1045 while expecting 1043: 1043 and 1044 missing",
            opened_at=clock.now(), last_seen_at=clock.now()))
    e = gw.explain(partner="gouden", number="PO-404")
    assert "gap" not in kinds(e)
    assert [f.text for f in e.evidence if f.kind == "alert"] == [
        "gap alert (open): gouden: received 1045 while expecting 1043: 1043 and 1044 missing"]
