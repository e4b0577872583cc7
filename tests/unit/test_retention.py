"""Retention: raw payloads purged after the partner's retention, metadata and documents kept."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings, TrackerRules, TrackerSettings
from gateway.core import clock
from gateway.tracker import retention
from gateway.tracker.explain import explain
from tests.unit.test_explain import START, Gateway, order


@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def gw(tmp_path, when):
    """Gouden keeps its payloads 30 days; the defaults (unknown senders …) 10."""
    g = Gateway(tmp_path, TrackerRules(retention_days=30))
    g.settings = GatewaySettings(tracker=TrackerSettings(
        defaults=TrackerRules(retention_days=10)))
    return g


def purge(gw, **kw):
    return retention.purge(gw.store, gw.archive, gw.settings, gw.partners, **kw)


def test_payload_older_than_retention_is_purged_and_metadata_kept(gw, when):
    """Day 0 and day 20 orders, purged on day 35: only the first file goes; its
    transmission, timeline, documents and canonical JSON stay, marked purged."""
    old = gw.send(order("1041", "PO-1"))
    gw.publish()
    when.advance(days=20)
    recent = gw.send(order("1042", "PO-2"))
    when.advance(days=15)
    old_row = gw.store.get_transmission(old)
    result = purge(gw)
    assert [p.transmission_id for p in result.purged] == [old]
    assert result.files_deleted == 1 and result.bytes_freed == old_row.size
    assert old_row.sha256 not in gw.archive
    assert gw.store.get_transmission(recent).sha256 in gw.archive
    t = gw.store.get_transmission(old)
    assert t.purged_at == when.current and t.status == "PUBLISHED"
    event = gw.store.events(old)[-1]
    assert event["event"] == "purged" and "after 30 day(s) of retention" in event["detail"]
    doc = gw.store.documents_of(old)[0]
    assert gw.store.document_payload(doc.id)["order_number"] == "PO-1"
    e = explain(gw.store, gw.partners, gw.settings, number="PO-1")
    assert e.verdict == "waiting-erp"
    assert "raw payload purged" in e.evidence[0].text


def test_purge_twice_does_nothing_the_second_time(gw, when):
    """Idempotent: nothing left to purge, no second event."""
    old = gw.send(order("1041", "PO-1"))
    when.advance(days=31)
    assert len(purge(gw).purged) == 1
    again = purge(gw)
    assert again.purged == [] and again.files_deleted == 0
    assert [e["event"] for e in gw.store.events(old)].count("purged") == 1


def test_bytes_shared_with_a_repeat_within_retention_stay_until_it_expires(gw, when):
    """The same file on day 0 and day 20: purged on day 35, the first keeps its archived
    file for the repeat; on day 55 the repeat goes too and the file is deleted."""
    first = gw.send(order("1041", "PO-1"))
    when.advance(days=20)
    repeat = gw.send(order("1041", "PO-1"))
    sha = gw.store.get_transmission(first).sha256
    assert gw.store.get_transmission(repeat).duplicate_of == first
    when.advance(days=15)
    (done,) = purge(gw).purged
    assert (done.transmission_id, done.deleted, done.shared_with) == (first, False, repeat)
    assert sha in gw.archive
    assert f"archived bytes kept: also those of {repeat}" in gw.store.events(first)[-1]["detail"]
    when.advance(days=20)
    (done,) = purge(gw).purged
    assert (done.transmission_id, done.deleted) == (repeat, True)
    assert sha not in gw.archive


def test_both_copies_expired_in_one_run_free_the_file_once(gw, when):
    """Original and repeat both past retention: one file deleted, counted once."""
    first = gw.send(order("1041", "PO-1"))
    gw.send(order("1041", "PO-1"))
    when.advance(days=31)
    result = purge(gw)
    assert len(result.purged) == 2 and result.files_deleted == 1
    assert result.bytes_freed == gw.store.get_transmission(first).size


def test_quarantined_payload_follows_the_defaults(gw, when):
    """An unknown sender's file goes after the defaults' 10 days; Gouden's stays (30)."""
    stranger = gw.send(order("77", "PO-9", sender=b"5499999999999"))
    gouden = gw.send(order("1041", "PO-1"))
    when.advance(days=11)
    result = purge(gw)
    assert [p.transmission_id for p in result.purged] == [stranger]
    assert result.retention == {"gouden": 30, "quiet": 10, None: 10}
    assert gw.store.get_transmission(gouden).purged_at is None


def test_without_retention_payloads_are_kept_for_ever(tmp_path, when):
    """No retention_days in the profile nor the defaults: nothing is purged, however old."""
    g = Gateway(tmp_path)
    g.send(order("1041", "PO-1"))
    g.send(order("77", "PO-9", sender=b"5499999999999"))
    when.advance(days=3650)
    kept = retention.purge(g.store, g.archive, GatewaySettings(), g.partners)
    assert kept.purged == [] and kept.retention == {}


def test_dry_run_reports_without_touching_anything(gw, when):
    """A dry run lists what would go, deletes nothing and records nothing."""
    old = gw.send(order("1041", "PO-1"))
    when.advance(days=31)
    planned = purge(gw, dry_run=True)
    assert [(p.transmission_id, p.deleted) for p in planned.purged] == [(old, True)]
    assert gw.store.get_transmission(old).sha256 in gw.archive
    assert gw.store.get_transmission(old).purged_at is None
    assert [p.as_dict() for p in purge(gw).purged] == [p.as_dict() for p in planned.purged]


def test_never_processed_transmission_is_not_purged(gw, when):
    """A transmission still RECEIVED (waiting after a crash) keeps its payload."""
    from gateway.core.ports import Incoming

    receipt = gw.pipeline.receive(Incoming(data=order("1041", "PO-1"), channel="folder"))
    when.advance(days=40)
    assert purge(gw).purged == []
    assert gw.store.get_transmission(receipt.transmission_id).sha256 in gw.archive


def test_reprocess_of_a_purged_transmission_is_refused_clearly(gw, when):
    """ensure_payload says when the payload was purged."""
    tid = gw.send(order("1042", "PO-2", bad=True))
    retention.ensure_payload(gw.store.get_transmission(tid))  # still there: no error
    when.advance(days=31)
    purge(gw)
    with pytest.raises(retention.PayloadPurged, match="payload purged on 2024-04-05 07:00 UTC"):
        retention.ensure_payload(gw.store.get_transmission(tid))
