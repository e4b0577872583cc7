"""The tracker's detection rules, each on its own, over real pipeline data on SQLite with
the gateway's clock played by the test."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.config import (
    Cadence,
    Identifiers,
    Partner,
    PartnerDirectory,
    TrackerRules,
    TrackerSettings,
    UnbIdentifier,
)
from gateway.core.clock import FixedClock, set_clock
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.tracker import rules
from gateway.tracker.rules import TrackerContext, describe_gap, find_gaps, position_in

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
GOUDEN = "5401234000012"  # the sample's UNB sender
BETA = "5412345000013"
UNKNOWN = "5499999999994"
#: Tuesday 1 December 2026, 08:00 in Paris.
TUESDAY_8H = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)


@functools.cache
def mappings() -> MappingSet:
    return MappingSet.load(ROOT / "mappings")


def partner(pid: str, unb: str, **tracker) -> Partner:
    return Partner(id=pid, name=pid.title(),
                   identifiers=Identifiers(unb=[UnbIdentifier(id=unb, qualifier="14")]),
                   tracker=TrackerRules(**tracker))


def default_partners() -> PartnerDirectory:
    return PartnerDirectory([partner("gouden", GOUDEN),
                             partner("beta", BETA, cadence=[Cadence(doc_type="order")])])


def order(ref: str, po: str, *, sender: str = GOUDEN, bad: bool = False) -> bytes:
    """The EANCOM sample order with another interchange reference, order number and sender;
    ``bad`` gives it an impossible order date (month 13), which fails the mapping."""
    data = SAMPLE.replace(b"ICR0042", ref.encode()).replace(b"PO-2024-0107", po.encode())
    data = data.replace(f"UNB+UNOC:3+{GOUDEN}".encode(), f"UNB+UNOC:3+{sender}".encode())
    if bad:
        data = data.replace(b"DTM+137:20240305:102'", b"DTM+137:20241305:102'")
    return data


def interchange(ref: str, message_refs: list[str], *, sender: str = GOUDEN) -> bytes:
    """One interchange holding the sample's message once per message reference."""
    text = SAMPLE.decode()
    head, rest = text.split("UNH+107+", 1)
    body, _tail = rest.split("UNT+37+107'", 1)
    messages = "".join(f"UNH+{m}+{body.replace('PO-2024-0107', f'PO-{ref}-{m}')}UNT+37+{m}'\n"
                       for m in message_refs)
    head = head.replace("ICR0042", ref).replace(f"+{GOUDEN}:", f"+{sender}:")
    return f"{head}{messages}UNZ+{len(message_refs)}+{ref}'\n".encode()


class World:
    """A pipeline over SQLite, partners, the tracker's settings and the test's clock."""

    def __init__(self, tmp_path: Path, clock: FixedClock, partners: PartnerDirectory,
                 settings: TrackerSettings) -> None:
        self.clock = clock
        self.partners = partners
        self.settings = settings
        self.store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
        self.pipeline = Pipeline(store=self.store, archive=Archive(tmp_path / "archive",
                                                                   fsync=False),
                                 partners=partners,
                                 readers=[EdifactReader(mappings())])
        self.n = 0

    def send(self, data: bytes) -> str:
        """Receive and process ``data`` now; returns the transmission id."""
        self.n += 1
        r = self.pipeline.receive(Incoming(data=data, channel="folder",
                                           filename=f"in-{self.n}.edi"))
        self.pipeline.process(r.transmission_id)
        return r.transmission_id

    def publish_all(self) -> None:
        """What the publisher does once the broker confirmed everything pending."""
        self.store.mark_published([i.outbox_id for i in self.store.pending_outbox(10_000)])

    def erp(self, tid: str, status: str, reason: str | None = None) -> None:
        """What the ERP acknowledgement consumer records for a transmission's documents."""
        with self.store._begin() as conn:
            conn.execute(s.documents.update().where(s.documents.c.transmission_id == tid)
                         .values(erp_status=status, erp_at=self.clock.current,
                                 erp_reason=reason))

    def ctx(self) -> TrackerContext:
        return TrackerContext(store=self.store, settings=self.settings, partners=self.partners,
                              now=self.clock.current)


