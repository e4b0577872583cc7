"""One file can fail only itself (issue 13): any exception, the time limit, a record the
store refuses and a payload that keeps crashing the process each fail that transmission
alone, named; a store outage fails nothing and leaves the batch to be taken again."""

import datetime as dt
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.config import Identifiers, Partner, PartnerDirectory, UnbIdentifier
from gateway.core import deadline
from gateway.core.canonical import Order
from gateway.core.errors import EdifactSyntaxError, Position, StoreError
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming, MappedDocument, Sender
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Parsed:
    senders: list
    numbers: list
    format: str = "trust"
    standard: str | None = None
    warnings: list = field(default_factory=list)

    def summary(self):
        return f"{len(self.numbers)} message(s)"

    def documents(self, *, partner, transmission_id, filename, known_refs=None):
        out = []
        for n in self.numbers:
            doc = Order.model_validate(dict(
                message_id=f"{partner.id}-{n}", partner=partner.id, order_number=n,
                lines=[dict(quantity=Decimal(1))],
                source=dict(format="edifact", standard="EANCOM", version="D96A", mapping="t")))
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


class TrustReader:
    """b'T|sender|PO1,PO2' reads; b'T|CRASH' raises the way a reader bug does (the UNZ
    digit count's ValueError); b'T|LOOP' loops until the time limit stops it;
    b'T|BROKEN|sender' is a truncated payload whose envelope named its sender."""

    format = "trust"

    def sniff(self, head):
        return head.startswith(b"T|")

    def parse(self, data, *, filename):
        parts = data.decode().strip().split("|")
        if parts[1] == "CRASH":
            int("9" * 5000)  # ValueError: exceeds the limit for integer string conversion
        if parts[1] == "LOOP":
            while True:
                deadline.check()
        if parts[1] == "BROKEN":
            exc = EdifactSyntaxError("file ends inside a segment",
                                     position=Position(segment=3, line=3, tag="BGM"))
            exc.senders = (Sender(parts[2], "14"),)
            raise exc
        return Parsed([Sender(parts[1], "14")], [n for n in parts[2].split(",") if n])


@pytest.fixture
def pipeline(tmp_path):
    partners = PartnerDirectory([
        Partner(id="acme", name="ACME",
                identifiers=Identifiers(unb=[UnbIdentifier(id="111", qualifier="14")])),
    ])
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    return Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                    readers=[TrustReader(), EdifactReader(MappingSet.load(ROOT / "mappings"))],
                    time_limit=2.0)


def receive(p, data: bytes, name: str = "f.edi") -> str:
    return p.receive(Incoming(data=data, channel="folder", channel_ref=None,
                              filename=name)).transmission_id


def test_an_exception_in_a_reader_fails_that_file_alone_and_names_it(pipeline):
    good1 = receive(pipeline, b"T|111|PO1", "a.edi")
    bad = receive(pipeline, b"T|CRASH", "poison.edi")
    good2 = receive(pipeline, b"T|111|PO2", "b.edi")
    outcomes = pipeline.process_many([good1, bad, good2])
    assert [o.status for o in outcomes] == [s.PROCESSED, s.FAILED, s.PROCESSED]
    row = pipeline.store.get_transmission(bad)
    assert row.status == s.FAILED and row.stage == "process"
    assert "ValueError" in row.reason and "integer string conversion" in row.reason
    assert "test_trust_pipeline.py" not in row.reason  # only the gateway's frames are named
    assert pipeline.store.get_transmission(good2).document_count == 1


def test_the_time_limit_fails_a_payload_that_takes_too_long_and_the_others_go_on(pipeline):
    slow = receive(pipeline, b"T|LOOP", "slow.edi")
    good = receive(pipeline, b"T|111|PO3")
    started = time.monotonic()
    outcomes = pipeline.process_many([slow, good])
    assert time.monotonic() - started < 10
    assert [o.status for o in outcomes] == [s.FAILED, s.PROCESSED]
    row = pipeline.store.get_transmission(slow)
    assert row.stage == "process" and "2-second limit" in row.reason


def test_a_broken_payload_is_attributed_to_the_partner_its_envelope_named(pipeline):
    tid = receive(pipeline, b"T|BROKEN|111", "truncated.edi")
    pipeline.process(tid)
    row = pipeline.store.get_transmission(tid)
    assert (row.status, row.partner_id) == (s.FAILED, "acme")
    assert "file ends inside a segment" in row.reason


def test_a_record_the_store_refuses_fails_that_transmission_alone(pipeline, monkeypatch):
    a = receive(pipeline, b"T|111|PO4", "a.edi")
    b = receive(pipeline, b"T|111|PO5", "b.edi")
    real = pipeline.store.record_batch

    def refusing(outcomes):
        if any(o.tid == b for o in outcomes):
            raise sa.exc.IntegrityError("INSERT …", {}, Exception("value too long"))
        return real(outcomes)

    monkeypatch.setattr(pipeline.store, "record_batch", refusing)
    outcomes = pipeline.process_many([a, b])
    assert [o.status for o in outcomes] == [s.PROCESSED, s.FAILED]
    row = pipeline.store.get_transmission(b)
    assert row.status == s.FAILED and row.stage == "record"
    assert "store refused" in row.reason and "IntegrityError" in row.reason
    assert pipeline.store.get_transmission(a).document_count == 1


