"""End to end: every EDIFACT ORDERS file of the shared corpus through a running ``edigw serve``.

The files are dropped into the inbox of a real service (SQLite, then PostgreSQL) publishing
to the machine's RabbitMQ under names unique to the test. What comes out on the queue is
compared with the source file as read by a naive split in ``tests/integration/e2e.py``,
never by the gateway's own parser.

Files edigw rejects on purpose follow the policy of ``tests/corpus/test_corpus_orders_mapping.py``
(its ``KNOWN_REJECTIONS``): such a file must end FAILED at parse with that reason.

Some demo files reuse an order number for another order (other lines, parties or type):
such a document is held as CONFLICT (the default ``on_conflict = "hold"``), its file HELD;
it is checked against its source as stored, and must not be on the queue.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import manifest_rows, require_corpus
from tests.corpus.test_corpus_orders_mapping import KNOWN_REJECTIONS
from tests.integration.e2e import Workspace
from tests.integration.naive_edifact import (
    check_order,
    naive_messages,
    naive_senders,
    partner_id_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.corpus]

PREFIXES = ("EDIFACT ORDERS D96A", "EDIFACT ORDERS D01B")


@pytest.fixture
def ws(tmp_path, store_url, rabbit_url):
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        yield ws


def _corpus_files() -> list[tuple[str, bytes]]:
    folder = require_corpus()
    rows = [r for r in manifest_rows() if r["document_type"].startswith(PREFIXES)]
    assert rows, f"no {PREFIXES} rows in MANIFEST.tsv"
    return [(r["local_path"], (Path(folder) / r["local_path"]).read_bytes()) for r in rows]


def test_every_corpus_order_reaches_the_queue_matching_its_source(ws):
    """Each corpus ORDERS file dropped into a running service gives, per UNH, one stored document and one queue message whose number, dates, parties and lines match the source."""
    files = _corpus_files()

    # Partners: one per UNB sender found in the files (read with a plain split).
    partner_of: dict[tuple[str, str | None], str] = {}
    for _path, data in files:
        for sender, qualifier in naive_senders(data):
            if (sender, qualifier) not in partner_of:
                pid = partner_id_for(sender)
                assert pid not in partner_of.values(), f"two senders give partner id {pid}"
                partner_of[(sender, qualifier)] = pid
                ws.add_partner(pid, sender, qualifier)

    service = ws.serve()
    names: dict[str, tuple[str, bytes]] = {}
    for i, (path, data) in enumerate(files):
        name = f"{i:03d}-{Path(path).name}"
        names[name] = (path, data)
        ws.drop(name, data)

    def settled() -> bool:
        counts = ws.counts()
        return (sum(counts.values()) == len(files) and set(counts) <= {
            "PUBLISHED", "HELD", "FAILED", "QUARANTINED", "DUPLICATE"}
            and ws.store.outbox_size() == 0)

    service.wait_until(settled, 60, f"{len(files)} corpus files processed and published")

    log = {row["filename"]: row for row in ws.log_json()}
    log_by_id = {row["id"]: row for row in log.values()}
    assert sorted(log) == sorted(names), "every file is in `edigw log` exactly once"
    assert sorted(p.name for p in ws.processed.iterdir()) == sorted(names)
    assert ws.inbox_files() == []

    problems: list[str] = []  # content differences, reported together at the end
    held: dict[str, object] = {}  # document id -> CONFLICT document
    first_with_sha: dict[str, str] = {}
    expected_docs: dict[str, list] = {}  # document id -> (naive message, partner id)
    for name, (path, data) in names.items():
        row = log[name]
        sha = hashlib.sha256(data).hexdigest()
        assert row["sha256"] == sha
        assert ws.archive_path(sha).read_bytes() == data, f"{name}: raw bytes not archived"
        if sha in first_with_sha:
            assert row["status"] == "DUPLICATE", name
            assert row["duplicate_of"] == log[first_with_sha[sha]]["id"]
            assert ws.store.documents_of(row["id"]) == []
            continue
        first_with_sha[sha] = name
        if path in KNOWN_REJECTIONS:
            assert (row["status"], row["stage"]) == ("FAILED", "parse"), row
            assert KNOWN_REJECTIONS[path] in row["reason"] and "segment" in row["reason"]
            continue
        messages = naive_messages(data)
        unh = sum(1 for m in messages)
        assert row["status"] in ("PUBLISHED", "HELD"), \
            f"{name}: {row['status']} {row['stage']} {row['reason']}"
        assert row["format"] == "edifact"
        assert row["document_count"] == unh == data.count(b"UNH+"), name
        (partner,) = {partner_of[(m.sender, m.sender_qualifier)] for m in messages}
        assert row["partner_id"] == partner
        docs = ws.store.documents_of(row["id"])
        assert len(docs) == unh, f"{name}: {len(docs)} documents for {unh} UNH"
        for doc, msg in zip(docs, messages, strict=True):
            assert doc.message_ref == msg.message_ref
            assert doc.interchange_ref == msg.interchange_ref
            assert doc.status in ("PUBLISHED", "DUPLICATE", "CONFLICT"), (name, doc)
            if doc.status == "CONFLICT":  # the same number came before with other content
                held[doc.id] = doc
            problems += [f"{name} (stored): {p}"
                         for p in check_order(ws.store.document_payload(doc.id), msg)]
            if doc.status == "PUBLISHED":
                expected_docs[doc.id] = [msg, partner, doc]

    stored = {d.id: d for d in ws.store.find_documents(limit=10_000)}
    for doc in held.values():
        earlier = stored[doc.conflict_of]
        assert (earlier.partner_id, earlier.doc_type, earlier.business_number) == (
            doc.partner_id, doc.doc_type, doc.business_number)
        assert earlier.content_sha != doc.content_sha and earlier.status == "PUBLISHED"
        assert log_by_id[doc.transmission_id]["status"] == "HELD"
    received = ws.consume(expected=len(expected_docs), timeout=30)
    by_document = {m.properties.headers["document_id"]: m for m in received}
    assert len(received) == len(by_document) == len(expected_docs), (
        f"{len(received)} messages on the queue for {len(expected_docs)} published documents")
    assert set(by_document) == set(expected_docs) and not set(by_document) & set(held)
    message_ids = [m.properties.message_id for m in received]
    assert all(message_ids) and len(set(message_ids)) == len(message_ids)
    for document_id, (msg, partner, doc) in expected_docs.items():
        m = by_document[document_id]
        body = json.loads(m.body)
        assert m.properties.content_type == "application/json"
        assert m.routing_key == f"order.{partner}"
        assert m.properties.message_id == body["message_id"] == doc.message_id
        assert body["partner"] == partner
        problems += [f"{msg.message_ref} (queue): {p}" for p in check_order(body, msg)]
    assert not problems, "canonical orders differ from their source:\n" + "\n".join(problems)
    print(f"corpus e2e: {len(files)} files, {len(expected_docs)} orders published, "
          f"{len(log) - len(first_with_sha)} duplicate transmissions, {len(held)} orders held "
          "as conflicts")
