"""The tracker's scenario, as the issue checks it, with every server real and a clock the test
controls: partner gouden sends interchanges 1041, 1042 and 1045 on Tuesday morning; 1042's
order fails mapping; 1041's order is published and the ERP never acknowledges it, 1045's is
acknowledged over edi.acks; partner beta, expected to order every business day before 10:00
(Paris), sends nothing. At 10:30 the alerts are exactly a gap 1043-1044, one failure, one
overdue acknowledgement and one silence, each once; they are on edi.events and in one mail to
the operators. A second check announces nothing more. Then explain gives the right verdict
for each order and for an order number that never existed.

Real: RabbitMQ (documents published with confirms, acknowledgements consumed, alerts
published), the store (SQLite and PostgreSQL), an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import json
import time
import uuid
from collections.abc import Iterator
from email import policy

import pika
import pytest

from gateway.bus.acks import AckConsumer, encode_ack
from gateway.bus.events import EventPublisher, wait_published
from gateway.bus.publisher import OutboxPublisher
from gateway.bus.topology import declare_topology
from gateway.channels.email.mailer import Mailer
from gateway.channels.email.settings import SmtpSettings
from gateway.config import (
    Cadence,
    DocumentSettings,
    EdifactPolicy,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    TrackerRules,
    TrackerSettings,
    UnbIdentifier,
)
from gateway.core import clock as gwclock
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.mapping import MappingSet
from gateway.formats.registry import default_readers as _readers
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.tracker.alerts import AlertBook
from gateway.tracker.engine import Tracker
from gateway.tracker.explain import explain
from gateway.tracker.notify import mail_new_alerts
from tests.integration.mailtest import ROOT, SmtpPeer
from tests.integration.rabbit import delete_topology, unique_settings

pytestmark = pytest.mark.integration

SAMPLE = (ROOT / "mappings/edifact/eancom-orders-d96a.sample.edi").read_bytes()
GOUDEN, BETA = "5401234000012", "5412345000013"
TUESDAY_8H = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)  # 08:00 in Paris
TUESDAY_1030 = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


def order(ref: str, po: str, *, bad: bool = False) -> bytes:
    data = SAMPLE.replace(b"ICR0042", ref.encode()).replace(b"PO-2024-0107", po.encode())
    if bad:  # an impossible order date: the mapping cannot make a date of it
        data = data.replace(b"DTM+137:20240305:102'", b"DTM+137:20241305:102'")
    return data


def partners() -> PartnerDirectory:
    def unb(i: str) -> Identifiers:
        return Identifiers(unb=[UnbIdentifier(id=i, qualifier="14")])
    orders = [DocumentSettings(type="order", format="edifact")]
    return PartnerDirectory([
        # validation off: the bad date is found by the mapping, not by validation
        Partner(id="gouden", name="De Gouden Aar", identifiers=unb(GOUDEN), documents=orders,
                edifact=EdifactPolicy(validation="off")),
        Partner(id="beta", name="Beta Retail", identifiers=unb(BETA), documents=orders,
                tracker=TrackerRules(cadence=[Cadence(doc_type="order", before="10:00")])),
    ])


@pytest.fixture
def clock() -> Iterator[gwclock.FixedClock]:
    c = gwclock.FixedClock(TUESDAY_8H)
    gwclock.set_clock(c)
    yield c
    gwclock.set_clock(None)


@pytest.fixture
def names(rabbit_url) -> Iterator[dict]:
    tag = uuid.uuid4().hex[:8]
    bus = unique_settings(rabbit_url, tag=f"scn-{tag}", bindings=("order.#",))
    declare_topology(bus)
    tracker = TrackerSettings(timezone="Europe/Paris", events_exchange=f"edi.events.scn-{tag}",
                              acks_exchange=f"edi.acks.scn-{tag}",
                              acks_queue=f"edigw.acks.scn-{tag}")
    ops_queue = f"ops.alerts.scn-{tag}"
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    ch = conn.channel()
    ch.exchange_declare(tracker.events_exchange, exchange_type="topic", durable=True)
    ch.queue_declare(ops_queue, durable=True)
    ch.queue_bind(ops_queue, tracker.events_exchange, "alert.#")
    conn.close()
    yield dict(bus=bus, tracker=tracker, ops_queue=ops_queue)
    delete_topology(bus)
    conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    ch = conn.channel()
    for q in (ops_queue, tracker.acks_queue):
        ch.queue_delete(q)
    for x in (tracker.events_exchange, tracker.acks_exchange):
        ch.exchange_delete(x)
    conn.close()


def _drain(url: str, queue: str, expected: int, timeout: float = 15) -> list:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, p, b = ch.basic_get(queue, auto_ack=True)
        if m is None:
            if len(got) >= expected:
                time.sleep(0.3)  # and nothing more comes
                if ch.basic_get(queue, auto_ack=False)[0] is None:
                    break
                continue
            time.sleep(0.05)
            continue
        got.append((m.routing_key, p.message_id, json.loads(b)))
    conn.close()
    return got


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_gap_failure_overdue_and_silence_once_each_then_explained(
        tmp_path, store_url, rabbit_url, names, clock):
    store = Store.from_url(store_url)
    archive = Archive(tmp_path / "archive", fsync=False)
    directory = partners()
    settings = GatewaySettings(tracker=names["tracker"])
    pipeline = Pipeline(store=store, archive=archive, partners=directory,
                        readers=_readers(MappingSet.load(ROOT / "mappings")))
    publisher = OutboxPublisher(store, names["bus"], declare=True)
    acks = AckConsumer(store, rabbit_url, names["tracker"])
    events = EventPublisher(store, rabbit_url, names["tracker"].events_exchange, every=0.1)
    peer = SmtpPeer().start()
    publisher.start()
    acks.start()
    events.start()
    try:
        sent = {}
        for ref, po, bad in (("1041", "PO-1041", False), ("1042", "PO-1042", True),
                             ("1045", "PO-1045", False)):
            r = pipeline.receive(Incoming(data=order(ref, po, bad=bad), channel="folder",
                                          filename=f"orders-{ref}.edi"))
            sent[po] = (r.transmission_id, pipeline.process(r.transmission_id))
            clock.advance(minutes=2)
        assert sent["PO-1042"][1].status == s.FAILED and sent["PO-1042"][1].stage == "map"
        publisher.wake()
        assert publisher.wait_idle(15)
        _wait(lambda: store.outbox_size() == 0, 15, "both orders confirmed by the broker")

        # The ERP takes 1045's order and says so; 1041's it never acknowledges.
        [doc_1045] = store.documents_of(sent["PO-1045"][0])
        [doc_1041] = store.documents_of(sent["PO-1041"][0])
        conn = pika.BlockingConnection(pika.URLParameters(rabbit_url))
        conn.channel().basic_publish(
            names["tracker"].acks_exchange, "ack.order",
            encode_ack(doc_1045.message_id, "accepted"),
            pika.BasicProperties(content_type="application/json", delivery_mode=2))
        conn.close()
        _wait(lambda: store.documents_of(sent["PO-1045"][0])[0].erp_status == s.ERP_ACCEPTED,
              15, "the ERP's acknowledgement recorded")

        clock.set(TUESDAY_1030)
        tracker = Tracker(names["tracker"], directory, store)
        result = tracker.check()
        assert sorted(a.key for a in result.opened) == sorted([
            "gap:gouden:1043-1044", "failure:gouden:map",
            f"erp-overdue:{doc_1041.id}", "silence:beta:order:2026-12-01"])
        gap = next(a for a in result.opened if a.kind == "gap")
        assert "received 1045 while expecting 1043: 1043 and 1044 missing" in gap.summary

        # On edi.events, once each, and in one mail to the operators.
        assert wait_published(events, 15)
        published = _drain(rabbit_url, names["ops_queue"], 4)
        assert sorted(k for k, _, _ in published) == [
            "alert.erp-overdue.gouden", "alert.failure.gouden", "alert.gap.gouden",
            "alert.silence.beta"]
        assert {b["event"] for _, _, b in published} == {"alert.opened"}
        mailer = Mailer(SmtpSettings(host="127.0.0.1", port=peer.port,
                                     operators=["ops@wholesaler.test"]))
        book = AlertBook(store)
        assert asyncio.run(mail_new_alerts(book, mailer)) == 4
        [raw] = peer.messages
        mail = email.message_from_bytes(raw, policy=policy.default)
        assert mail["To"] == "ops@wholesaler.test"
        assert mail["Subject"].startswith("[edigw] 4 new alerts")
        body = mail.get_content()
        for alert in result.opened:
            assert alert.summary in body

        # The next check, a quarter of an hour later: nothing new, nothing announced.
        clock.advance(minutes=15)
        again = tracker.check()
        assert again.opened == [] and again.resolved == [] and len(again.refreshed) == 4
        assert asyncio.run(mail_new_alerts(book, mailer)) == 0 and len(peer.messages) == 1
        assert wait_published(events, 5)
        assert _drain(rabbit_url, names["ops_queue"], 0, timeout=1) == []

        # Explain each order, and one that never existed.
        def verdict(po: str, partner: str = "gouden"):
            return explain(store, directory, settings, partner=partner, number=po,
                           doc_type="order", archive=archive)

        failed = verdict("PO-1042")
        assert failed.verdict == "failed"
        assert "map" in failed.summary and "20241305" in failed.summary + " ".join(
            f.text for f in failed.evidence)
        waiting = verdict("PO-1041")
        assert waiting.verdict == "waiting-erp" and "overdue" in waiting.summary.lower()
        acked = verdict("PO-1045")
        assert acked.verdict == "acknowledged"
        never = verdict("PO-1043")
        assert never.verdict == "never-received"
        texts = " ".join(f.text for f in never.evidence)
        assert "1043" in texts and "folder" in texts, texts
        silent = verdict("PO-77", partner="beta")
        assert silent.verdict == "never-received"
        assert any(f.kind in ("silence", "alert") for f in silent.evidence), silent.evidence
    finally:
        events.stop()
        acks.stop()
        publisher.stop()
        peer.stop()
        store.close()