def test_a_store_outage_fails_nothing_and_escapes_for_the_caller_to_retry(pipeline,
                                                                         monkeypatch):
    tid = receive(pipeline, b"T|111|PO6")

    def away(outcomes):
        raise StoreError("store unavailable: connection refused")

    monkeypatch.setattr(pipeline.store, "record_batch", away)
    with pytest.raises(StoreError):
        pipeline.process_many([tid])
    assert pipeline.store.get_transmission(tid).status == s.RECEIVED
    monkeypatch.undo()
    assert pipeline.resume() == 1
    assert pipeline.store.get_transmission(tid).status == s.PROCESSED


def test_a_payload_that_keeps_failing_at_start_up_is_given_up_not_retried_forever(pipeline):
    bad = receive(pipeline, b"T|111|PO7", "crashes-the-process.edi")
    good = receive(pipeline, b"T|111|PO8")
    # Three starts that never finished (the process died on it each time).
    for _ in range(pipeline.max_attempts):
        pipeline.store.start_attempts([bad])
    assert pipeline.resume() == 2
    row = pipeline.store.get_transmission(bad)
    assert row.status == s.FAILED and row.stage == "process"
    assert "started 3 times without finishing" in row.reason
    assert pipeline.store.get_transmission(good).status == s.PROCESSED
    assert pipeline.store.transmissions_to_process() == []


def test_after_a_crash_the_batch_goes_one_by_one_and_only_the_poison_is_given_up(pipeline):
    """A batch started once without finishing: its files are taken alone, so the innocent
    ones finish and only the one that keeps killing the process is given up."""
    tids = [receive(pipeline, f"T|111|PO{n}".encode(), f"{n}.edi") for n in range(20, 25)]
    poison = tids[2]
    pipeline.store.start_attempts(tids)  # the batch the process died on

    def dies_on_poison(batch, real=pipeline.process_many):
        if poison in batch:
            raise SystemExit("killed")  # the process dies: nothing after it runs
        return real(batch)

    pipeline.process_many = dies_on_poison
    for _ in range(pipeline.max_attempts + 1):  # restarts
        pipeline._started.clear()  # a new process remembers no start of its own
        try:
            pipeline.resume()
        except SystemExit:
            pass
    statuses = {t: pipeline.store.get_transmission(t).status for t in tids}
    assert statuses.pop(poison) == s.FAILED
    assert set(statuses.values()) == {s.PROCESSED}


INVOIC_WITHOUT_UNH = (
    b"UNA:+.? 'UNB+UNOC:3+111:14+5412345000013:14+200101:1000+IC1'"
    b"BGM+380+INV1+9'DTM+137:20200101:102'UNT+3+M1'UNZ+1+IC1'"
)


def test_an_interchange_that_gives_no_document_is_failed_with_its_reason(pipeline):
    tid = receive(pipeline, INVOIC_WITHOUT_UNH, "no-unh.edi")
    outcome = pipeline.process(tid)
    row = pipeline.store.get_transmission(tid)
    assert outcome.status == row.status == s.FAILED, row
    assert row.document_count == 0 and row.reason
    assert row.partner_id == "acme"


def test_only_received_transmissions_count_their_starts(pipeline):
    tid = receive(pipeline, b"T|111|PO9")
    assert pipeline.store.start_attempts([tid]) == {tid: 1}
    pipeline.process(tid)
    assert pipeline.store.start_attempts([tid]) == {}


def test_a_missing_archived_payload_fails_that_transmission_not_the_batch(pipeline):
    gone = receive(pipeline, b"T|111|PO30", "gone.edi")
    good = receive(pipeline, b"T|111|PO31", "good.edi")
    row = pipeline.store.get_transmission(gone)
    pipeline.archive.path_of(row.sha256).unlink()
    outcomes = pipeline.process_many([gone, good])
    assert [o.status for o in outcomes] == [s.FAILED, s.PROCESSED]
    row = pipeline.store.get_transmission(gone)
    assert row.stage == "archive" and "missing" in row.reason


def test_store_outages_during_resume_count_no_start_against_good_files(pipeline, monkeypatch):
    tids = [receive(pipeline, f"T|111|PO4{n}".encode(), f"r{n}.edi") for n in range(3)]
    real = pipeline.store.record_batch
    outages = [pipeline.max_attempts + 1]

    def flaky(records):
        if outages[0]:
            outages[0] -= 1
            raise sa.exc.OperationalError("INSERT …", {}, Exception("database is locked"))
        return real(records)

    monkeypatch.setattr(pipeline.store, "record_batch", flaky)
    for _ in range(10):  # the supervisor runs resume again after each outage
        try:
            pipeline.resume()
            break
        except StoreError:
            pass
        except sa.exc.OperationalError:
            pass
    assert {pipeline.store.get_transmission(t).status for t in tids} == {s.PROCESSED}


def test_the_sweep_takes_what_was_left_received_outside_the_queue(pipeline, monkeypatch):
    tid = receive(pipeline, b"T|111|PO50", "left.edi")
    assert pipeline.sweep(older_than=60) == 0  # too recent: someone may be on it
    later = pipeline.store.get_transmission(tid).received_at + dt.timedelta(seconds=61)
    monkeypatch.setattr("gateway.core.clock.now", lambda: later)
    assert pipeline.sweep(older_than=60) == 1
    assert pipeline.store.get_transmission(tid).status == s.PROCESSED
