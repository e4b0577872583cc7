"""Drain the outbox to RabbitMQ with pipelined publisher confirms.

Two threads. The I/O thread runs a pika ``SelectConnection`` and only publishes and tracks
confirms: up to ``confirm_window`` messages are on the wire unconfirmed, and each ack settles
one or (``multiple``) many outbox rows. Every store call runs on the publisher's store thread
(:mod:`gateway.bus.store_thread`): it marks settled rows published in coalesced batches (one
commit per message would cap the rate at the disk's fsync rate) and reads the next rows
before the I/O thread runs out, so neither a commit nor SQLite's lock ever stalls publishing.

Every message is ``mandatory``: one no queue takes comes back as a ``basic.return`` before its
ack and its document is marked UNROUTABLE instead of published.

Delivery is at-least-once: rows whose confirm never came stay in the outbox. A nacked row is
published again (same ``message_id``) after a cool-down of ``retry_initial`` s; after a lost
connection every unconfirmed row goes out again on the next one. While the broker is
unreachable the publisher logs it once, keeps retrying with exponential back-off, and
documents wait in the outbox.

A cluster (``settings.urls``): each connection attempt goes to the next node, round-robin,
so a lost node or a failed connect moves the publisher on to another node after the
back-off. Whatever was unconfirmed on the lost connection is published again there, with
the same ``message_id``: the rows were never marked, and every claim, in-flight and
cooling row of the old connection is dropped when it ends (:meth:`_after_connection`).

A channel can also stall without losing its connection: RabbitMQ 3.10 confirms nothing more
on a channel opened while a quorum queue's leader had just died: it nacks every message, or
acks none (the new leader works; a new channel finds it). So when messages wait and no
basic.ack came for ``confirm_timeout`` s (nacks do not count), the publisher drops the
connection and starts over on the next node, publishing what was not acked again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
import pika.exceptions as px
import structlog
from pika.spec import Basic
from structlog.typing import FilteringBoundLogger

from gateway.bus.confirms import ConfirmTracker
from gateway.bus.connect import Liveness, Rotation, describe, parameters
from gateway.bus.settings import BusSettings, mask_url
from gateway.bus.store_thread import OutboxStoreThread
from gateway.bus.topology import declare_topology
from gateway.core.supervise import Backoff, supervised_thread
from gateway.store.db import Store
from gateway.store.records import OutboxItem

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class PublisherHealth:
    """A snapshot of the publisher for /health and ``edigw status``."""

    connected: bool
    last_error: str | None
    node: str | None  # the broker node (masked URL) connected to, or tried last
    last_success: dt.datetime | None  # last time a batch was confirmed and marked published
    published: int  # documents confirmed and marked published since start
    unroutable: int  # documents returned by the broker (and marked) since start
    in_flight: int  # published, not yet confirmed
    outage_since: dt.datetime | None


def _guarded(method: F) -> F:
    """Run a pika callback so that an exception closes the connection instead of the thread."""

    @functools.wraps(method)
    def wrapper(self: OutboxPublisher, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:
            self._log.exception("publisher_error", callback=method.__name__, error=str(exc))
            self._close_connection(f"{type(exc).__name__}: {exc}")
            return None

    return wrapper  # type: ignore[return-value]


class OutboxPublisher:
    """Publishes outbox rows to the documents exchange until stopped."""

    def __init__(self, store: Store, settings: BusSettings, *,
                 log: FilteringBoundLogger | None = None, declare: bool = False) -> None:
        self._store = store
        self._settings = settings
        #: Declare exchanges and queues at every (re)connection, so that a broker that
        #: came up empty (or was reset) gets its topology back before anything is published.
        self._declare = declare
        self._log = (log if log is not None else structlog.get_logger("edigw.bus")).bind(
            broker=settings.safe_urls, exchange=settings.exchange)
        # Every node's parameters now: a malformed URL stops the start, not a reconnect.
        self._params = {url: parameters(url, heartbeat=settings.heartbeat)
                        for url in settings.urls}
        self._nodes = Rotation(settings.urls)
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._store_thread = OutboxStoreThread(store, log=self._log, on_rows=self._rows_ready,
                                               on_error=self._store_error)
        # Owned by the I/O thread (other threads only read them).
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._tracker = ConfirmTracker()
        self._ready = False  # channel open and in confirm mode
        self._closing = False  # graceful stop under way: publish nothing new
        self._dropping = False  # edigw closes the connection because of an error, to start over
        self._queue: deque[OutboxItem] = deque()  # claimed rows, not yet published
        self._sent: dict[int, OutboxItem] = {}  # outbox id -> row on the wire, unconfirmed
        self._cooling: dict[int, OutboxItem] = {}  # nacked rows waiting to go out again
        self._reading = False  # a read is asked for and not yet answered
        self._woken = False  # a wake came while reading: the answer may miss new rows
        self._drained = False  # the last read found fewer rows than asked: wait for a wake
        self._poll_timer: object | None = None
        self._backoff = Backoff(settings.retry_initial, settings.retry_max)
        self._liveness = Liveness()
        self._ack_wait_since: float | None = None  # messages wait for a basic.ack since
        # Health.
        self._connected = False
        self._last_error: str | None = None
        self._outage_since: dt.datetime | None = None
        self._outage_logged = False

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O and store threads; returns at once (the connection is made in the
        background)."""
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        # pika logs every failed connection attempt at ERROR; the publisher reports an outage
        # once itself. An operator who set pika's level on purpose keeps it.
        pika_log = logging.getLogger("pika")
        if pika_log.level == logging.NOTSET:
            pika_log.setLevel(logging.CRITICAL)
        self._store_thread.start()
        # One connection per run: a lost one (or a bug) starts over after the back-off.
        self._thread = supervised_thread("edigw-publisher", self._serve_one_connection,
                                         stop=self._stop_requested, backoff=self._backoff,
                                         quiet_return=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` s for outstanding confirms, close the connection, and mark
        every confirmed row in the store before returning."""
        self._stop_requested.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(
                    functools.partial(self._begin_stop, timeout))
            except Exception:  # the I/O loop is already closing; the thread ends by itself
                pass
        if self._thread is not None:
            self._thread.join(timeout + 5.0)
            if self._thread.is_alive():
                self._log.warning("publisher_stop_timeout", timeout=timeout)
            self._store_thread.stop(timeout + 5.0)

    def wake(self) -> None:
        """New outbox rows exist: read them now rather than at the next poll (thread-safe)."""
        connection = self._connection
        if connection is None:
            return
        try:
            connection.ioloop.add_callback_threadsafe(self._on_wake)
        except Exception:  # between connections; the next connection reads the outbox anyway
            pass

    def wait_idle(self, timeout: float) -> bool:
        """True once the outbox is empty, nothing is in flight and nothing waits to be marked;
        False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            # Outbox first: a row leaves it only when marked, and the counters are updated
            # before the store thread stops counting the row as pending.
            if (self._store.outbox_size() == 0 and self._tracker.in_flight == 0
                    and self._store_thread.pending == 0):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def silent_for(self) -> float | None:
        """Seconds since the broker was last heard on the open connection (None: none)."""
        return self._liveness.silent_for() if self._connected else None

    @property
    def health(self) -> PublisherHealth:
        store = self._store_thread
        return PublisherHealth(
            connected=self._connected, last_error=self._last_error,
            node=mask_url(self._nodes.current), last_success=store.last_success, published=store.published,
            unroutable=store.unroutable_count, in_flight=self._tracker.in_flight,
            outage_since=self._outage_since)

    # -- connection lifecycle (I/O thread) -----------------------------------------------

    def _serve_one_connection(self) -> None:
        self._closing = False
        self._dropping = False
        url = self._nodes.next()  # the next node of a cluster at each (re)connection
        connection = pika.SelectConnection(
            self._params[url], on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed)
        self._connection = connection
        try:
            connection.ioloop.start()
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._connection = None
            self._after_connection()
            try:
                connection.ioloop.close()
            except Exception:
                pass

    def _after_connection(self) -> None:
        """The connection is gone: what was acked gets marked, the rest waits in the outbox
        for the next connection."""
        self._connected = False
        self._liveness.reset()
        self._ready = False
        self._channel = None
        self._poll_timer = None
        self._queue.clear()
        self._sent.clear()
        self._cooling.clear()
        self._ack_wait_since = None
        self._reading = self._woken = self._drained = False
        self._store_thread.connection_lost(
            self._tracker.abandon(),
            f"not confirmed before the connection closed: {self._last_error}")
        self._tracker = ConfirmTracker()

    @_guarded
    def _on_open(self, connection: pika.SelectConnection) -> None:
        self._connected = True
        self._backoff.reset()
        self._listen(connection)
        if self._outage_since is not None:
            down = (dt.datetime.now(dt.UTC) - self._outage_since).total_seconds()
            self._log.info("broker_connected", node=mask_url(self._nodes.current),
                           after_outage_s=round(down, 1))
        else:
            self._log.info("broker_connected", node=mask_url(self._nodes.current))
        self._outage_since = None
        self._outage_logged = False
        if self._stop_requested.is_set():
            self._close_connection()
            return
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        node = mask_url(self._nodes.current)
        self._last_error = f"{node}: {describe(error)}" if len(self._nodes) > 1 \
            else describe(error)
        if self._outage_since is None:
            self._outage_since = dt.datetime.now(dt.UTC)
        if not self._outage_logged:
            self._outage_logged = True
            following = "the next node is tried" if len(self._nodes) > 1 \
                else "documents wait in the outbox"
            self._log.warning(
                "broker_unreachable", error=self._last_error, node=node,
                message=f"broker not reachable at {node} ({describe(error)}); {following}")
        else:
            self._log.debug("broker_unreachable_again", error=self._last_error, node=node)
        connection.ioloop.stop()

    def _on_closed(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        was_ready = self._ready
        self._connected = False
        self._ready = False
        if self._closing or self._stop_requested.is_set():
            self._log.info("broker_disconnected")
        elif self._dropping:
            self._log.info("broker_reconnecting", error=self._last_error)
        else:
            self._last_error = describe(reason)
            if self._outage_since is None:
                self._outage_since = dt.datetime.now(dt.UTC)
            self._log.warning("broker_connection_lost", error=self._last_error,
                              node=mask_url(self._nodes.current),
                              in_flight=self._tracker.in_flight, was_publishing=was_ready)
        connection.ioloop.stop()

    def _listen(self, connection: pika.SelectConnection) -> None:
        """Note, about four times a heartbeat, whether the broker was heard from (and whether
        confirms stalled)."""
        current = self._connection
        if current is None or current is not connection or current.is_closed:
            return
        self._liveness.sample(current.bytes_received)
        self._check_confirms()
        current.ioloop.call_later(max(0.25, min(1.0, self._settings.heartbeat / 4)),
                                  functools.partial(self._listen, current))

    def _check_confirms(self) -> None:
        """Messages waited ``confirm_timeout`` s and no basic.ack came: start over on the
        next node."""
        since = self._ack_wait_since
        if not self._ready or self._closing or since is None:
            return
        waited = time.monotonic() - since
        if waited < self._settings.confirm_timeout:
            return
        error = (f"no publisher confirm for {waited:.0f} s with "
                 f"{self._tracker.in_flight + len(self._cooling)} message(s) waiting on "
                 f"{mask_url(self._nodes.current)}")
        self._log.warning("broker_confirms_stalled", error=error,
                          in_flight=self._tracker.in_flight,
                          node=mask_url(self._nodes.current),
                          message=f"{error}; reconnecting (they are published again)")
        self._close_connection(error)

    @_guarded
    def _on_channel_open(self, channel: Any) -> None:
        if self._declare:
            # A short blocking connection of its own, to the node just connected to; runs
            # once per (re)connection.
            declare_topology(self._settings, timeout=10.0, url=self._nodes.current)
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        self._tracker = ConfirmTracker()
        channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                 callback=self._on_confirm_selected)

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        self._ready = False
        self._channel = None
        if isinstance(reason, px.ChannelClosedByBroker):
            # 404: the exchange does not exist; nothing published on this channel will be
            # confirmed, so start over on a fresh connection after the back-off.
            error = describe(reason)
            if reason.reply_code == 404:
                error += " (run `edigw declare` to create it)"
            self._log.error("broker_channel_closed", error=error)
            self._backoff.failures += 1  # the broker is up but refusing: back off all the same
            self._close_connection(error)
        else:
            self._close_connection()

    @_guarded
    def _on_confirm_selected(self, _frame: Any) -> None:
        self._ready = True
        self._drained = False
        if self._stop_requested.is_set():
            self._begin_stop(0.0)
            return
        self._pump()

    def _close_connection(self, error: str | None = None) -> None:
        """Close the connection; with ``error``, on purpose to start over after the back-off."""
        if error is not None:
            self._last_error = error
            self._dropping = True
        connection = self._connection
        if connection is None:
            return
        if connection.is_closing or connection.is_closed:
            return
        try:
            connection.close()
        except Exception:  # still opening and already failing: the close callback follows
            connection.ioloop.stop()

    # -- graceful stop ------------------------------------------------------------------

    @_guarded
    def _begin_stop(self, timeout: float) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.clear()  # still claimed; released when the connection ends
        if not self._ready or self._tracker.in_flight == 0:
            self._close_connection()
        elif self._connection is not None:
            self._connection.ioloop.call_later(timeout, self._close_connection)

    # -- publishing ---------------------------------------------------------------------

    @_guarded
    def _on_wake(self) -> None:
        if self._reading:
            self._woken = True
        self._drained = False
        self._pump()

    @_guarded
    def _on_poll(self) -> None:
        self._poll_timer = None
        self._drained = False
        self._pump()

    def _rows_ready(self) -> None:
        """Store thread: a read was answered; hand over to the I/O thread."""
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._on_rows)
            except Exception:  # closing: the answer is void once the connection is gone
                pass

    @_guarded
    def _on_rows(self) -> None:
        for rows in self._store_thread.take_rows():
            self._reading = False
            self._queue.extend(rows.items)
            self._drained = not rows.more and not self._woken
            self._woken = False
        self._pump()

    def _pump(self) -> None:
        """Publish queued rows while the window has room; ask for more before the queue runs
        dry, so that the next rows are there when the window opens."""
        if not self._ready or self._closing or self._dropping:
            return
        window = self._settings.confirm_window
        queue = self._queue
        while queue and self._tracker.in_flight < window:
            self._publish(queue.popleft())
        if not self._reading and not self._drained and len(queue) < self._settings.batch:
            self._reading = True
            self._store_thread.request_rows(self._settings.batch)
        if self._drained and self._poll_timer is None and self._connection is not None:
            self._poll_timer = self._connection.ioloop.call_later(
                self._settings.poll_interval, self._on_poll)

    def _publish(self, item: OutboxItem) -> None:
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            message_id=item.message_id,
            type=item.doc_type,
            timestamp=int(time.time()),
            headers={
                "partner": item.partner_id,
                "transmission_id": item.transmission_id,
                "document_id": item.document_id,
                "document_type": item.doc_type,
                "schema": item.schema_version,
            },
        )
        self._channel.basic_publish(self._settings.exchange, item.routing_key, item.body,
                                    properties=properties, mandatory=True)
        if self._ack_wait_since is None:
            self._ack_wait_since = time.monotonic()
        self._tracker.published(item.outbox_id, item.document_id)
        self._sent[item.outbox_id] = item

    @_guarded
    def _on_return(self, _channel: Any, method: Basic.Return, properties: Any,
                   _body: bytes) -> None:
        document_id = (properties.headers or {}).get("document_id")
        reason = (f"{method.reply_text}: no queue bound for routing key {method.routing_key} "
                  f"on exchange {method.exchange}")
        if document_id is None or not self._tracker.returned(str(document_id), reason):
            self._log.warning("broker_return_unmatched", document_id=document_id, reason=reason)

    @_guarded
    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, Basic.Ack):
            settled = self._tracker.acked(method.delivery_tag, method.multiple)
            waiting = self._tracker.in_flight or self._cooling
            self._ack_wait_since = time.monotonic() if waiting else None
            for outbox_id in settled.published:
                self._sent.pop(outbox_id, None)
            self._store_thread.settle(settled.published)
            for outbox_id, reason in settled.unroutable:
                self._sent.pop(outbox_id, None)
                self._store_thread.unroutable(outbox_id, reason)
        elif isinstance(method, Basic.Nack):
            self._refused(self._tracker.nacked(method.delivery_tag, method.multiple))
        if self._closing:
            if self._tracker.in_flight == 0:
                self._close_connection()
            return
        self._pump()

    def _refused(self, outbox_ids: list[int]) -> None:
        """The broker nacked these rows: count the attempt, publish them again after a pause.

        The rows stay claimed and in memory meanwhile, so no read can hand them out twice."""
        for outbox_id in outbox_ids:
            item = self._sent.pop(outbox_id, None)
            if item is not None:
                self._cooling[outbox_id] = item
        self._store_thread.failed(outbox_ids, "refused by the broker (basic.nack)")
        self._log.warning("documents_refused", count=len(outbox_ids),
                          retry_in_s=self._settings.retry_initial)
        if self._connection is not None:
            self._connection.ioloop.call_later(
                self._settings.retry_initial, functools.partial(self._cooled, outbox_ids))

    @_guarded
    def _cooled(self, outbox_ids: list[int]) -> None:
        items = [self._cooling.pop(i) for i in outbox_ids if i in self._cooling]
        self._queue.extendleft(reversed(items))
        self._pump()

    def _store_error(self, error: str) -> None:
        """Store thread: a store call failed (it logged the details)."""
        self._last_error = error