@pytest.fixture
def clock():
    c = FixedClock(TUESDAY_8H)
    set_clock(c)
    yield c
    set_clock(None)


@pytest.fixture
def world(tmp_path, clock):
    w = World(tmp_path, clock, default_partners(), TrackerSettings(timezone="Europe/Paris"))
    yield w
    w.store.close()


def keys(conditions) -> list[str]:
    return sorted(c.key for c in conditions)


# -- failures ---------------------------------------------------------------------------

def test_failed_mapping_is_one_failure_with_stage_reason_file_and_position(world):
    """An order whose date is month 13 gives failure:<partner>:<stage> naming stage, file and
    position."""
    tid = world.send(order("1042", "PO-2", bad=True))
    [c] = rules.failures(world.ctx())
    assert (c.kind, c.key, c.partner_id) == ("failure", "failure:gouden:validate", "gouden")
    assert c.detail["transmission_id"] == tid and c.detail["files"] == 1
    assert c.detail["stage"] == "validate" and c.detail["filename"] == "in-1.edi"
    assert c.detail["position"].startswith("line 5, column 1, segment 5 (DTM)")
    assert "month 13" in c.summary and "in-1.edi" in c.summary


def test_failure_is_gone_once_a_reprocessing_attempt_succeeded(world):
    """A later attempt replaying the failed transmission (reprocess_of) clears it."""
    tid = world.send(order("1042", "PO-2", bad=True))
    retry = world.send(order("1042", "PO-2"))
    assert keys(rules.failures(world.ctx())) == ["failure:gouden:validate"]
    with world.store._begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == retry)
                     .values(reprocess_of=tid))
    assert rules.failures(world.ctx()) == []


def test_failure_outside_the_lookback_stays_while_its_alert_is_open(world):
    """A failure found a while ago is still a condition after the look-back, until it is
    cleared, so its alert is not resolved for its age."""
    tid = world.send(order("1042", "PO-2", bad=True))
    from gateway.tracker.alerts import AlertBook
    AlertBook(world.store).reconcile(rules.failures(world.ctx()), kinds_checked=["failure"])
    world.clock.advance(days=8)
    [c] = rules.failures(world.ctx())
    assert c.key == "failure:gouden:validate" and c.detail["transmission_ids"] == [tid]


def test_one_partners_failures_at_one_stage_are_one_condition_with_their_count(world):
    """Three files of gouden failing validation: one condition counting 3, naming the
    latest file; reprocessing one of them successfully leaves 2."""
    tids = [world.send(order(str(1042 + n), f"PO-{n}", bad=True)) for n in range(3)]
    [c] = rules.failures(world.ctx())
    assert c.key == "failure:gouden:validate" and c.detail["files"] == 3
    assert c.detail["transmission_id"] == tids[-1] and c.summary.startswith(
        "3 file(s) from gouden failed at validate; latest:")
    retry = world.send(order("1042", "PO-0"))
    with world.store._begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == retry)
                     .values(reprocess_of=tids[0]))
    [c] = rules.failures(world.ctx())
    assert c.detail["files"] == 2 and c.detail["transmission_ids"] == tids[1:]


def test_unknown_sender_is_a_quarantine_condition_about_no_partner(world):
    """A UNB sender no profile knows: kind quarantine, keyed by the sender's UNB id and
    qualifier (quarantine:sender:unb:14:<id>), no partner."""
    tid = world.send(order("77", "PO-Q", sender=UNKNOWN))
    [c] = rules.failures(world.ctx())
    assert (c.kind, c.key, c.partner_id) == ("quarantine", f"quarantine:sender:unb:14:{UNKNOWN}",
                                             None)
    assert c.detail["files"] == 1 and c.detail["transmission_ids"] == [tid]


