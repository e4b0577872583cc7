"""Prometheus metrics at ``/metrics``, read from the store at scrape time.

What the store knows is the truth that survives restarts, so the numbers come from it rather
than from counters in one process: every gateway process (and a restarted one) answers the
same.

- ``edigw_transmissions{channel, partner, status}``: transmissions kept, per status now
  (a gauge: a transmission moves from RECEIVED to PUBLISHED or FAILED).
- ``edigw_publish_latency_seconds{quantile}`` with ``_count`` and ``_sum``: a summary of
  ``published_at - created_at`` of the documents published within the last window
  (``latency_window``, one hour by default).
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
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.core import clock
from gateway.store.db import Store
from gateway.store.read.activity import DATABASE_ERRORS, snapshot

log = structlog.get_logger("edigw.metrics")

QUANTILES = (0.5, 0.9, 0.99)


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

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("edigw_scrape_ok", "1 when the store answered this scrape")
        try:
            families = list(self._families())
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


#: Returns who calls (any object) or None for nobody; may be a coroutine function.
Authenticate = Callable[[Request], Any]


def metrics_route(store: Store, authenticate: Authenticate, *,
                  latency_window: dt.timedelta = dt.timedelta(hours=1)) -> Route:
    """``GET /metrics``: the text exposition format, 401 without a valid credential."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, latency_window=latency_window))

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
