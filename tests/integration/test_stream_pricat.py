"""A large PRICAT processed as a stream and published in parts (issue 3, item 6), against the
real store (SQLite and PostgreSQL) and the machine's RabbitMQ.

The streaming threshold, window and slice size are lowered so that a 2 MB file takes the
streamed path and is sliced many times; the broker message limit is lowered to 200 kB so
that the list goes out in many parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bench_stream import SUPPLIER, write_pricat
from gateway.bus import OutboxPublisher
from gateway.bus.settings import BusSettings
from gateway.bus.topology import declare_topology
from gateway.config import Identifiers, Partner, PartnerDirectory, UnbIdentifier
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store
from tests.integration.rabbit import delete_topology, drain, unique_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def price_lists(rabbit_url: str) -> Iterator[BusSettings]:
    """An exchange and a queue bound to price lists, for this module only."""
    settings = unique_settings(rabbit_url, bindings=("price-list.#",))
    declare_topology(settings)
    yield settings
    delete_topology(settings)


@pytest.fixture
def pipeline(store_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    store = Store.from_url(store_url)
    partners = PartnerDirectory([Partner(
        id="streamer", name="Streaming Supplier",
        identifiers=Identifiers(unb=[UnbIdentifier(id=SUPPLIER, qualifier="14")]))])
    p = Pipeline(store=store, archive=Archive(tmp_path / "archive", fsync=False),
                 partners=partners, readers=[EdifactReader(MappingSet.load(ROOT / "mappings"))],
                 stream_above=256 * 1024, max_message_bytes=MAX_BYTES)
    p.stream_window = 32 * 1024
    p.slice_segments = 3000
    yield p
    store.close()


def _ingest(pipeline: Pipeline, path: Path):
    receipt = pipeline.receive(Incoming(data=b"", channel="cli", filename=path.name, path=path))
    return receipt.transmission_id, pipeline.process(receipt.transmission_id)


def _publish(store: Store, settings: BusSettings) -> None:
    publisher = OutboxPublisher(store, settings)
    publisher.start()
    try:
        publisher.wake()
        assert publisher.wait_idle(60), f"outbox still holds {store.outbox_size()} rows"
    finally:
        publisher.stop(timeout=5)


def test_large_pricat_is_streamed_and_published_in_parts(pipeline, price_lists, tmp_path):
    """A 2 MB price list ends PUBLISHED in parts: each at most the size limit, all with the
    same price-list id and number, numbered 1..N with part_count N, items adding up to the
    LIN count, every item once and in order."""
    path = tmp_path / "pricat.edi"
    items = write_pricat(path, size=2_000_000)
    assert path.stat().st_size > pipeline.stream_above
    tid, outcome = _ingest(pipeline, path)
    assert outcome.reason is None and outcome.status == s.PROCESSED
    assert outcome.documents == outcome.queued > 5
    events = [e["event"] for e in pipeline.store.events(tid)]
    assert events[:2] == ["received", "parsed"] and "processed" in events

    _publish(pipeline.store, price_lists)
    received = drain(price_lists.url, price_lists.queues[0][0])
    assert len(received) == outcome.queued
    bodies = [json.loads(m.body) for m in received]
    assert max(len(m.body) for m in received) <= MAX_BYTES
    assert {b["message_id"] for b in bodies} == {bodies[0]["message_id"]}
    assert {b["price_list_number"] for b in bodies} == {"PL-STREAM-1"}
    assert {b["part_count"] for b in bodies} == {len(bodies)}
    bodies.sort(key=lambda b: b["part_number"])
    assert [b["part_number"] for b in bodies] == list(range(1, len(bodies) + 1))
    lines = [int(item["line_number"]) for b in bodies for item in b["items"]]
    assert lines == list(range(1, items + 1))
    # The AMQP message id is per part, so a consumer dropping repeats keeps every part.
    assert len({m.properties.message_id for m in received}) == len(received)
    assert pipeline.store.get_transmission(tid).status == s.PUBLISHED


def test_wrong_unt_count_at_the_end_publishes_no_part(pipeline, price_lists, tmp_path):
    """A price list whose UNT count is wrong (known only at its very end) leaves its parts
    FAILED and the outbox empty; the transmission says why."""
    path = tmp_path / "pricat-bad.edi"
    write_pricat(path, size=2_000_000, unt_delta=3)
    tid, outcome = _ingest(pipeline, path)
    assert outcome.status == s.FAILED and outcome.queued == 0
    assert "UNT segment count" in (outcome.reason or "")
    assert pipeline.store.outbox_size() == 0
    documents = pipeline.store.documents_of(tid)
    assert len(documents) > 5 and {d.status for d in documents} == {s.DOC_FAILED}
    assert all("UNT segment count" in (d.reason or "") for d in documents)
    row = pipeline.store.get_transmission(tid)
    assert row.status == s.FAILED and "UNT segment count" in (row.reason or "")

    _publish(pipeline.store, price_lists)
    assert drain(price_lists.url, price_lists.queues[0][0], idle=0.5) == []
