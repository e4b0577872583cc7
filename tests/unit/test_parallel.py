"""The worker process's share of a large payload gives the same outcome as judging all
messages in one process: documents (canonical JSON byte for byte), failures, verdicts and
warnings."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

from gateway.core import clock
from gateway.formats.edifact import parallel
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_spine_t", ROOT / "bench" / "bench_spine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_spine_t", module)
    spec.loader.exec_module(module)
    return module


def _payload(bench, broken: bool) -> bytes:
    text = (bench.interchange("IC1", 1, 30) + bench.interchange("IC2", 100, 30)).decode()
    if broken:
        lines = text.split("\n")
        # a bad quantity, a bad date and an unknown segment in messages of both halves
        for n, needle, bad in ((5, "QTY+21:", "QTY+21:x"), (40, "DTM+137:", "DTM+137:2024"),
                               (52, "UNS+S", "XYZ+1'\nUNS+S")):
            seen = 0
            for i, line in enumerate(lines):
                if line.startswith("UNH+"):
                    seen += 1
                if seen == n and line.startswith(needle.split(":")[0].split("+")[0]) and needle in line:
                    lines[i] = line.replace(needle, bad, 1)
                    break
        text = "\n".join(lines)
    return text.encode()


def _run(reader, data, partner, start, path=None):
    parsed = reader.parse(data, filename="f.edi")
    outsourced = None
    if start is not None:
        assert parallel.prepare("T1", str(path), hashlib.sha256(data).hexdigest(), "f.edi")
        tail = parallel.take(parallel.judge_tail("T1", "f.edi", partner, "T1", {}, start,
                                                 1 << 20))

        def outsourced(i):
            return tail[i - start] if i >= start else None
    docs = parsed.documents(partner=partner, transmission_id="T1", filename="f.edi",
                            known_refs={}, outsourced=outsourced)
    shown = []
    for d in docs:
        if hasattr(d, "document"):
            shown.append(("doc", d.document.to_json_bytes(), d.message_id, d.business_number,
                          d.interchange_ref, d.message_ref, d.schema_version, d.warnings))
        else:
            shown.append(("failed", d))
    verdicts = [(str(r), [(v.message.ref, str(v.error), getattr(v.error, "code", None))
                          for v in vs]) for r, vs in parsed.verdicts]
    replies = [r.data for r in parsed.replies(partner=partner, transmission_id="T1")]
    return shown, verdicts, parsed.warnings, replies


@pytest.mark.parametrize("broken", [False, True])
@pytest.mark.parametrize("policy", ["fail-message", "reject-interchange"])
def test_tail_judged_in_worker_gives_the_same_outcome(broken, policy, tmp_path, request):
    # the CONTRL is stamped with the time: pinned so a minute boundary between the runs
    # cannot tell them apart
    clock.set_clock(clock.FixedClock(dt.datetime(2026, 3, 2, 18, 0, 30, tzinfo=dt.UTC)))
    request.addfinalizer(lambda: clock.set_clock(None))
    bench = _bench()
    parallel._init(str(ROOT / "mappings"))
    reader = EdifactReader(MappingSet.load(ROOT / "mappings"))
    partner = bench.bench_partner()
    partner = partner.model_copy(update={"edifact": partner.edifact.model_copy(
        update={"on_message_error": policy, "contrl": "always"})})
    data = _payload(bench, broken)
    path = tmp_path / "payload"
    path.write_bytes(data)
    alone = _run(reader, data, partner, None)
    for start in (0, 17, 30, 45, 60):
        assert _run(reader, data, partner, start, path) == alone
    if broken:
        assert any(kind == "failed" for kind, *_ in alone[0])


def test_worker_process_round_trip(tmp_path):
    bench = _bench()
    workers = parallel.Workers(ROOT / "mappings")
    try:
        assert workers.ready.wait(60) and workers.usable()
        data = _payload(bench, False)
        path = tmp_path / "payload"
        path.write_bytes(data)
        assert workers.begin()
        assert not workers.begin()  # one payload at a time
        workers.call("prepare", "T1", str(path), hashlib.sha256(data).hexdigest(), "f.edi")
        workers.call("judge_tail", "T1", "f.edi", bench.bench_partner(), "T1", {}, 50, 1 << 20)
        assert workers.result() is True
        tail = parallel.take(workers.result())
        assert len(tail) == 10 and all(t is not None for t in tail)
        assert isinstance(tail[0][0].document, parallel.Prebuilt)
        # nothing prepared under that key (taken already): judged by the caller
        workers.call("judge_tail", "T1", "f.edi", bench.bench_partner(), "T1", {}, 50, 1 << 20)
        assert workers.result() is None
        # a payload whose bytes do not match its digest is not prepared
        workers.call("prepare", "T2", str(path), "0" * 64, "f.edi")
        assert workers.result() is False
        # answers left unread are read when the worker is given back
        workers.call("prepare", "T3", str(path), hashlib.sha256(data).hexdigest(), "f.edi")
        workers.end()
        assert workers.begin()
        workers.end()
    finally:
        workers.close()


def _pipeline_outcome(tmp_path, name, data, partner, workers):
    from sqlalchemy import text

    from gateway.config import PartnerDirectory
    from gateway.core.pipeline import Pipeline
    from gateway.core.ports import Incoming
    from gateway.store.archive import Archive
    from gateway.store.db import Store

    store = Store.from_url(f"sqlite:///{tmp_path / name}.db")
    archive = Archive(tmp_path / f"{name}-archive", fsync=False)
    pipeline = Pipeline(store=store, archive=archive, partners=PartnerDirectory([partner]),
                        readers=[EdifactReader(MappingSet.load(ROOT / "mappings"))])
    pipeline.parallel_messages = 40
    pipeline.parallel_bytes = 1000
    pipeline.chunk_size = 25
    pipeline.workers = workers
    try:
        receipt = pipeline.receive(Incoming(channel="t", data=data, filename="f.edi"))
        outcome = pipeline.process(receipt.transmission_id)
        tid = receipt.transmission_id
        docs = [(d.status, d.doc_type, d.message_id, d.business_number, d.message_ref,
                 d.reason if hasattr(d, "reason") else None)
                for d in store.documents_of(tid)]
        with store.engine.connect() as conn:
            payloads = sorted(conn.execute(text(
                "SELECT message_id, payload FROM documents WHERE transmission_id = :t"),
                {"t": tid}).all())
            outbox = conn.execute(text("SELECT count(*) FROM outbox")).scalar()
        # a CONTRL's own envelope (time prepared, control reference) differs run to run
        replies = [[seg for seg in archive.get(o.sha256).split(b"'")
                    if not seg.startswith((b"UNB", b"UNZ"))] for o in store.outbound_of(tid)]
        events = [(e["kind"], e["detail"]) if "kind" in e else e for e in store.events(tid)]
        shown = (outcome.status, outcome.documents, outcome.queued, outcome.stage,
                 outcome.reason, sorted(docs, key=repr), payloads, outbox, replies,
                 [ev for ev in events if "time" not in repr(ev)])
        # the two runs differ by their transmission id only
        return repr(shown).replace(tid, "TID")
    finally:
        store.close()


@pytest.mark.parametrize("policy", ["fail-message", "reject-interchange"])
def test_pipeline_with_a_worker_records_what_it_records_alone(tmp_path, policy):
    bench = _bench()
    partner = bench.bench_partner()
    partner = partner.model_copy(update={"edifact": partner.edifact.model_copy(
        update={"on_message_error": policy, "contrl": "always"})})
    data = _payload(bench, True)
    workers = parallel.Workers(ROOT / "mappings")
    try:
        assert workers.ready.wait(60)
        calls = []
        call = workers.call
        workers.call = lambda op, *args: (calls.append(op), call(op, *args))[1]
        alone = _pipeline_outcome(tmp_path, "alone", data, partner, None)
        shared = _pipeline_outcome(tmp_path, "shared", data, partner, workers)
        assert calls == ["prepare", "judge_tail"]
        assert workers.begin()  # given back
        workers.end()
    finally:
        workers.close()
    assert shared == alone
    assert "'FAILED'" in alone and "PO000000107" in alone
