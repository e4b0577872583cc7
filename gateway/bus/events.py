"""Publishes the event outbox to ``edi.events`` (a durable topic exchange; routing keys
``alert.<kind>.<partner>``) with publisher confirms, in a thread of its own.

Events are few (an alert opened, acknowledged, resolved), so each is confirmed before the
next goes: simple, and nothing is marked published before the broker has it. An event with
no queue bound for its key is dropped by the broker, which is fine: whoever wants alerts
binds a queue. Each event keeps its ``message_id`` across redeliveries (at-least-once).

Between rounds the thread services its connection (``process_data_events``), so heartbeats
flow both ways: an idle connection is neither dropped by the broker nor silently dead.

A cluster: ``url`` may be a list of nodes; each (re)connection goes to the next one
(round-robin, with the back-off between attempts). An event whose confirm did not come
stays in the event outbox and goes out again, same ``message_id``, on the next connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pika
import pika.exceptions as px
import structlog
from pika.adapters.blocking_connection import BlockingChannel

from gateway.bus.connect import Liveness, Rotation, describe, parameters
from gateway.bus.settings import mask_url
from gateway.core.supervise import Backoff, supervised_thread
from gateway.store.db import Store
from gateway.store.events import EventOutbox

log = structlog.get_logger("edigw.events")


def declare_events(channel: pika.adapters.blocking_connection.BlockingChannel,
                   exchange: str) -> None:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


class EventPublisher:
    """``start()`` / ``wake()`` / ``stop()``; ``publish_once()`` is one round (tests)."""

    def __init__(self, store: Store, url: str | Sequence[str], exchange: str = "edi.events", *,
                 every: float = 2.0, retry_initial: float = 0.5, retry_max: float = 30.0,
                 heartbeat: int | None = None,
                 may_publish: Callable[[], bool] | None = None) -> None:
        self.outbox = EventOutbox(store)
        #: Whether this instance publishes the events now (where several share the store,
        #: the one holding the ``events`` lease); None: always.
        self.may_publish = may_publish
        self._nodes = Rotation(url)
        self.urls = self._nodes.urls
        self.url = self.urls[0]  # the first node (a single broker: the broker)
        self.exchange = exchange
        self.every = every
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.heartbeat = heartbeat
        self._backoff = Backoff(retry_initial, retry_max)
        self._liveness = Liveness()
        self.connected = False
        self.last_error: str | None = None
        self.published = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    # -- one round ---------------------------------------------------------------------------

    def _open(self) -> BlockingChannel:
        """Connect, declare the exchange and turn confirms on; the channel to publish on."""
        url = self._nodes.next()  # a cluster: the next node at each (re)connection
        self._connection = pika.BlockingConnection(parameters(url, heartbeat=self.heartbeat))
        channel = self._connection.channel()
        declare_events(channel, self.exchange)
        channel.confirm_delivery()
        self._channel = channel
        self._liveness.sample(self._connection._impl.bytes_received)
        if not self.connected:
            log.info("events_connected", broker=mask_url(url), exchange=self.exchange)
        self.connected = True
        return channel

    def _close(self) -> None:
        self.connected = False
        self._liveness.reset()
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # already gone
                pass

    def publish_once(self) -> int:
        """Publish what is pending; returns how many were confirmed. Raises on broker trouble
        (what was confirmed so far is marked)."""
        if self.may_publish is not None and not self.may_publish():
            return 0  # another instance publishes them
        channel = self._open() if self._channel is None else self._channel
        done = 0
        while True:
            batch = self.outbox.pending(200)
            if not batch:
                return done
            confirmed: list[int] = []
            try:
                for ev in batch:
                    channel.basic_publish(
                        self.exchange, ev.routing_key, ev.payload,
                        pika.BasicProperties(content_type="application/json",
                                             delivery_mode=2, message_id=ev.message_id,
                                             type=ev.routing_key,
                                             timestamp=int(ev.created_at.timestamp())))
                    confirmed.append(ev.id)
            except (px.AMQPError, OSError) as exc:
                self.outbox.published(confirmed)
                rest = [e.id for e in batch if e.id not in set(confirmed)][:1]
                self.outbox.failed(rest, describe(exc))
                raise
            self.outbox.published(confirmed)
            done += len(confirmed)
            self.published += len(confirmed)

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = supervised_thread("events", self._serve_one_connection, stop=self._stop,
                                         backoff=self._backoff, quiet_return=True)

    def silent_for(self) -> float | None:
        """Seconds since the broker was last heard on the open connection (None: none)."""
        return self._liveness.silent_for() if self.connected else None

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def _serve_one_connection(self) -> None:
        """Publish rounds on one connection until stopped or the broker fails (then return,
        to be started again after the back-off)."""
        try:
            while not self._stop.is_set():
                n = self.publish_once()
                if n:
                    log.info("events_published", count=n, exchange=self.exchange)
                self._backoff.reset()
                self.last_error = None
                self._idle(self.every)
        except (px.AMQPError, OSError) as exc:
            reason = describe(exc)
            if reason != self.last_error:
                log.warning("events_publish_failed", broker=mask_url(self._nodes.current),
                            reason=reason, retry_in=self._backoff.initial)
            self.last_error = reason
        finally:
            self._close()

    def _idle(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a wake, servicing the connection meanwhile (heartbeats
        in and out, a close by the broker noticed)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            connection = self._connection
            if connection is None or not connection.is_open:
                self._wake.wait(min(0.25, left))
                continue
            connection.process_data_events(time_limit=min(0.25, left))
            self._liveness.sample(connection._impl.bytes_received)
        self._wake.clear()


def wait_published(publisher: EventPublisher, timeout: float) -> bool:
    """Until the outbox is empty (tests and the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.outbox.size() == 0:
            return True
        publisher.wake()
        time.sleep(0.05)
    return False
