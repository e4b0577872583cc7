"""The pipeline: durable receive first, then identify, parse, map; failures are kept."""

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from gateway.config import Identifiers, Partner, PartnerDirectory, UnbIdentifier
from gateway.core.canonical import Order
from gateway.core.errors import EdifactSyntaxError, MappingError, Position
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming, MappedDocument, Sender
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store


@dataclass
class FakeParsed:
    senders: list
    numbers: list
    fail_map: Exception | None = None
    format: str = "fake"
    standard: str | None = "FAKE"
    warnings: list = field(default_factory=list)

    def summary(self):
        return f"{len(self.numbers)} message(s)"

    def documents(self, *, partner, transmission_id, filename, known_refs=None):
        if self.fail_map:
            raise self.fail_map
        out = []
        for n in self.numbers:
            doc = Order.model_validate(dict(
                message_id=f"{partner.id}-{n}", partner=partner.id, order_number=n,
                lines=[dict(quantity=Decimal(1))],
                source=dict(format="edifact", standard="EANCOM", version="D96A", mapping="fake")))
            out.append(MappedDocument(doc_type="order", document=doc, message_id=doc.message_id,
                                      business_number=n, interchange_ref="IC", message_ref=n,
                                      schema_version="edigw.order/1"))
        return out

    def control_refs(self):
        return []

    def interchanges_seen(self):
        return []

    def replies(self, *, partner, transmission_id):
        return []


class FakeReader:
    """Reads b'FAKE|sender|PO1,PO2' payloads; b'FAKE|BAD' is a syntax error."""

    format = "fake"

    def sniff(self, head):
        return head.startswith(b"FAKE|")

    def parse(self, data, *, filename):
        parts = data.decode().strip().split("|")
        if parts[1] == "BAD":
            raise EdifactSyntaxError("UNT segment count is 3 but the message has 4 segments",
                                     position=Position(segment=4, line=4, tag="UNT"), code="29")
        sender = Sender(parts[1] or None, "14")
        numbers = [n for n in parts[2].split(",") if n]
        fail = MappingError("message 1 has no order number (BGM 1004)", field="order_number",
                            position=Position(segment=2, line=2, tag="BGM")) if not numbers else None
        return FakeParsed([sender], numbers, fail)


@pytest.fixture
def pipeline(tmp_path):
    partners = PartnerDirectory([
        Partner(id="acme", name="ACME", identifiers=Identifiers(unb=[UnbIdentifier(id="111", qualifier="14")])),
        Partner(id="beta", name="Beta", identifiers=Identifiers(unb=[UnbIdentifier(id="222")])),
    ])
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    woken = []
    p = Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                 readers=[FakeReader()], on_queued=lambda: woken.append(1))
    p.woken = woken
    return p


def receive(p, data: bytes, **kw):
    return p.receive(Incoming(data=data, channel="folder", channel_ref=kw.pop("ref", None),
                              filename="f.edi", **kw))


def test_order_file_is_received_processed_and_queued(pipeline):
    """A good payload ends PROCESSED with its documents in the outbox and the publisher woken."""
    r = receive(pipeline, b"FAKE|111|PO1,PO2")
    assert pipeline.store.get_transmission(r.transmission_id).status == s.RECEIVED
    out = pipeline.process(r.transmission_id)
    assert (out.status, out.partner_id, out.documents, out.queued) == (s.PROCESSED, "acme", 2, 2)
    assert pipeline.store.outbox_size() == 2 and pipeline.woken
    events = [e["event"] for e in pipeline.store.events(r.transmission_id)]
    assert events == ["received", "parsed", "identified", "processed"]
    assert [i.routing_key for i in pipeline.store.pending_outbox(5)] == ["order.acme"] * 2


def test_same_bytes_twice_is_recorded_as_duplicate_not_processed(pipeline):
    """The second drop of identical bytes is a DUPLICATE pointing at the first."""
    r1 = receive(pipeline, b"FAKE|111|PO1")
    r2 = receive(pipeline, b"FAKE|111|PO1")
    assert r2.duplicate_of == r1.transmission_id and not r2.needs_processing
    assert pipeline.store.get_transmission(r2.transmission_id).status == s.DUPLICATE


def test_same_bytes_from_another_partners_channel_are_not_its_duplicate(pipeline):
    """acme's file sent again through beta's channel (or portal account) is not recorded as
    a repeat of acme's (which would tell beta acme's transmission): it is processed alone
    and quarantined; sent again through acme's own channel it is a duplicate."""
    first = receive(pipeline, b"FAKE|111|PO1")
    assert pipeline.process(first.transmission_id).partner_id == "acme"
    other = receive(pipeline, b"FAKE|111|PO1", partner_hint="beta")
    assert other.duplicate_of is None and other.needs_processing
    assert pipeline.process(other.transmission_id).status == s.QUARANTINED
    assert pipeline.store.get_transmission(other.transmission_id).partner_id == "beta"
    again = receive(pipeline, b"FAKE|111|PO1", partner_hint="acme")
    assert again.duplicate_of == first.transmission_id


def test_duplicates_inside_one_batch(pipeline):
    """Two identical payloads in one receive batch: the second is a duplicate of the first."""
    a, b = pipeline.receive_many([Incoming(data=b"FAKE|111|X", channel="folder"),
                                  Incoming(data=b"FAKE|111|X", channel="folder")])
    assert b.duplicate_of == a.transmission_id and a.duplicate_of is None