def test_many_files_of_one_unknown_sender_are_one_condition_with_their_count(world):
    """Twelve files from one unknown sender, over two days: one condition counting 12, with
    the first and last received; another unknown sender is a condition of its own."""
    first = world.send(order("77", "PO-Q0", sender=UNKNOWN))
    for n in range(1, 12):
        world.clock.advance(hours=4)
        last = world.send(order(str(77 + n), f"PO-Q{n}", sender=UNKNOWN))
    world.send(order("90", "PO-Z", sender="5499999999987"))
    found = {c.key: c for c in rules.failures(world.ctx())}
    assert sorted(found) == [f"quarantine:sender:unb:14:{x}"
                             for x in ("5499999999987", UNKNOWN)]
    c = found[f"quarantine:sender:unb:14:{UNKNOWN}"]
    assert c.detail["files"] == 12 and c.summary.startswith("12 file(s) from unknown sender UNB")
    times = {r.id: r.received_at for r in (world.store.get_transmission(first),
                                           world.store.get_transmission(last))}
    assert c.detail["first_received"] == times[first].isoformat()
    assert c.detail["last_received"] == times[last].isoformat()


def test_unknown_sender_alert_lasts_past_the_lookback_until_no_file_is_held(world):
    """A sender's files held for 10 days still make its condition (the alert is not resolved
    for its age); once each is no longer QUARANTINED the condition is gone."""
    tids = [world.send(order(str(77 + n), f"PO-Q{n}", sender=UNKNOWN)) for n in range(3)]
    world.clock.advance(days=10)
    [c] = rules.failures(world.ctx())
    assert c.detail["files"] == 3
    with world.store._begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id.in_(tids[:2]))
                     .values(status="PUBLISHED", partner_id="gouden"))
    [c] = rules.failures(world.ctx())
    assert c.detail["files"] == 1 and c.detail["transmission_ids"] == [tids[2]]
    with world.store._begin() as conn:
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tids[2])
                     .values(status="PUBLISHED", partner_id="gouden"))
    assert rules.failures(world.ctx()) == []


def test_failures_off_for_a_partner(tmp_path, clock):
    """failures = false in the partner's [tracker] silences the rule for it."""
    w = World(tmp_path, clock, PartnerDirectory([partner("gouden", GOUDEN, failures=False)]),
              TrackerSettings())
    w.send(order("1042", "PO-2", bad=True))
    assert rules.failures(w.ctx()) == []


def test_position_in_reason():
    """The position is taken from a reason as the pipeline words it."""
    assert position_in("bad date at line 5, column 1, segment 5 (DTM), element DTM/C507/2380, "
                       "message 107") == "line 5, column 1, segment 5 (DTM), element DTM/C507/2380"
    assert position_in("no position here") is None


# -- untransmitted ----------------------------------------------------------------------

def test_document_in_the_outbox_past_the_threshold_is_untransmitted(world):
    """15 minutes (the default) in the outbox: nothing at 14, one condition at 16."""
    world.send(order("1041", "PO-1"))
    world.clock.advance(minutes=14)
    assert rules.untransmitted(world.ctx()) == []
    world.clock.advance(minutes=2)
    [c] = rules.untransmitted(world.ctx())
    assert (c.key, c.detail["count"]) == ("untransmitted:gouden", 1)
    assert c.detail["oldest"].startswith("2026-12-01T07:00")


def test_unroutable_document_is_one_condition_per_partner(world):
    """Two documents returned by the broker: one unroutable:<partner> with both."""
    world.send(order("1041", "PO-1"))
    world.send(order("1043", "PO-3"))
    for item in world.store.pending_outbox(10):
        world.store.mark_unroutable(item.outbox_id, "NO_ROUTE")
    [c] = rules.untransmitted(world.ctx())
    assert (c.kind, c.key, c.detail["count"]) == ("unroutable", "unroutable:gouden", 2)


# -- ERP acknowledgements ---------------------------------------------------------------

def test_published_order_without_erp_acknowledgement_is_overdue_after_the_sla(world):
    """Published at 07:00 with a 30 min SLA: nothing at 07:29, erp-overdue at 07:31; an
    acknowledged one never."""
    tid = world.send(order("1041", "PO-1"))
    acked = world.send(order("1043", "PO-3"))
    world.publish_all()
    world.erp(acked, s.ERP_ACCEPTED)
    world.clock.advance(minutes=29)
    assert rules.erp_overdue(world.ctx()) == []
    world.clock.advance(minutes=2)
    [c] = rules.erp_overdue(world.ctx())
    [doc] = world.store.documents_of(tid)
    assert c.key == f"erp-overdue:{doc.id}" and c.detail["sla_minutes"] == 30
    assert "order PO-1 from gouden" in c.summary


