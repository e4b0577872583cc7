"""The store behaves the same on SQLite and PostgreSQL."""

import hashlib

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.store import schema as s
from gateway.store.db import LogFilter, NewDocument, Store
from gateway.store.migrate import current


def doc(n: int, mid: str | None = None) -> NewDocument:
    return NewDocument(doc_type="order", schema_version="edigw.order/1", business_number=f"PO{n}",
                       interchange_ref="IC1", message_ref=str(n), message_id=mid or f"m{n}",
                       payload=b'{"order_number": "PO%d"}' % n, routing_key="order.acme")


def received(store: Store, data: bytes = b"x") -> str:
    return store.record_received(channel="folder", channel_ref="/in/a.edi", filename="a.edi",
                                 size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_migrations_create_exactly_the_declared_schema(store_url):
    """After upgrade the database matches schema.py: a migration was not forgotten."""
    store = Store.from_url(store_url)
    assert current(store.engine) == "0016"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), s.metadata)
    assert diff == []
    Store.from_url(store_url)  # a second upgrade is a no-op


def test_transmission_lifecycle_to_published(store_url):
    """Received, processed with documents in the outbox, then published and closed."""
    store = Store.from_url(store_url)
    tid = received(store)
    assert store.get_transmission(tid).status == s.RECEIVED
    assert [t.id for t in store.transmissions_to_process()] == [tid]
    queued = store.record_processed(tid, partner_id="acme", fmt="edifact", standard="EANCOM",
                                    docs=[doc(1), doc(2)])
    assert queued == 2 and store.outbox_size() == 2
    t = store.get_transmission(tid)
    assert (t.status, t.partner_id, t.document_count) == (s.PROCESSED, "acme", 2)
    items = store.pending_outbox(10)
    assert [i.message_id for i in items] == ["m1", "m2"]
    assert store.pending_outbox(10, exclude=[items[0].outbox_id])[0].message_id == "m2"
    store.mark_published([items[0].outbox_id])
    assert store.get_transmission(tid).status == s.PROCESSED
    store.mark_published([items[1].outbox_id])
    assert store.get_transmission(tid).status == s.PUBLISHED
    assert store.outbox_size() == 0
    events = [e["event"] for e in store.events(tid)]
    assert events == ["received", "processed", "published"]
    assert {d.status for d in store.documents_of(tid)} == {s.DOC_PUBLISHED}


def test_same_message_id_twice_is_a_duplicate_document(store_url):
    """A document whose message_id was stored before gets no second outbox row."""
    store = Store.from_url(store_url)
    t1 = received(store, b"a")
    store.record_processed(t1, partner_id="acme", fmt="edifact", standard=None, docs=[doc(1)])
    t2 = received(store, b"b")
    queued = store.record_processed(t2, partner_id="acme", fmt="edifact", standard=None,
                                    docs=[doc(1), doc(2)])
    assert queued == 1
    assert [d.status for d in store.documents_of(t2)] == [s.DOC_DUPLICATE, s.PENDING]
    assert "duplicate-documents" in [e["event"] for e in store.events(t2)]


def test_unroutable_and_failures_are_recorded(store_url):
    """A returned message is UNROUTABLE and leaves the outbox; a nack counts an attempt."""
    store = Store.from_url(store_url)
    tid = received(store)
    store.record_processed(tid, partner_id="acme", fmt="edifact", standard=None, docs=[doc(1), doc(2)])
    a, b = store.pending_outbox(10)
    store.record_publish_failure([b.outbox_id], "nack")
    store.mark_unroutable(a.outbox_id, "NO_ROUTE")
    assert store.outbox_size() == 1
    assert store.pending_outbox(10)[0].attempts == 1
    assert "unroutable" in [e["event"] for e in store.events(tid)]


def test_failed_and_log_filters(store_url):
    """Failed transmissions keep stage and reason; the log filters by partner and status."""
    store = Store.from_url(store_url)
    t1 = received(store, b"1")
    store.record_failed(t1, stage="parse", reason="UNT count wrong at line 3", partner_id="acme")
    t2 = received(store, b"2")
    t = store.get_transmission(t1)
    assert (t.status, t.stage, t.reason) == (s.FAILED, "parse", "UNT count wrong at line 3")
    assert [r.id for r in store.log(LogFilter(status="failed"))] == [t1]
    assert [r.id for r in store.log(LogFilter(partner="acme"))] == [t1]
    assert {r.id for r in store.log(LogFilter())} == {t1, t2}
    assert store.get_transmission(t1[:20]).id == t1  # unique prefix
    assert store.counts_by_status() == {s.FAILED: 1, s.RECEIVED: 1}


def test_group_commit_of_many_receipts(store_url):
    """record_received_many and mark_acknowledged_many commit a batch at once."""
    store = Store.from_url(store_url)
    rows = [dict(channel="folder", channel_ref=f"/in/{i}", filename=f"{i}.edi", size=1,
                 sha256=hashlib.sha256(bytes([i])).hexdigest()) for i in range(5)]
    ids = store.record_received_many(rows)
    store.mark_acknowledged_many(ids, "moved")
    with store.engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(s.transmissions)
                         .where(s.transmissions.c.acknowledged_at.is_not(None))).scalar_one()
    assert n == 5
    assert store.unacknowledged_from("folder", "/in/1", rows[1]["sha256"]) is None
