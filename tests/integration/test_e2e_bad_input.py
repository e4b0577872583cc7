"""End to end: bad files dropped into a running ``edigw serve`` are kept, explained, and survived.

One service (SQLite store, the machine's RabbitMQ under unique names) runs for the module;
each test drops its bad file, checks the transmission ends FAILED or QUARANTINED with its
stage and a reason a person can act on (naming the line and segment where there is one),
that the raw bytes are in the archive and the file was moved to processed/ (the receive
itself succeeded), then drops a good order and checks it is published: the service goes on.

The same bad files also go through ``Gateway.open(...).pipeline`` on SQLite and PostgreSQL.
The bad files are synthetic, built from the good one-order template in ``e2e.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.app import Gateway
from gateway.config import load_settings
from gateway.core.ports import Incoming
from tests.integration.e2e import ACME_UNB, Service, Workspace, order_file

pytestmark = pytest.mark.integration

_numbers = itertools.count(1)


def _good(n: int) -> str:
    return order_file(n).decode("ascii")


@dataclass(frozen=True)
class Bad:
    """A bad file and what edigw must say about it."""

    name: str
    data: bytes
    status: str
    stage: str
    reason: str  # a fragment of the reason
    position: str | None  # where in the file, as the reason must name it
    documents: int = 0  # messages read but failed, kept as FAILED documents


def _bad_files() -> dict[str, Bad]:
    good = _good(900001)
    return {b.name: b for b in [
        Bad("empty", b"", "FAILED", "detect", "empty file", None),
        Bad("not-edifact", b"Order from ACME: 40 bags of flour, deliver Tuesday\n", "FAILED",
            "detect", "not a recognised format", "file starts with 'Order from ACME"),
        Bad("truncated", good.replace("UNZ+1+IC00900001'\n", "").encode(), "FAILED", "parse",
            "has no UNZ", "segment 2 (UNB)"),
        Bad("wrong-unt-count", good.replace("UNT+13+", "UNT+15+").encode(), "FAILED", "parse",
            "UNT segment count is 15 but the message has 13 segments", "segment 15 (UNT)", 1),
        Bad("unknown-sender", good.replace("5412345000013:14+", "4000000000006:14+").encode(),
            "QUARANTINED", "identify", "unknown sender id 4000000000006 (qualifier 14)", None),
        Bad("no-order-number", good.replace("BGM+220+PO-900001+9'", "BGM+220'").encode(),
            "FAILED", "validate", "BGM/1004 is missing", "line 4, column 1, segment 4 (BGM)",
            1),
    ]}


BAD = _bad_files()


@pytest.fixture(scope="module")
def running(tmp_path_factory, rabbit_url) -> Iterator[tuple[Workspace, Service]]:
    root = tmp_path_factory.mktemp("e2e-bad")
    with Workspace.create(root / "gw", f"sqlite:///{root / 'edigw.sqlite3'}") as ws:
        ws.add_partner("acme", *ACME_UNB)
        service = ws.serve()
        yield ws, service


def _settle(ws: Workspace, service: Service, filename: str, status: str | None = None):
    row = service.wait_until(lambda: ws.settled(filename), 30, f"{filename} settled")
    if status is not None:
        assert row.status == status, f"{filename}: {row.status} {row.stage} {row.reason}"
    return row


def _good_file_goes_through(ws: Workspace, service: Service) -> None:
    """Drop a good order after the bad one: it is published and its message is on the queue."""
    n = next(_numbers)
    name = f"good-{n:06d}.edi"
    ws.drop(name, order_file(n))
    row = service.wait_until(lambda: (ws.settled(name) if ws.store.outbox_size() == 0 else None),
                             30, f"{name} published")
    assert row.status == "PUBLISHED", f"{name}: {row.status} {row.stage} {row.reason}"
    (message,) = ws.consume(expected=1)
    assert json.loads(message.body)["order_number"] == f"PO-{n:06d}"
    assert message.properties.headers["transmission_id"] == row.id


@pytest.mark.parametrize("kind", list(BAD))
def test_service_keeps_and_explains_a_bad_file_then_goes_on(running, kind):
    """A bad file ends FAILED or QUARANTINED with its stage and a positioned reason, its bytes archived and the file moved to processed, and the next good file is published."""
    ws, service = running
    bad = BAD[kind]
    name = f"{kind}-{next(_numbers)}.edi"
    ws.drop(name, bad.data)
    row = _settle(ws, service, name)

    assert (row.status, row.stage) == (bad.status, bad.stage), row.reason
    assert bad.reason in (row.reason or ""), row.reason
    if bad.position:
        assert bad.position in row.reason, f"reason does not say where: {row.reason}"
    # A message that was read but failed is kept as a FAILED document (findable by its
    # number, never published); a file that could not be read has no document at all.
    docs = ws.store.documents_of(row.id)
    assert row.document_count == len(docs)
    assert all(d.status == "FAILED" and d.reason == row.reason for d in docs)
    assert len(docs) == bad.documents, [d.as_dict() for d in docs]
    sha = hashlib.sha256(bad.data).hexdigest()
    assert row.sha256 == sha and row.size == len(bad.data)
    assert ws.archive_path(sha).read_bytes() == bad.data, "raw payload not in the archive"
    assert (ws.processed / name).read_bytes() == bad.data, "file not moved to processed/"
    assert not (ws.inbox / name).exists() and not (ws.failed / name).exists()
    assert row.acknowledged_at is not None
    events = [e["event"] for e in ws.store.events(row.id)]
    assert events[:2] == ["received", "acknowledged"] and bad.status.lower() in events
    assert ws.consume(idle=0.3) == [], "a bad file put something on the queue"

    _good_file_goes_through(ws, service)
    assert service.alive


def test_service_names_the_sender_of_a_quarantined_file_in_edigw_log(running):
    """`edigw log --json --status QUARANTINED` lists an unknown sender's file with the sender id in its reason."""
    ws, service = running
    name = f"stranger-{next(_numbers)}.edi"
    ws.drop(name, BAD["unknown-sender"].data + b"\n")  # other bytes: not a duplicate
    _settle(ws, service, name, "QUARANTINED")
    rows = [r for r in json.loads(ws.cli("log", "--json", "--status", "QUARANTINED").stdout)
            if r["filename"] == name]
    assert len(rows) == 1 and rows[0]["stage"] == "identify"
    assert "4000000000006" in rows[0]["reason"]