def test_erp_sla_zero_turns_the_rule_off_for_that_type(tmp_path, clock):
    """erp_ack_minutes = {order = 0} expects no acknowledgement of orders."""
    w = World(tmp_path, clock, PartnerDirectory([
        partner("gouden", GOUDEN, erp_ack_minutes={"order": 0})]), TrackerSettings())
    w.send(order("1041", "PO-1"))
    w.publish_all()
    clock.advance(hours=5)
    assert rules.erp_overdue(w.ctx()) == []
    assert rules.erp_sla_minutes(TrackerRules(erp_ack_minutes={"*": 45}), "invoice") == 45


def test_erp_rejection_is_a_condition_with_its_reason(world):
    """REJECTED by the ERP: erp-rejected:<document> with the ERP's reason in the summary."""
    tid = world.send(order("1041", "PO-1"))
    world.publish_all()
    world.erp(tid, s.ERP_REJECTED, "unknown article 4020000012342")
    [c] = rules.erp_rejected(world.ctx())
    assert c.key.startswith("erp-rejected:") and "unknown article 4020000012342" in c.summary
    assert rules.erp_overdue(world.ctx()) == []


# -- gaps -------------------------------------------------------------------------------

def test_find_gaps_between_numeric_references():
    """1041, 1042, 1045: 1043 and 1044 missing; the order of arrival does not matter."""
    assert find_gaps(["1045", "1041", "1042"], 100) == [("1042", "1045", ["1043", "1044"])]
    assert describe_gap("1045", ["1043", "1044"]) == (
        "received 1045 while expecting 1043: 1043 and 1044 missing")


def test_find_gaps_ignores_restarts_wraparound_and_words():
    """A jump beyond the window (wrap-around 99999 -> 1, a restart) and non-numeric
    references are no gaps."""
    assert find_gaps(["99998", "99999", "1", "2"], 100) == []
    assert find_gaps(["5", "500"], 100) == []
    assert find_gaps(["ICR0042", "A7", "7", "8"], 100) == []


def test_find_gaps_keeps_zero_padding():
    """Padded references give padded missing ones."""
    assert find_gaps(["000041", "000043"], 10) == [("000041", "000043", ["000042"])]


def test_interchange_gap_from_the_pipeline(world):
    """Interchanges 1041, 1042 and 1045 from one partner: one gap 1043-1044."""
    for ref in ("1041", "1042", "1045"):
        world.send(order(ref, f"PO-{ref}"))
    world.send(order("2001", "PO-B", sender=BETA))  # another partner's numbering
    [c] = rules.gaps(world.ctx())
    assert c.key == "gap:gouden:1043-1044"
    assert c.summary.endswith("received 1045 while expecting 1043: 1043 and 1044 missing")
    assert c.detail["missing"] == ["1043", "1044"]
    world.send(order("1043", "PO-1043"))
    assert keys(rules.gaps(world.ctx())) == ["gap:gouden:1044"]


def test_gaps_off_for_a_partner(tmp_path, clock):
    """gaps = false: no gap conditions for that partner."""
    w = World(tmp_path, clock, PartnerDirectory([partner("gouden", GOUDEN, gaps=False)]),
              TrackerSettings())
    for ref in ("1041", "1045"):
        w.send(order(ref, f"PO-{ref}"))
    assert rules.gaps(w.ctx()) == []


def test_message_reference_gap_within_an_interchange(tmp_path, clock):
    """With message_gaps, messages 1, 2 and 5 of one interchange: 3 and 4 missing."""
    w = World(tmp_path, clock, PartnerDirectory([partner("gouden", GOUDEN, message_gaps=True)]),
              TrackerSettings())
    w.send(interchange("1041", ["1", "2", "5"]))
    [c] = rules.gaps(w.ctx())
    assert c.key == "message-gap:gouden:1041:3-4" and c.detail["level"] == "message"
    w2 = World(tmp_path / "b", clock, default_partners(), TrackerSettings())
    w2.send(interchange("1041", ["1", "2", "5"]))
    assert rules.gaps(w2.ctx()) == []  # message_gaps is off by default


