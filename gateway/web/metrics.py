"""Prometheus metrics at ``/metrics``, read from the store at scrape time.

What the store knows is the truth that survives restarts, so the numbers come from it rather
than from counters in one process: every gateway process (and a restarted one) answers the
same, and work done by ``edigw ingest`` or another instance is counted too.

Counters (``_total``) count facts the store never takes back (``gateway.store.read.counters``:
rows are never deleted, a purge keeps the metadata); as a guard, each one reported by this
process never goes below what it reported before (a high-water mark), so a counter can only
fall back at a restart, which Prometheus reads as a reset:

- ``edigw_transmissions_received_total{channel, partner}`` and
  ``edigw_bytes_received_total{channel, partner}``: inbound transmissions and their bytes.
- ``edigw_transmissions_settled_total{channel, status}``: transmissions that reached a final
  status (PUBLISHED, FAILED, QUARANTINED, DUPLICATE, PARTIAL, DELIVERED).
- ``edigw_documents_received_total``, ``edigw_documents_published_total``,
  ``edigw_documents_failed_total`` ``{partner, format}``: documents stored, confirmed by the
  broker, failed; ``edigw_publish_confirms_total``: every broker confirm of a document.
- ``edigw_document_latency_seconds`` (histogram, ``_bucket{le}``, ``_sum``, ``_count``):
  seconds from a transmission's receipt to the broker's confirm of each of its documents,
  counted by this process from its first scrape on (at first, the documents confirmed within
  ``latency_window`` before it, 50,000 a scrape), documents confirmed less than 5 s before a
  scrape waiting for the next one.
- ``edigw_partner_last_received_timestamp_seconds{partner_id}``: when each partner's last
  transmission came (Unix seconds): alert on ``time() - …`` for a silent partner.
- ``process_*`` (CPU, memory, open files, start time), ``python_info`` and ``python_gc_*``
  of the process serving the route.

Gauges:

- ``edigw_transmissions{channel, partner, status}``: transmissions kept, per status now
  (a gauge: a transmission moves from RECEIVED to PUBLISHED or FAILED).
- ``edigw_publish_latency_seconds{quantile}`` with ``_count`` and ``_sum``: a summary of
  ``published_at - created_at`` of the documents published within the last window
  (``latency_window``, one hour by default); kept beside the histogram for the dashboards
  that read it.
- ``edigw_outbox_depth``: documents waiting for a broker confirm; ``edigw_outbound_pending``:
  payloads waiting to go to partners (acknowledgements).
- ``edigw_alerts{kind, status}``: open and acknowledged alerts per kind.
- ``edigw_channel_consecutive_failures{channel, kind}``: each channel's failures in a row.
- ``edigw_scrape_ok``: 1 when the store answered, 0 when it did not (the other families are
  then missing, not zero).

The route answers only to an authenticated caller (an API token or a browser session, any
role): like every route but health, AS2 and the signed webhooks.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.core import clock
from gateway.store.db import Store
from gateway.store.read.activity import DATABASE_ERRORS, snapshot
from gateway.store.read.counters import Cursor, published_since, totals

log = structlog.get_logger("edigw.metrics")

QUANTILES = (0.5, 0.9, 0.99)

#: Upper bounds (seconds) of the latency histogram's buckets: a file published within a
#: second up to one held for an hour by a broker outage.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                   1800.0, 3600.0)

#: Documents confirmed this recently wait for the next scrape (a commit still under way
#: with an earlier ``published_at`` is not skipped).
SETTLE_LAG = dt.timedelta(seconds=5)

#: Documents read into the histogram per scrape (a backlog is read over several scrapes).
LATENCY_BATCH = 50_000


class LatencyHistogram:
    """Receipt-to-confirm seconds of documents, read from the store past a cursor. The
    first read starts ``since`` before it (the summary's window), not at the store's first
    document: a process's first scrape of a store of a million documents reads an hour of
    confirms, and a restart does not replay the history."""

    def __init__(self, since: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.since = since
        self.cursor: Cursor | None = None
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: over every bound
        self.sum = 0.0

    def read(self, store: Store, now: dt.datetime) -> None:
        """Add the documents confirmed since the last read (up to ``now - SETTLE_LAG``)."""
        if self.cursor is None:
            self.cursor = (now - self.since, "")
        rows = published_since(store, self.cursor, now - SETTLE_LAG, LATENCY_BATCH)
        for doc_id, received, published in rows:
            seconds = max(0.0, (published - received).total_seconds())
            self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.sum += seconds
            self.cursor = (published, doc_id)

    def family(self) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            buckets.append((bound, running))
        h = HistogramMetricFamily(
            "edigw_document_latency_seconds",
            "Seconds from a transmission's receipt to the broker's confirm of each document")
        h.add_metric([], buckets, sum_value=self.sum)
        return h


def _quantile(ordered: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted values."""
    index = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[index]


class StoreCollector:
    """A prometheus_client collector that queries the store on each scrape."""

    def __init__(self, store: Store, *, latency_window: dt.timedelta = dt.timedelta(hours=1)
                 ) -> None:
        self.store = store
        self.latency_window = latency_window
        self.latency = LatencyHistogram(latency_window)
        #: The highest value each counter sample was reported with (name, labels).
        self._high: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()  # two scrapes at once read and move one cursor

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("edigw_scrape_ok", "1 when the store answered this scrape")
        try:
            with self._lock:
                families = list(self._families()) + list(self._counters())
        except DATABASE_ERRORS as exc:
            log.warning("metrics_store_unavailable", error=type(exc).__name__)
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from families

    def _families(self) -> Iterator[Metric]:
        since = clock.now().astimezone(dt.UTC) - self.latency_window
        now = snapshot(self.store, since)

        g = GaugeMetricFamily("edigw_transmissions", "Transmissions kept, by channel, partner "
                              "and current status", labels=["channel", "partner", "status"])
        for channel, partner, status, n in now.transmissions:
            g.add_metric([channel, partner or "", status], n)
        yield g

        latencies = sorted(max(0.0, (p - c).total_seconds())
                           for c, p in now.published if c is not None and p is not None)
        m = Metric("edigw_publish_latency_seconds",
                   "Seconds from a document's creation to the broker's confirm, over the "
                   f"documents published in the last {int(self.latency_window.total_seconds())} s",
                   "summary")
        if latencies:
            for q in QUANTILES:
                m.add_sample("edigw_publish_latency_seconds", {"quantile": str(q)},
                             _quantile(latencies, q))
        m.add_sample("edigw_publish_latency_seconds_count", {}, len(latencies))
        m.add_sample("edigw_publish_latency_seconds_sum", {}, sum(latencies))
        yield m

        depth = GaugeMetricFamily("edigw_outbox_depth",
                                  "Documents in the outbox, waiting for a broker confirm")
        depth.add_metric([], now.outbox)
        yield depth
        pending = GaugeMetricFamily("edigw_outbound_pending",
                                    "Payloads (acknowledgements) waiting to go to partners")
        pending.add_metric([], now.outbound_pending)
        yield pending

        al = GaugeMetricFamily("edigw_alerts", "Alerts not resolved, by kind and status",
                               labels=["kind", "status"])
        for kind, status, n in now.alerts:
            al.add_metric([kind, status], n)
        yield al

        ch = GaugeMetricFamily("edigw_channel_consecutive_failures",
                               "Failures in a row of each channel (0: its last attempt worked)",
                               labels=["channel", "kind"])
        for channel, kind, failures in now.channels:
            ch.add_metric([channel, kind], failures or 0)
        yield ch


    def _counter(self, name: str, documentation: str, labels: list[str],
                 values: dict[tuple[str, ...], float]) -> CounterMetricFamily:
        """A counter family (NAME without ``_total``) whose samples never go below what
        this process reported before."""
        c = CounterMetricFamily(name, documentation, labels=labels)
        for key, value in sorted(values.items()):
            high = max(value, self._high.get((name, key), 0.0))
            self._high[(name, key)] = high
            c.add_metric(list(key), high)
        return c

    def _counters(self) -> Iterator[Metric]:
        now = clock.now().astimezone(dt.UTC)
        got = totals(self.store)
        yield self._counter("edigw_transmissions_received",
                            "Inbound transmissions received", ["channel", "partner"],
                            {(c, p): n for c, p, n, _ in got.received})
        yield self._counter("edigw_bytes_received", "Bytes of inbound transmissions received",
                            ["channel", "partner"], {(c, p): b for c, p, _, b in got.received})
        yield self._counter("edigw_transmissions_settled",
                            "Transmissions that reached a final status", ["channel", "status"],
                            {(c, st): n for c, st, n in got.settled})
        for name, index, what in (("edigw_documents_received", 0, "stored"),
                                  ("edigw_documents_published", 1, "confirmed by the broker"),
                                  ("edigw_documents_failed", 2, "failed")):
            yield self._counter(name, f"Documents {what}, by partner and format",
                                ["partner", "format"],
                                {(p, f): counts[index] for p, f, *counts in got.documents})
        yield self._counter("edigw_publish_confirms", "Broker confirms of documents", [],
                            {(): sum(row[3] for row in got.documents)})
        self.latency.read(self.store, now)
        yield self.latency.family()
        last = GaugeMetricFamily("edigw_partner_last_received_timestamp_seconds",
                                 "When the partner's last transmission was received "
                                 "(Unix time)", labels=["partner_id"])
        for partner, at in sorted(got.last_received.items()):
            last.add_metric([partner], at.timestamp())
        yield last


def metrics_registry(store: Store, *, latency_window: dt.timedelta = dt.timedelta(hours=1)
                     ) -> CollectorRegistry:
    """The registry ``/metrics`` serves: the store's families, and the process's own
    (``process_*``, ``python_info``, ``python_gc_*``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, latency_window=latency_window))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


#: Returns who calls (any object) or None for nobody; may be a coroutine function.
Authenticate = Callable[[Request], Any]


def metrics_route(store: Store, authenticate: Authenticate, *,
                  latency_window: dt.timedelta = dt.timedelta(hours=1)) -> Route:
    """``GET /metrics``: the text exposition format, 401 without a valid credential."""
    registry = metrics_registry(store, latency_window=latency_window)

    async def metrics(request: Request) -> Response:
        who = authenticate(request)
        if asyncio.iscoroutine(who):
            who = await who
        if who is None:
            return PlainTextResponse("authentication required (Authorization: Bearer "
                                     "<API token>)\n", status_code=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="edigw"'})
        if getattr(who, "is_client", False):  # every partner's figures: staff only
            return PlainTextResponse("the metrics are for the gateway's staff\n",
                                     status_code=403)
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return Route("/metrics", metrics, methods=["GET"], name="metrics")