def test_receive_after_crash_before_acknowledgement_only_resumes(pipeline):
    """The same file from the same place, never acknowledged, is resumed, not duplicated."""
    r1 = receive(pipeline, b"FAKE|111|PO1", ref="/in/f.edi")
    r2 = receive(pipeline, b"FAKE|111|PO1", ref="/in/f.edi")
    assert r2.resumed and r2.transmission_id == r1.transmission_id
    pipeline.acknowledged([r1], "moved")
    r3 = receive(pipeline, b"FAKE|111|PO1", ref="/in/f.edi")
    assert r3.duplicate_of == r1.transmission_id


def test_syntax_error_fails_with_stage_and_position(pipeline):
    """A bad payload is FAILED at parse with the position; its bytes stay archived."""
    r = receive(pipeline, b"FAKE|BAD|")
    out = pipeline.process(r.transmission_id)
    t = pipeline.store.get_transmission(r.transmission_id)
    assert (t.status, t.stage) == (s.FAILED, "parse")
    assert "line 4" in t.reason and "UNT" in t.reason
    assert out.reason == t.reason
    assert pipeline.archive.get(t.sha256) == b"FAKE|BAD|"


def test_not_a_known_format_and_empty_file_fail_at_detect(pipeline):
    """Empty and unknown payloads fail at detect with a reason."""
    for data, words in ((b"", "empty"), (b"hello world", "not a recognised format")):
        r = receive(pipeline, data)
        pipeline.process(r.transmission_id)
        t = pipeline.store.get_transmission(r.transmission_id)
        assert (t.status, t.stage) == (s.FAILED, "detect") and words in t.reason


def test_unknown_sender_is_quarantined(pipeline):
    """A sender no profile lists is QUARANTINED with the sender id in the reason."""
    r = receive(pipeline, b"FAKE|999|PO1")
    pipeline.process(r.transmission_id)
    t = pipeline.store.get_transmission(r.transmission_id)
    assert t.status == s.QUARANTINED and "999" in t.reason and t.stage == "identify"


def test_partner_specific_folder_identifies_an_unknown_sender(pipeline):
    """A partner-specific channel names the partner when the UNB sender is not listed."""
    r = receive(pipeline, b"FAKE|999|PO1", partner_hint="beta")
    assert pipeline.process(r.transmission_id).partner_id == "beta"


def test_sender_of_another_partner_in_a_partner_folder_is_quarantined(pipeline):
    """A file in beta's folder whose UNB sender belongs to acme is not given to either; the
    reason names the sender id but not acme (beta, or beta's portal user, reads it)."""
    r = receive(pipeline, b"FAKE|111|PO1", partner_hint="beta")
    out = pipeline.process(r.transmission_id)
    assert out.status == s.QUARANTINED and "acme" not in out.reason
    assert "111" in out.reason and "another partner's profile" in out.reason


def test_mapping_error_fails_at_map_and_can_be_reprocessed(pipeline):
    """A mapping failure is FAILED at map; processing it again after a fix works."""
    r = receive(pipeline, b"FAKE|111|")
    out = pipeline.process(r.transmission_id)
    assert (out.status, out.stage) == (s.FAILED, "map")
    assert "order number" in out.reason and "line 2" in out.reason
    assert pipeline.process(r.transmission_id).status == s.FAILED  # still failing, still kept


def test_resume_processes_what_a_crash_left_received(pipeline):
    """Transmissions left RECEIVED are processed by resume()."""
    ids = [receive(pipeline, f"FAKE|111|PO{i}".encode()).transmission_id for i in range(3)]
    assert pipeline.resume() == 3
    assert {pipeline.store.get_transmission(t).status for t in ids} == {s.PROCESSED}
    assert pipeline.resume() == 0


def test_large_interchange_is_committed_in_chunks_and_wakes_the_publisher_early(pipeline):
    """Above chunk_size documents, chunks are committed one by one; the result is the same."""
    pipeline.chunk_size = 2
    r = receive(pipeline, b"FAKE|111|A,B,C,D,E")
    out = pipeline.process(r.transmission_id)
    assert (out.status, out.documents, out.queued) == (s.PROCESSED, 5, 5)
    assert len(pipeline.woken) >= 2  # woken before the last chunk
    t = pipeline.store.get_transmission(r.transmission_id)
    assert t.document_count == 5 and pipeline.store.outbox_size() == 5


def test_rerun_after_a_crash_between_chunks_stores_each_document_once(pipeline):
    """Documents a cut-short run stored are skipped, not duplicated, when the run resumes."""
    pipeline.chunk_size = 2
    r = receive(pipeline, b"FAKE|111|A,B,C")
    work = pipeline._work(r.transmission_id).record
    pipeline.store.record_processed(docs=work.docs[:2], final=False, tid=r.transmission_id,
                                    partner_id="acme", fmt="fake", standard=None)
    assert pipeline.store.get_transmission(r.transmission_id).status == s.RECEIVED
    assert pipeline.resume() == 1
    docs = pipeline.store.documents_of(r.transmission_id)
    assert sorted(d.business_number for d in docs) == ["A", "B", "C"]
    assert {d.status for d in docs} == {s.PENDING}
    assert pipeline.store.get_transmission(r.transmission_id).document_count == 3
    events = [e["event"] for e in pipeline.store.events(r.transmission_id)]
    assert events.count("parsed") == 1 and events.index("parsed") < events.index("processed")


def test_process_many_commits_several_small_files_together(pipeline):
    """Good, bad and duplicate-content files processed in one batch each get their outcome."""
    ids = [receive(pipeline, d).transmission_id
           for d in (b"FAKE|111|P1", b"FAKE|BAD|", b"FAKE|999|P2", b"FAKE|111|P3")]
    outs = pipeline.process_many(ids)
    assert [o.status for o in outs] == [s.PROCESSED, s.FAILED, s.QUARANTINED, s.PROCESSED]
    assert pipeline.store.outbox_size() == 2