# -- silence and volume -----------------------------------------------------------------

def test_partner_silent_on_a_business_day_after_its_deadline(world):
    """beta orders every weekday before 10:00 Paris: nothing at 09:59, silence at 10:01."""
    world.send(order("1041", "PO-1"))  # the gateway is receiving (from gouden)
    world.clock.set(dt.datetime(2026, 12, 1, 8, 59, tzinfo=dt.UTC))
    assert rules.silence(world.ctx()) == []
    world.clock.advance(minutes=2)
    [c] = rules.silence(world.ctx())
    assert (c.key, c.partner_id) == ("silence:beta:order:2026-12-01", "beta")
    assert c.detail["deadline"] == "2026-12-01T09:00:00+00:00"


def test_late_order_clears_the_silence(world):
    """An order from beta after the deadline ends the condition."""
    world.send(order("1041", "PO-1"))
    world.clock.set(dt.datetime(2026, 12, 1, 11, 0, tzinfo=dt.UTC))
    assert len(rules.silence(world.ctx())) == 1
    world.send(order("1", "PO-B1", sender=BETA))
    assert rules.silence(world.ctx()) == []


def test_no_silence_on_a_holiday_or_a_weekend_or_before_the_gateway_received(tmp_path, clock):
    """A holiday, a Saturday and days before the first transmission are never silent."""
    clock.set(dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC))  # Friday
    w = World(tmp_path, clock, default_partners(),
              TrackerSettings(holidays=[dt.date(2026, 11, 30)]))
    assert rules.silence(w.ctx()) == []  # nothing received at all yet
    w.send(order("1041", "PO-1"))
    clock.set(dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC))  # Monday, a holiday here
    assert keys(rules.silence(w.ctx())) == ["silence:beta:order:2026-11-27"]
    # Friday counts (received from 07:00 Paris, before its 10:00 deadline); Sat/Sun/holiday not


def test_volume_drop_against_the_same_weekday(tmp_path, clock):
    """Six orders on each of four Tuesdays, two on the last one: a drop; four is none."""
    clock.set(dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC))  # the gateway starts receiving
    w = World(tmp_path, clock, PartnerDirectory([partner("gouden", GOUDEN)]), TrackerSettings())
    w.send(order("1", "PO-START"))
    n = 10
    for week in (3, 10, 17, 24):
        clock.set(dt.datetime(2026, 11, week, 8, 0, tzinfo=dt.UTC))
        for _ in range(6):
            n += 1
            w.send(order(str(n), f"PO-{n}"))
    clock.set(dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC))
    for _ in range(2):
        n += 1
        w.send(order(str(n), f"PO-{n}"))
    assert rules.volume_drop(w.ctx()) == []  # Tuesday is not over yet
    clock.set(dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC))
    [c] = rules.volume_drop(w.ctx())
    assert c.key == "volume-drop:gouden:2026-12-01"
    assert (c.detail["count"], c.detail["average"]) == (2, 6.0)
    clock.set(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    for _ in range(2):
        n += 1
        w.send(order(str(n), f"PO-{n}"))
    clock.set(dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC))
    assert rules.volume_drop(w.ctx()) == []  # 4 >= 0.5 x 6


# -- duplicates -------------------------------------------------------------------------

def test_same_order_number_in_two_interchanges_is_a_duplicate(world):
    """PO-1 sent twice in different interchanges: duplicate:gouden:order:PO-1 listing both."""
    a = world.send(order("1041", "PO-1"))
    b = world.send(order("1042", "PO-1"))
    [c] = rules.duplicates(world.ctx())
    assert c.key == "duplicate:gouden:order:PO-1"
    assert [t["transmission_id"] for t in c.detail["transmissions"]] == [a, b]


def test_duplicate_numbers_accept_policy_says_nothing(tmp_path, clock):
    """duplicate_numbers = accept: no condition."""
    w = World(tmp_path, clock, PartnerDirectory([
        partner("gouden", GOUDEN, duplicate_numbers="accept")]), TrackerSettings())
    w.send(order("1041", "PO-1"))
    w.send(order("1042", "PO-1"))
    assert rules.duplicates(w.ctx()) == []


