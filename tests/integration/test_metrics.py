"""/metrics over a real HTTP server on loopback, read from a store (SQLite, PostgreSQL) that a
real pipeline filled: transmissions by channel, partner and status, publish latency, outbox
depth and open alerts; nobody is refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from gateway.core import clock
from gateway.core.pipeline import Pipeline
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.http.server import HttpServer
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.tracker.alerts import AlertBook, Condition
from gateway.web.auth import ApiTokens, Authenticator, Users
from gateway.web.metrics import metrics_route
from tests.unit.test_explain import ROOT, START, Gateway, order

pytestmark = pytest.mark.integration

@pytest.fixture
def filled(tmp_path, store_url) -> Iterator[tuple[Store, str]]:
    """Three orders published 30, 60 and 90 s after being stored, one order waiting in the
    outbox, one file that fails; one open alert and one acknowledged."""
    c = clock.FixedClock(START)
    clock.set_clock(c)
    gw = Gateway(tmp_path)
    gw.store.close()  # its own SQLite file; this test runs on store_url
    store = Store.from_url(store_url)
    gw.store = store
    gw.archive = Archive(tmp_path / "archive", fsync=False)
    gw.pipeline = Pipeline(store=store, archive=gw.archive, partners=gw.partners,
                           readers=[EdifactReader(MappingSet.load(ROOT / "mappings"))])
    for i, wait in enumerate((30, 60, 90)):
        gw.send(order(f"10{i}", f"PO-{i}"), filename=f"po{i}.edi")
        c.advance(seconds=wait)
        gw.publish()
    gw.send(order("200", "PO-WAIT"), filename="wait.edi", channel="sftp")
    gw.send(order("201", "PO-BAD", bad=True), filename="bad.edi")
    book = AlertBook(store)
    book.reconcile([Condition(kind="failure", partner_id="gouden", key="failure:x",
                              summary="one failure"),
                    Condition(kind="silence", partner_id="quiet", key="silence:quiet",
                              summary="quiet is silent")],
                   kinds_checked=["failure", "silence"])
    silence = [a for a in book.list() if a.kind == "silence"][0]
    book.acknowledge(silence.id, "marie")
    # A viewer's API token, as a Prometheus server is given one.
    scraper = Users(store).create("prometheus", "not used for logging in", "viewer")
    token, _ = ApiTokens(store).create(scraper, "scrape")
    yield store, token
    clock.set_clock(None)
    store.close()


def serve(store: Store, window: dt.timedelta) -> HttpServer:
    auth = Authenticator(store)
    app = Starlette(routes=[metrics_route(store, auth.principal, latency_window=window)])
    return HttpServer(app, port=0).start_in_thread()


@pytest.fixture
def server(filled) -> Iterator[tuple[str, str]]:
    srv = serve(filled[0], dt.timedelta(hours=2))
    try:
        yield srv.url, filled[1]
    finally:
        srv.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_need_a_credential(server):
    """Nobody, or a wrong token: 401 with a Bearer challenge, nothing of the store shown."""
    url, _token = server
    for headers in ({}, {"Authorization": "Bearer edigw_nope"}):
        r = httpx.get(url + "/metrics", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "edigw_" not in r.text


def test_metrics_read_the_store(server):
    """The families from the store, with the numbers the pipeline left."""
    url, token = server
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(r.text)
    assert got[("edigw_scrape_ok", ())] == 1
    t = {k[1]: v for k, v in got.items() if k[0] == "edigw_transmissions"}
    assert t[(("channel", "folder"), ("partner", "gouden"), ("status", "PUBLISHED"))] == 3
    assert t[(("channel", "folder"), ("partner", "gouden"), ("status", "FAILED"))] == 1
    assert t[(("channel", "sftp"), ("partner", "gouden"), ("status", "PROCESSED"))] == 1
    assert got[("edigw_outbox_depth", ())] == 1
    assert got[("edigw_publish_latency_seconds_count", ())] == 3
    assert got[("edigw_publish_latency_seconds_sum", ())] == pytest.approx(180)
    assert got[("edigw_publish_latency_seconds", (("quantile", "0.5"),))] == pytest.approx(60)
    assert got[("edigw_publish_latency_seconds", (("quantile", "0.99"),))] == pytest.approx(90)
    assert got[("edigw_alerts", (("kind", "failure"), ("status", "open")))] == 1
    assert got[("edigw_alerts", (("kind", "silence"), ("status", "acknowledged")))] == 1


def test_latency_window_forgets_old_publishes(filled):
    """Documents published before the window do not count in the latency summary."""
    store, token = filled
    srv = serve(store, dt.timedelta(seconds=100))
    try:
        r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        srv.stop()
    got = samples(r.text)
    # Published at +30 s, +90 s and +180 s; the clock stands at +180 s: two within 100 s.
    assert got[("edigw_publish_latency_seconds_count", ())] == 2


def scrape(store: Store, token: str) -> str:
    srv = serve(store, dt.timedelta(hours=2))
    try:
        r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    finally:
        srv.stop()
    assert r.status_code == 200, r.text
    return r.text


def rows(store: Store) -> list:
    """Every transmission's id and size."""
    import sqlalchemy as sa

    from gateway.store import schema

    t = schema.transmissions
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.id, t.c.size)))


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(text: str, name: str, **labels: str) -> float:
    """The sum of NAME's samples whose labels include LABELS."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def test_counters_are_typed_counter_with_total_and_count_what_the_store_holds(filled):
    """Each edigw counter is exposed as a counter whose samples end in _total, with the
    transmissions, bytes and documents the pipeline left."""
    store, token = filled
    text = scrape(store, token)
    fams = families(text)
    for name in ("edigw_transmissions_received", "edigw_bytes_received",
                 "edigw_transmissions_settled", "edigw_documents_received",
                 "edigw_documents_published", "edigw_documents_failed",
                 "edigw_publish_confirms"):
        fam = fams[name]
        assert fam.type == "counter", name  # type: ignore[attr-defined]
        assert fam.samples and all(s.name.endswith(("_total", "_created"))  # type: ignore[attr-defined]
                                   for s in fam.samples), name
    assert total(text, "edigw_transmissions_received_total") == 5
    assert total(text, "edigw_transmissions_received_total", channel="sftp") == 1
    assert total(text, "edigw_bytes_received_total") == sum(r.size for r in rows(store))
    assert total(text, "edigw_transmissions_settled_total", channel="folder",
                 status="PUBLISHED") == 3
    assert total(text, "edigw_transmissions_settled_total", status="FAILED") == 1
    assert total(text, "edigw_documents_published_total", partner="gouden") == 3
    # The bad file's order is stored too, as a FAILED document.
    assert total(text, "edigw_documents_received_total", partner="gouden") == 5
    assert total(text, "edigw_documents_failed_total", partner="gouden") == 1
    assert total(text, "edigw_publish_confirms_total") == 3


def test_latency_is_a_histogram_in_seconds_from_receipt_to_confirm(filled):
    """Published 30, 60 and 90 s after receipt: cumulative buckets, _sum and _count."""
    store, token = filled
    clock.set_clock(clock.FixedClock(START + dt.timedelta(seconds=200)))  # all settled
    text = scrape(store, token)
    fam = families(text)["edigw_document_latency_seconds"]
    assert fam.type == "histogram"  # type: ignore[attr-defined]
    buckets = {s.labels["le"]: s.value for s in fam.samples  # type: ignore[attr-defined]
               if s.name == "edigw_document_latency_seconds_bucket"}
    assert (buckets["10.0"], buckets["30.0"], buckets["60.0"], buckets["120.0"],
            buckets["+Inf"]) == (0, 1, 2, 3, 3)
    assert total(text, "edigw_document_latency_seconds_count") == 3
    assert total(text, "edigw_document_latency_seconds_sum") == pytest.approx(180)


def test_process_metrics_and_the_partner_last_received_timestamp(filled):
    """process_* and python_* of the serving process; each partner's last receipt as Unix
    seconds."""
    store, token = filled
    text = scrape(store, token)
    fams = families(text)
    assert fams["process_cpu_seconds"].type == "counter"  # type: ignore[attr-defined]
    assert total(text, "process_cpu_seconds_total") > 0
    assert "process_resident_memory_bytes" in fams and "python_info" in fams
    assert any(name.startswith("python_gc_") for name in fams)
    last = fams["edigw_partner_last_received_timestamp_seconds"]
    assert last.type == "gauge"  # type: ignore[attr-defined]
    # The last two files came at +180 s (after the three orders and their waits).
    assert {s.labels["partner_id"]: s.value for s in last.samples} == {  # type: ignore[attr-defined]
        "gouden": (START + dt.timedelta(seconds=180)).timestamp()}


def test_counters_do_not_fall_after_a_purge_or_a_fact_taken_back(filled):
    """A purge keeps the rows counted; a count that would fall (here a confirm erased by
    hand) stays at what the same route reported before."""
    import sqlalchemy as sa

    from gateway.store import schema
    from gateway.store.retention import mark_purged

    store, token = filled
    auth = Authenticator(store)
    app = Starlette(routes=[metrics_route(store, auth.principal)])
    srv = HttpServer(app, port=0).start_in_thread()
    try:
        def get() -> str:
            return httpx.get(srv.url + "/metrics",
                             headers={"Authorization": f"Bearer {token}"}).text

        before = get()
        ids = [r.id for r in rows(store)]
        mark_purged(store, {tid: "test" for tid in ids}, clock.now())
        after_purge = get()
        for name in ("edigw_transmissions_received_total", "edigw_bytes_received_total",
                     "edigw_documents_received_total", "edigw_documents_published_total"):
            assert total(after_purge, name) == total(before, name) > 0, name
        with store.engine.begin() as conn:
            conn.execute(sa.update(schema.documents).values(published_at=None))
        assert total(get(), "edigw_documents_published_total") == 3
    finally:
        srv.stop()


def test_counters_follow_what_comes_after_the_first_scrape(filled):
    """The counters come from per-day figures kept between scrapes: a file received and a
    file failed after the first scrape are counted at the next one (today's figures are
    read again; the other days are not)."""
    store, token = filled
    first = scrape(store, token)
    tid = store.record_received(channel="sftp", channel_ref="/in/late.edi",
                                filename="late.edi", size=1234, sha256="ab" * 32,
                                partner_id="gouden")
    store.record_failed(tid, stage="parse", reason="late and broken")
    second = scrape(store, token)
    assert (total(second, "edigw_transmissions_received_total", channel="sftp")
            == total(first, "edigw_transmissions_received_total", channel="sftp") + 1)
    assert (total(second, "edigw_bytes_received_total")
            == total(first, "edigw_bytes_received_total") + 1234)
    assert (total(second, "edigw_transmissions_settled_total", status="FAILED")
            == total(first, "edigw_transmissions_settled_total", status="FAILED") + 1)
