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
