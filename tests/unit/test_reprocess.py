"""Reprocessing as a new attempt: the replay of a failed transmission after a profile fix is
linked to the first, is not taken for a duplicate interchange of it (even under policy
``reject``), and does not publish twice what the first attempt already published."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import (
    DocumentSettings,
    EdifactPolicy,
    Identifiers,
    Partner,
    PartnerDirectory,
    UnbIdentifier,
)
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()


def _partner(mapping: str) -> PartnerDirectory:
    return PartnerDirectory([Partner(
        id="bakkerij", name="Bakkerij",
        identifiers=Identifiers(unb=[UnbIdentifier(id="5401234000012", qualifier="14")]),
        documents=[DocumentSettings(type="order", format="edifact", mapping=mapping)],
        edifact=EdifactPolicy(duplicate_interchange="reject"))])


@pytest.fixture
def pipeline(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    p = Pipeline(store=store, archive=Archive(tmp_path / "archive"),
                 partners=_partner("no-such-mapping"),
                 readers=[EdifactReader(MappingSet.load(REPO / "mappings"))])
    yield p
    store.close()


def test_a_replay_after_a_profile_fix_is_a_linked_attempt_and_no_duplicate(pipeline):
    store = pipeline.store
    receipt = pipeline.receive(Incoming(data=SAMPLE, channel="folder", filename="po.edi"))
    first = pipeline.process(receipt.transmission_id)
    assert first.status == s.FAILED, first
    assert store.interchanges_of(receipt.transmission_id), "its interchange was recorded"

    pipeline.partners = _partner("eancom-orders-d96a")  # the fix
    attempt = store.record_reprocess(receipt.transmission_id, by="alice", reason="mapping fixed")
    out = pipeline.process(attempt)
    assert (out.status, out.documents, out.queued) == (s.PROCESSED, 1, 1), out
    t = store.get_transmission(attempt)
    assert (t.reprocess_of, t.requested_by, t.request_reason) == (
        receipt.transmission_id, "alice", "mapping fixed")
    assert store.get_transmission(receipt.transmission_id).status == s.FAILED
    assert store.reprocess_chain(attempt) == [receipt.transmission_id]

    # A replay of the replay: its document was published already, so it is a duplicate of
    # it (not sent twice), and neither earlier attempt makes its interchange a duplicate.
    again = store.record_reprocess(attempt, by="bob", reason="checking")
    assert store.reprocess_chain(again) == [attempt, receipt.transmission_id]
    out = pipeline.process(again)
    assert out.queued == 0 and out.status != s.FAILED, out
    assert [d.status for d in store.documents_of(again)] == [s.DOC_DUPLICATE]


def test_the_same_file_sent_again_is_still_a_duplicate_interchange(pipeline):
    """Only a replay is exempt: the partner sending the interchange again is not."""
    pipeline.partners = _partner("eancom-orders-d96a")
    a = pipeline.receive(Incoming(data=SAMPLE, channel="folder", filename="po.edi"))
    assert pipeline.process(a.transmission_id).status == s.PROCESSED
    b = pipeline.receive(Incoming(data=SAMPLE + b"\n", channel="folder", filename="po2.edi"))
    out = pipeline.process(b.transmission_id)
    assert out.status == s.FAILED, out
    assert "ICR0042" in out.reason and "already" in out.reason, out.reason


def test_a_repeated_order_number_is_kept_as_duplicate_under_policy_reject(pipeline):
    """Partner policy duplicate_numbers = reject: the same order number in another message
    (another interchange and message reference) is stored DUPLICATE with the reason and not
    published; under warn it would go on (the tracker alerts)."""
    pipeline.partners = _partner("eancom-orders-d96a")
    policy = {"bakkerij": ("reject", 90)}
    pipeline.number_policy = lambda p: policy[p.id]
    a = pipeline.receive(Incoming(data=SAMPLE, channel="folder", filename="po.edi"))
    assert pipeline.process(a.transmission_id).queued == 1
    other = SAMPLE.replace(b"ICR0042", b"ICR0043").replace(b"UNH+107", b"UNH+108") \
                  .replace(b"+107'", b"+108'")  # UNT's reference
    b = pipeline.receive(Incoming(data=other, channel="folder", filename="po-again.edi"))
    out = pipeline.process(b.transmission_id)
    assert out.queued == 0, out
    (doc,) = pipeline.store.documents_of(b.transmission_id)
    assert doc.status == s.DOC_DUPLICATE and doc.business_number == "PO-2024-0107"
    assert f"already received in transmission {a.transmission_id}" in doc.reason
    assert "duplicate_numbers = reject" in doc.reason
    assert "duplicate-number" in [e["event"] for e in pipeline.store.events(b.transmission_id)]

    # Under warn the number alone stops nothing: the same order unchanged is a DUPLICATE
    # by its content, a changed one goes on when the partner publishes conflicts.
    policy["bakkerij"] = ("warn", 90)
    c = pipeline.receive(Incoming(data=other.replace(b"ICR0043", b"ICR0044"),
                                  channel="folder", filename="po-third.edi"))
    assert pipeline.process(c.transmission_id).queued == 0
    assert [d.status for d in pipeline.store.documents_of(c.transmission_id)] == [
        s.DOC_DUPLICATE]
    pipeline.partners = PartnerDirectory([
        p.model_copy(update={"on_conflict": "publish"}) for p in pipeline.partners])
    changed = other.replace(b"ICR0043", b"ICR0045").replace(b"QTY+21:40", b"QTY+21:41", 1)
    e = pipeline.receive(Incoming(data=changed, channel="folder", filename="po-fourth.edi"))
    assert pipeline.process(e.transmission_id).queued == 1