def test_duplicate_outside_the_window_is_none(tmp_path, clock):
    """duplicate_window_days = 2: the same number three days later is no duplicate."""
    w = World(tmp_path, clock, PartnerDirectory([
        partner("gouden", GOUDEN, duplicate_window_days=2)]), TrackerSettings())
    w.send(order("1041", "PO-1"))
    clock.advance(days=3)
    w.send(order("1042", "PO-1"))
    assert rules.duplicates(w.ctx()) == []


def test_same_interchange_reference_twice_is_a_duplicate(world):
    """Interchange reference 1041 reused for another order: duplicate:gouden:interchange:1041."""
    world.send(order("1041", "PO-1"))
    world.send(order("1041", "PO-9"))
    assert keys(rules.duplicates(world.ctx())) == ["duplicate:gouden:interchange:1041"]


# -- channels and certificates ----------------------------------------------------------

def test_channel_failing_repeatedly_and_certificates_expiring(world):
    """3 failures in a row (the default) make channel:<name>; 2 do not; an expiring and an
    unreadable certificate make certificate:<id>; a healthy one nothing."""
    now = world.clock.current
    with world.store._begin() as conn:
        conn.execute(s.channel_health.insert(), [
            dict(channel="sftp:gouden", kind="sftp", partner_id="gouden", updated_at=now,
                 consecutive_failures=3, last_error="connection refused"),
            dict(channel="imap:mail", kind="imap", partner_id=None, updated_at=now,
                 consecutive_failures=2, last_error="timeout")])
        conn.execute(s.certificates.insert(), [
            dict(id="as2:gouden:1", owner="gouden", purpose="as2-partner", checked_at=now,
                 not_before=now - dt.timedelta(days=300), not_after=now + dt.timedelta(days=5)),
            dict(id="as2:own:edigw", owner="own", purpose="as2-own", checked_at=now,
                 not_before=now - dt.timedelta(days=30), not_after=now + dt.timedelta(days=300)),
            dict(id="as2:beta:1", owner="beta", purpose="as2-partner", checked_at=now,
                 not_before=None, not_after=None, error="file not found: beta.pem")])
    found = rules.channels(world.ctx())
    assert keys(found) == ["certificate:as2:beta:1", "certificate:as2:gouden:1",
                           "channel:sftp:gouden"]
    by_key = {c.key: c for c in found}
    assert by_key["channel:sftp:gouden"].partner_id == "gouden"
    assert by_key["certificate:as2:gouden:1"].detail["state"] == "expiring"
    assert by_key["certificate:as2:beta:1"].detail["state"] == "unreadable"


def test_every_rule_runs_on_an_empty_store(world):
    """No data, no conditions, no errors."""
    ctx = world.ctx()
    assert [c for rule in rules.ALL_RULES for c in rule(ctx)] == []
    with world.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.alerts)).scalar() == 0


# -- processing stalled -------------------------------------------------------------------

def test_received_transmission_waiting_with_nothing_processed_is_processing_stalled(world):
    """A transmission left RECEIVED past stalled_after while nothing is processed gives one
    processing-stalled condition; it is gone once processing moves again."""
    world.send(order("ICR1", "PO-1"))  # processed at 08:00
    world.clock.advance(minutes=1)
    r = world.pipeline.receive(Incoming(data=order("ICR2", "PO-2"), channel="folder",
                                        filename="stuck.edi"))
    world.clock.advance(seconds=90)
    assert rules.processing_stalled(world.ctx()) == []  # not yet past stalled_after (120 s)
    world.clock.advance(seconds=60)
    found = rules.processing_stalled(world.ctx())
    assert keys(found) == ["processing-stalled"]
    assert found[0].detail["waiting"] == 1 and "processing stalled" in found[0].summary
    world.pipeline.process(r.transmission_id)
    assert rules.processing_stalled(world.ctx()) == []


def test_old_received_transmission_while_others_progress_is_not_stalled(world):
    """A backlog that is being worked through (something processed within stalled_after)
    is not a stall, however old its oldest transmission."""
    world.pipeline.receive(Incoming(data=order("ICR3", "PO-3"), channel="folder",
                                    filename="waiting.edi"))
    world.clock.advance(minutes=5)
    world.send(order("ICR4", "PO-4"))
    world.clock.advance(seconds=30)
    assert rules.processing_stalled(world.ctx()) == []


