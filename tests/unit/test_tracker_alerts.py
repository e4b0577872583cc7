"""Alerts: one per condition, their lifecycle, the events they write for edi.events, and
the tracker's check over the issue's scenario with a clock the test moves."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from gateway.config import TrackerSettings
from gateway.store import schema as s
from gateway.store.records import LogFilter
from gateway.tracker import rules
from gateway.tracker.alerts import (
    AlertBook,
    AlertTransitionError,
    Condition,
    UnknownAlert,
    routing_key,
)
from gateway.tracker.engine import Tracker
from gateway.tracker.rules import Rule

# ``clock`` is a fixture: imported so that pytest finds it here too.
from tests.unit.test_tracker_rules import BETA, World, clock, default_partners, order  # noqa: F401

GAP = Condition("gap", "acme", "gap:acme:1043-1044", "received 1045 while expecting 1043",
                {"missing": ["1043", "1044"]})
FAILURE = Condition("failure", "acme", "failure:T1", "T1 failed at map", {"stage": "map"})


@pytest.fixture
def world(tmp_path, clock):  # noqa: F811
    w = World(tmp_path, clock, default_partners(), TrackerSettings(timezone="Europe/Paris"))
    yield w
    w.store.close()


@pytest.fixture
def book(world):
    return AlertBook(world.store)


def events(store) -> list[dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(s.event_outbox).order_by(s.event_outbox.c.id)).all()
    return [dict(routing_key=r.routing_key, message_id=r.message_id,
                 payload=json.loads(r.payload)) for r in rows]


# -- reconcile --------------------------------------------------------------------------

def test_new_condition_opens_one_alert_and_one_event(world, book):
    """A condition seen for the first time: an open alert and alert.opened on
    alert.gap.acme with a stable message id."""
    result = book.reconcile([GAP], kinds_checked=["gap"])
    [alert] = result.opened
    assert (alert.status, alert.key, alert.occurrences) == ("open", GAP.key, 1)
    assert alert.detail == {"missing": ["1043", "1044"]}
    [ev] = events(world.store)
    assert ev["routing_key"] == "alert.gap.acme"
    assert ev["message_id"] == f"alert-{alert.id}-opened"
    assert ev["payload"]["event"] == "alert.opened"
    assert ev["payload"]["alert"]["key"] == GAP.key and ev["payload"]["alert"]["partner"] == "acme"
    assert ev["payload"]["alert"]["opened_at"] == world.clock.current.isoformat()


def test_same_condition_at_the_next_check_refreshes_without_announcing(world, book):
    """Seen again: the same alert, occurrences 2, last_seen_at moved, no second event."""
    book.reconcile([GAP], kinds_checked=["gap"])
    world.clock.advance(minutes=1)
    result = book.reconcile([GAP], kinds_checked=["gap"])
    assert result.opened == [] and result.resolved == []
    [alert] = result.refreshed
    assert alert.occurrences == 2 and alert.last_seen_at == world.clock.current
    assert len(events(world.store)) == 1 and len(book.list()) == 1


def test_condition_gone_resolves_its_alert_by_the_tracker(world, book):
    """The gap is filled: the alert is resolved by "tracker" with alert.resolved."""
    [opened] = book.reconcile([GAP, FAILURE], kinds_checked=["gap", "failure"]).opened[:1]
    world.clock.advance(minutes=1)
    result = book.reconcile([FAILURE], kinds_checked=["gap", "failure"])
    [alert] = result.resolved
    assert (alert.id, alert.status, alert.resolved_by) == (opened.id, "resolved", "tracker")
    ev = events(world.store)[-1]
    assert (ev["message_id"], ev["payload"]["event"]) == (f"alert-{alert.id}-resolved",
                                                         "alert.resolved")


def test_kind_not_checked_is_left_alone(world, book):
    """A kind whose rule did not run (it raised) keeps its alerts open."""
    book.reconcile([GAP], kinds_checked=["gap"])
    result = book.reconcile([], kinds_checked=["failure"])
    assert result.resolved == [] and book.list()[0].status == "open"


def test_acknowledged_alert_stays_acknowledged_and_resolves_when_gone(world, book):
    """Acknowledged: refreshed silently while the condition lasts, resolved when gone."""
    [alert] = book.reconcile([GAP], kinds_checked=["gap"]).opened
    acked = book.acknowledge(alert.id, "marie", note="calling the partner")
    assert (acked.status, acked.acknowledged_by, acked.note) == ("acknowledged", "marie",
                                                                 "calling the partner")
    [again] = book.reconcile([GAP], kinds_checked=["gap"]).refreshed
    assert again.status == "acknowledged"
    assert [e["payload"]["event"] for e in events(world.store)] == ["alert.opened",
                                                                    "alert.acknowledged"]
    [gone] = book.reconcile([], kinds_checked=["gap"]).resolved
    assert gone.status == "resolved" and gone.acknowledged_by == "marie"


def test_operator_resolution_is_not_reopened_while_the_fact_lasts(world, book):
    """An operator resolved a failure; the same failure at the next check opens nothing."""
    [alert] = book.reconcile([FAILURE], kinds_checked=["failure"]).opened
    book.resolve(alert.id, "marie", note="partner resends")
    result = book.reconcile([FAILURE], kinds_checked=["failure"])
    assert result.opened == [] and len(book.list()) == 1


def test_live_condition_reopens_after_an_operator_resolved_it(world, book):
    """A channel still failing is the present state: resolving it by hand opens a new alert
    at the next check (acknowledge it instead)."""
    channel = Condition("channel", None, "channel:sftp:x", "failing")
    [alert] = book.reconcile([channel], kinds_checked=["channel"]).opened
    book.resolve(alert.id, "marie")
    [reopened] = book.reconcile([channel], kinds_checked=["channel"]).opened
    assert reopened.id != alert.id and reopened.partner_id is None
    assert events(world.store)[-1]["routing_key"] == "alert.channel.gateway"


def test_resolved_by_the_tracker_and_back_is_a_new_alert(world, book):
    """A condition that cleared and came back is a new alert."""
    [first] = book.reconcile([GAP], kinds_checked=["gap"]).opened
    book.reconcile([], kinds_checked=["gap"])
    [second] = book.reconcile([GAP], kinds_checked=["gap"]).opened
    assert second.id != first.id


# -- operator actions and reading -------------------------------------------------------

def test_unknown_alert_and_wrong_transitions_are_errors(world, book):
    """No such id; acknowledging twice; acting on a resolved alert."""
    [alert] = book.reconcile([GAP], kinds_checked=["gap"]).opened
    with pytest.raises(UnknownAlert) as exc:
        book.acknowledge(999, "marie")
    assert exc.value.alert_id == 999
    book.acknowledge(alert.id, "marie")
    with pytest.raises(AlertTransitionError) as bad:
        book.acknowledge(alert.id, "paul")
    assert (bad.value.status, bad.value.action) == ("acknowledged", "acknowledged")
    book.resolve(alert.id, "paul")
    with pytest.raises(AlertTransitionError):
        book.resolve(alert.id, "paul")
    with pytest.raises(UnknownAlert):
        book.get(999)
    assert [e["message_id"] for e in events(world.store)] == [
        f"alert-{alert.id}-opened", f"alert-{alert.id}-acknowledged", f"alert-{alert.id}-resolved"]


def test_list_filters_and_the_mailer_view(world, book):
    """list by status, partner and kind; unmailed until mark_mailed."""
    book.reconcile([GAP, FAILURE, Condition("silence", "beta", "silence:beta:order:x", "s")],
                   kinds_checked=["gap", "failure", "silence"])
    assert {a.key for a in book.list(partner="acme")} == {GAP.key, FAILURE.key}
    assert [a.key for a in book.list(kind="silence")] == ["silence:beta:order:x"]
    gap = book.list(kind="gap")[0]
    book.acknowledge(gap.id, "marie")
    assert [a.id for a in book.list(status="acknowledged")] == [gap.id]
    assert len(book.list(status=("open", "acknowledged"))) == 3
    assert len(book.unmailed()) == 3
    book.mark_mailed([gap.id])
    assert gap.id not in {a.id for a in book.unmailed()}
    assert book.get(gap.id).mailed_at == world.clock.current


def test_routing_key_names_the_gateway_when_no_partner():
    """alert.<kind>.<partner>, or .gateway."""
    assert routing_key("certificate", None) == "alert.certificate.gateway"
    assert routing_key("gap", "acme") == "alert.gap.acme"


# -- the tracker ------------------------------------------------------------------------

def test_a_rule_that_raises_leaves_its_alerts_open(world):
    """A broken rule is logged; its kinds are not checked, so its open alerts stay."""
    def broken(ctx):
        raise RuntimeError("boom")

    book = AlertBook(world.store)
    book.reconcile([GAP], kinds_checked=["gap"])
    tracker = Tracker(world.settings, world.partners, world.store,
                      rules=[Rule("gaps", ("gap",), broken), rules.failures])
    result = tracker.check()
    assert result.resolved == [] and book.list()[0].status == "open"


def test_scenario_gap_failure_overdue_and_silence_each_once(world):
    """The issue's scenario: gouden sends interchanges 1041, 1042 (its order fails mapping)
    and 1045; 1041's order is acknowledged by the ERP, 1045's never; beta (orders every
    business day before 10:00 Paris) sends nothing on Tuesday. At 10:30 the alerts are
    exactly one gap 1043-1044, one failure, one overdue acknowledgement and one silence; a
    second check opens nothing; once 1043 and 1044 come the gap is resolved."""
    tracker = Tracker(world.settings, world.partners, world.store)
    ok = world.send(order("1041", "PO-1041"))
    failed = world.send(order("1042", "PO-1042", bad=True))
    waiting = world.send(order("1045", "PO-1045"))
    world.clock.advance(minutes=1)
    world.publish_all()
    world.erp(ok, s.ERP_ACCEPTED)
    world.clock.set(dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC))  # 10:30 in Paris

    result = tracker.check()
    [doc] = world.store.documents_of(waiting)
    assert sorted(a.key for a in result.opened) == sorted([
        "gap:gouden:1043-1044", "failure:gouden:validate", f"erp-overdue:{doc.id}",
        "silence:beta:order:2026-12-01"])
    by_kind = {a.kind: a for a in result.opened}
    assert by_kind["gap"].summary.endswith(
        "received 1045 while expecting 1043: 1043 and 1044 missing")
    assert by_kind["silence"].partner_id == "beta"
    assert sorted(e["routing_key"] for e in events(world.store)) == [
        "alert.erp-overdue.gouden", "alert.failure.gouden", "alert.gap.gouden",
        "alert.silence.beta"]

    world.clock.advance(minutes=5)
    again = tracker.check()
    assert again.opened == [] and again.resolved == [] and len(again.refreshed) == 4
    assert len(events(world.store)) == 4

    world.send(order("1043", "PO-1043"))
    world.send(order("1044", "PO-1044"))
    world.publish_all()
    for tid in (r.id for r in world.store.log(LogFilter(limit=100)) if r.id not in (ok, failed, waiting)):
        world.erp(tid, s.ERP_ACCEPTED)
    world.clock.advance(minutes=1)
    filled = tracker.check()
    assert [a.key for a in filled.resolved] == ["gap:gouden:1043-1044"]
    assert filled.opened == []
    open_keys = {a.key for a in AlertBook(world.store).list(status="open")}
    assert "gap:gouden:1043-1044" not in open_keys and len(open_keys) == 3
    world.send(order("1", "PO-B1", sender=BETA))  # beta's order, late: the silence ends
    assert [a.kind for a in tracker.check().resolved] == ["silence"]

