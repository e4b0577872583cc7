"""The store's decisions on documents sent again, the same on SQLite and PostgreSQL: the
same content under a number received before is a DUPLICATE, other content a CONFLICT (held,
or published under ``on_conflict = "publish"``); failed and rejected documents do not count
as received; a transmission never says PUBLISHED with a document held or rejected."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import sqlalchemy as sa

from gateway.core.canonical import content_digest
from gateway.core.records import Processed
from gateway.store import schema as s
from gateway.store.conflicts import ConflictDesk
from gateway.store.db import NewDocument, Store


def inv(payable: str, mid: str, number: str = "FA-42", **kw) -> NewDocument:
    body = json.dumps({"schema": "edigw.invoice/1", "message_id": mid, "partner": "acme",
                       "invoice_number": number, "totals": {"payable": payable},
                       "source": {"interchange_ref": mid}}, separators=(",", ":")).encode()
    return NewDocument(doc_type="invoice", schema_version="edigw.invoice/1",
                       business_number=number, interchange_ref=mid, message_ref="1",
                       message_id=mid, payload=body, routing_key="invoice.acme",
                       content_sha=content_digest(body), **kw)


def received(store: Store, data: bytes) -> str:
    return store.record_received(channel="folder", channel_ref="/in/x", filename="x",
                                 size=len(data), sha256=hashlib.sha256(data).hexdigest())


def process(store: Store, data: bytes, *docs: NewDocument, **kw) -> str:
    tid = received(store, data)
    store.record_processed(tid, partner_id="acme", fmt="xml", standard=None, docs=list(docs),
                           **kw)
    return tid


def statuses(store: Store, tid: str) -> list[str]:
    return [d.status for d in store.documents_of(tid)]


def test_same_content_under_other_ids_is_a_duplicate_other_content_a_held_conflict(store_url):
    store = Store.from_url(store_url)
    t1 = process(store, b"1", inv("32.99", "m1"))
    t2 = process(store, b"2", inv("32.99", "m2"))  # resent in another interchange
    t3 = process(store, b"3", inv("4918.84", "m3"))  # corrected under the same number
    assert statuses(store, t2) == [s.DOC_DUPLICATE]
    assert statuses(store, t3) == [s.DOC_CONFLICT]
    (first,) = store.documents_of(t1)
    (held,) = store.documents_of(t3)
    assert held.conflict_of == first.id
    assert store.outbox_size() == 1
    assert store.get_transmission(t2).status == s.PUBLISHED
    assert store.get_transmission(t3).status == s.HELD
    (note,) = [e["detail"] for e in store.events(t3) if e["event"] == "conflict"]
    assert "totals.payable 32.99 vs 4918.84" in note and first.id in note
    # The held one is received: its copy is a duplicate of it, not another conflict.
    t4 = process(store, b"4", inv("4918.84", "m4"))
    assert statuses(store, t4) == [s.DOC_DUPLICATE]


def test_on_conflict_publish_queues_the_other_content_with_a_note(store_url):
    store = Store.from_url(store_url)
    process(store, b"1", inv("32.99", "m1"))
    t2 = process(store, b"2", inv("4918.84", "m2", on_conflict="publish"))
    (doc,) = store.documents_of(t2)
    assert doc.status == s.PENDING and doc.conflict_of is not None
    assert store.get_transmission(t2).status == s.PROCESSED
    assert store.outbox_size() == 2
    assert any("published anyway" in e["detail"] for e in store.events(t2)
               if e["event"] == "conflict")


def test_failed_and_rejected_documents_do_not_count_as_received(store_url):
    store = Store.from_url(store_url)
    failed = replace(inv("1.00", "m0"), status=s.DOC_FAILED, stage="map", reason="bad")
    process(store, b"0", failed, failed=True, stage="map", reason="bad")
    t1 = process(store, b"1", inv("32.99", "m1"))
    assert statuses(store, t1) == [s.PENDING]  # not a conflict with the failed one
    t2 = process(store, b"2", inv("4918.84", "m2"))
    (held,) = store.documents_of(t2)
    ConflictDesk(store).reject(held.id, by="olivia", reason="wrong amount")
    assert store.get_transmission(t2).status == s.PARTIAL
    t3 = process(store, b"3", inv("4918.84", "m3"))
    (again,) = store.documents_of(t3)
    assert again.status == s.DOC_CONFLICT  # not a duplicate of the rejected one
    assert again.conflict_of == store.documents_of(t1)[0].id


def test_a_batch_judges_its_documents_against_each_other(store_url):
    """Several transmissions in one commit: the second copy and the changed one are seen
    against the first of the batch."""
    store = Store.from_url(store_url)
    tids = [received(store, bytes([n])) for n in range(3)]
    docs = [inv("32.99", "m1"), inv("32.99", "m2"), inv("4918.84", "m3")]
    queued = store.record_batch([Processed(tid=t, partner_id="acme", fmt="xml",
                                           standard=None, docs=[d], events=[])
                                 for t, d in zip(tids, docs, strict=True)])
    assert queued == [1, 0, 0]
    assert [statuses(store, t) for t in tids] == [[s.PENDING], [s.DOC_DUPLICATE],
                                                 [s.DOC_CONFLICT]]
    assert [store.get_transmission(t).status for t in tids] == [s.PROCESSED, s.PUBLISHED,
                                                               s.HELD]


def test_a_batch_looks_numbers_up_in_one_query_per_chunk(store_url):
    store = Store.from_url(store_url)
    tids = [received(store, b"%d" % n) for n in range(60)]
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        if "business_number IN" in statement.replace("\n", " "):
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        store.record_batch([Processed(tid=t, partner_id="acme", fmt="xml",
                                      standard=None, docs=[inv("1", f"m{n}", number=f"N{n}")],
                                      events=[]) for n, t in enumerate(tids)])
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert len(seen) == 1


def test_held_documents_of_a_streamed_transmission_are_judged_at_release(store_url):
    store = Store.from_url(store_url)
    process(store, b"1", inv("32.99", "m1"))
    tid = received(store, b"2")
    store.hold_documents(tid, partner_id="acme",
                         docs=[inv("32.99", "m2"), inv("4918.84", "m3"), inv("5", "m4", "FA-43")])
    queued, kept = store.release_held(tid)
    assert (queued, kept) == (1, 2)
    assert sorted(statuses(store, tid)) == sorted([s.DOC_DUPLICATE, s.DOC_CONFLICT, s.PENDING])
    store.record_processed(tid, partner_id="acme", fmt="edifact", standard=None, docs=[])
    assert store.get_transmission(tid).status == s.PROCESSED


def test_publishing_settles_partial_and_held_never_published(store_url):
    store = Store.from_url(store_url)
    process(store, b"1", inv("32.99", "m1"))
    failed = replace(inv("1", "mx", number="FA-99"), status=s.DOC_FAILED, stage="map",
                     reason="bad")
    t_partial = process(store, b"2", inv("7", "m2", number="FA-50"), failed,
                        stage="map", reason="1 of 2 message(s) failed")
    t_held = process(store, b"3", inv("8", "m3", number="FA-51"), inv("4918.84", "m4"))
    assert store.get_transmission(t_held).status == s.PROCESSED
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    assert store.get_transmission(t_partial).status == s.PARTIAL
    assert store.get_transmission(t_held).status == s.HELD
    (held,) = [d for d in store.documents_of(t_held) if d.status == s.DOC_CONFLICT]
    ConflictDesk(store).release(held.id, by="olivia")
    assert store.get_transmission(t_held).status == s.PROCESSED
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    assert store.get_transmission(t_held).status == s.PUBLISHED
    events = [e["event"] for e in store.events(t_held)]
    assert events[-4:] == ["held", "conflict-released", "processed", "published"]


def test_documents_stored_before_digests_are_digested_once_and_compared(store_url):
    store = Store.from_url(store_url)
    t1 = process(store, b"1", inv("32.99", "m1"))
    with store.engine.begin() as conn:  # as migration 0007 left older rows
        conn.execute(s.documents.update().values(content_sha=None))
    t2 = process(store, b"2", inv("32.99", "m2"))
    assert statuses(store, t2) == [s.DOC_DUPLICATE]
    (first,) = store.documents_of(t1)
    assert first.content_sha == inv("32.99", "m1").content_sha