def test_processing_stalled_alert_opens_and_closes_when_processing_moves(world):
    """The tracker opens one processing-stalled alert while processing is stuck and resolves
    it at the first check after processing moved again."""
    from gateway.tracker.engine import Tracker

    tracker = Tracker(world.settings, world.partners, world.store, stalled_after=60)
    r = world.pipeline.receive(Incoming(data=order("ICR5", "PO-5"), channel="folder",
                                        filename="stuck.edi"))
    world.clock.advance(seconds=90)
    opened = tracker.check(world.clock.current).opened
    assert [a.key for a in opened] == ["processing-stalled"]
    world.pipeline.process(r.transmission_id)
    world.clock.advance(seconds=10)
    resolved = tracker.check(world.clock.current).resolved
    assert [a.key for a in resolved] == ["processing-stalled"]


@pytest.mark.parametrize(("reason", "channel", "key"), [
    ("unknown sender id 5499999000009 (qualifier 14): no partner profile lists it under "
     "identifiers.unb", "sftp", "unb:14:5499999000009"),
    ("unknown sender id 5499999000009: no partner profile lists it under identifiers.unb",
     "sftp", "unb:5499999000009"),
    ("unknown sender (gln 4012345000009, vat DE123): no partner profile lists these "
     "identifiers", "folder", "gln:4012345000009"),
    ("unknown sender (phone +33612345678): no partner profile lists these identifiers",
     "sms", "phone:+33612345678"),
    ("unknown sender (0192 (NO:ORG) 987654321, vat NO987654321MVA): no partner profile "
     "lists these identifiers", "folder", "iso6523:0192:987654321"),
    # a malformed id names nobody to adopt: the files are grouped by their channel
    ("unknown sender (siret 73282932000075 (malformed: wrong SIRET check digit (Luhn))): no "
     "partner profile lists these identifiers", "inbox-c", "channel:inbox-c"),
    ("mail from Orders@Stranger.example: no partner profile lists this address", "email",
     "email:orders@stranger.example"),
    ("channel names partner 'acme', which has no profile", "sftp-acme", "partner:acme"),
    ("payload names no sender and the channel is not partner-specific (ORDERS)",
     "inbox-b", "channel:inbox-b"),
])
def test_the_sender_of_a_quarantined_file_is_named_by_its_identity(reason, channel, key):
    """The UNB id and qualifier, a scheme's id (GLN, phone), the mail's From, else the
    channel (an SFTP account or a folder): the key of its sender's one alert."""
    from gateway.store.records import TransmissionRow
    from gateway.tracker.rules import sender_of

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    row = TransmissionRow(
        id="T1", channel=channel, channel_ref=None, partner_id=None, filename="f.edi", size=1,
        sha256="0" * 64, received_at=now, acknowledged_at=None, status="QUARANTINED",
        stage="identify", reason=reason, format="edifact", standard=None, document_count=0,
        duplicate_of=None, updated_at=now)
    assert sender_of(row).key == key


def test_an_unknown_senders_alert_an_operator_resolved_opens_again_for_a_newer_file(world):
    """Resolved by an operator, the sender's alert stays closed while no new file comes; a
    file arriving after opens it again (one alert, counting all its held files)."""
    from gateway.tracker.alerts import AlertBook

    book = AlertBook(world.store)
    world.send(order("77", "PO-Q0", sender=UNKNOWN))
    [alert] = book.reconcile(rules.failures(world.ctx()), kinds_checked=["quarantine"]).opened
    world.clock.advance(minutes=5)
    book.resolve(alert.id, "otto", "asked them")
    world.clock.advance(minutes=5)
    assert book.reconcile(rules.failures(world.ctx()), kinds_checked=["quarantine"]).opened == []
    world.send(order("78", "PO-Q1", sender=UNKNOWN))
    [again] = book.reconcile(rules.failures(world.ctx()), kinds_checked=["quarantine"]).opened
    assert again.key == alert.key and again.id != alert.id and again.detail["files"] == 2