def test_same_file_dropped_twice_is_a_duplicate_and_published_once(running):
    """The same bytes dropped again give a DUPLICATE transmission and no second set of documents on the queue."""
    ws, service = running
    n = next(_numbers)
    data = order_file(n)
    ws.drop("twice.edi", data)
    first = _settle(ws, service, "twice.edi", "PUBLISHED")
    service.wait_until(lambda: ws.store.outbox_size() == 0, 30, "outbox empty")
    ws.drop("twice.edi", data)
    second = service.wait_until(
        lambda: (r if (r := ws.settled("twice.edi")) and r.id != first.id else None), 30,
        "second twice.edi settled")
    assert second.status == "DUPLICATE" and second.duplicate_of == first.id
    assert ws.store.documents_of(second.id) == []
    assert sorted(p.name for p in ws.processed.glob("twice*")) == ["twice.1.edi", "twice.edi"]
    messages = ws.consume(expected=1, idle=1.0)
    assert [json.loads(m.body)["order_number"] for m in messages] == [f"PO-{n:06d}"]
    _good_file_goes_through(ws, service)


def test_same_message_in_another_file_is_not_published_again(running):
    """A file with other bytes but an already received message is processed, its document marked DUPLICATE and not published again."""
    ws, service = running
    n = next(_numbers)
    ws.drop(f"msg-{n}.edi", order_file(n))
    first = _settle(ws, service, f"msg-{n}.edi", "PUBLISHED")
    service.wait_until(lambda: ws.store.outbox_size() == 0, 30, "outbox empty")
    ws.drop(f"msg-{n}-again.edi", order_file(n).replace(b"\n", b"\r\n"))  # same message
    again = _settle(ws, service, f"msg-{n}-again.edi")
    assert again.status != "DUPLICATE" and again.duplicate_of is None
    (doc,) = ws.store.documents_of(again.id)
    (original,) = ws.store.documents_of(first.id)
    assert doc.status == "DUPLICATE" and doc.message_id == original.message_id
    messages = ws.consume(expected=1, idle=1.0)
    assert len(messages) == 1 and messages[0].properties.message_id == original.message_id


def test_line_with_a_wrong_gtin_check_digit_is_not_published_without_its_item(running):
    """An order line whose GTIN fails the check digit either keeps its code or fails the file with the position; it is never published as a line of nothing."""
    ws, service = running
    n = next(_numbers)
    bad_gtin = "4020000012343"  # 4020000012342 with the check digit off by one
    name = f"bad-gtin-{n}.edi"
    ws.drop(name, order_file(n).replace(b"4020000012342:EN", bad_gtin.encode() + b":EN"))
    row = _settle(ws, service, name)
    if row.status == "FAILED":
        assert row.stage == "map" and "segment 10 (LIN)" in row.reason, row.reason
    else:
        service.wait_until(lambda: ws.store.outbox_size() == 0, 30, "outbox empty")
        (doc,) = ws.store.documents_of(row.id)
        line = ws.store.document_payload(doc.id)["lines"][0]
        kept = {v for k, v in line.items() if k not in ("quantity", "line_number", "unit")}
        ws.consume(expected=1)
        assert bad_gtin in kept, (
            f"line 1 was published with no item identification ({line}); the code {bad_gtin} "
            "is only in a warning event")


# -- the same bad files through the pipeline, on both stores --------------------------------------

@pytest.mark.parametrize("kind", list(BAD))
def test_pipeline_keeps_and_explains_a_bad_file(tmp_path, store_url, kind):
    """Gateway.open(...).pipeline receive + process of a bad file gives the same status, stage and reason on SQLite and PostgreSQL, and the next good file is processed."""
    bad = BAD[kind]
    with Workspace.create(tmp_path / "gw", store_url, declare=False) as ws:
        ws.add_partner("acme", *ACME_UNB)
        gw = Gateway.open(load_settings(ws.config))
        try:
            receipt = gw.pipeline.receive(Incoming(data=bad.data, channel="test", channel_ref=None,
                                                   filename=f"{kind}.edi", partner_hint=None))
            out = gw.pipeline.process(receipt.transmission_id)
            assert (out.status, out.stage) == (bad.status, bad.stage)
            assert bad.reason in out.reason and (bad.position is None or bad.position in out.reason)
            row = gw.store.get_transmission(receipt.transmission_id)
            assert (row.status, row.stage, row.reason) == (out.status, out.stage, out.reason)
            assert gw.archive.get(row.sha256) == bad.data

            good = gw.pipeline.receive(Incoming(data=order_file(77), channel="test",
                                                channel_ref=None, filename="good.edi",
                                                partner_hint=None))
            out = gw.pipeline.process(good.transmission_id)
            assert (out.status, out.documents, out.queued) == ("PROCESSED", 1, 1), out
        finally:
            gw.close()
