"""Documents the ERP sends to partners: the ``edigw.outbound`` queue and its consumer.

    exchange  edi.outbound          topic, durable; routing key <doctype>.<partner>
      └─ queue edigw.outbound       quorum, bound with ``#``
    exchange  edi.outbound.dead     fanout, durable
      └─ queue edigw.outbound.dead  quorum: what edigw refused, with why in its headers

The ERP publishes the canonical JSON of an order response, despatch advice, invoice or price
list (persistent, with a ``message_id``) under ``<doctype>.<partner>``, e.g.
``invoice.acme``. :class:`OutboundConsumer` reads the queue on a thread of its own (pika
``BlockingConnection``, prefetch bounded) and hands the messages in hand to its
``accept_batch`` callback at once (``gateway.channels.intake_routes.route_outbound_batch``:
the outbound intake receives them with one archive sync and one commit), or each to an
``accept`` callback (``route_outbound``). Then, message by message in order:

- **received** (RENDERED, or a repeat of a message already received): the message is
  acknowledged only now, when its document is archived and recorded;
- **refused** (FAILED: not JSON, no such partner, no format …): a copy goes to
  ``edi.outbound.dead`` with the headers ``x-edigw-reason``, ``x-edigw-stage``,
  ``x-edigw-transmission`` and ``x-edigw-partner``, published with confirms, and only
  once the broker confirmed it is the message acknowledged; nothing is sent to the partner;
- **not received** (``accept`` raised: the store or the archive is down, or a bug; or a
  dead-letter copy was not confirmed): after a pause (growing with each failure in a row,
  up to ``retry_max``) the messages in hand not yet acknowledged are returned to the queue
  (nack, requeue) and come back later. Nothing is lost and nothing spins.

The queue dead-letters to ``edi.outbound.dead`` itself too: a broker that drops a message
returned too often (RabbitMQ 4 quorum queues: 20 times by default) puts it there instead.
When the broker goes away the consumer reconnects with back-off (a cluster: the next node);
what it had not acknowledged is redelivered, and the intake knows a message id it received
before (``origin="erp", ref=message_id``): nothing is sent twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pika
import pika.exceptions as px
import structlog

from gateway.bus.connect import Rotation, describe, parameters
from gateway.bus.settings import mask_url
from gateway.bus.topology import OUTBOUND, OutboundNames, declare_outbound
from gateway.core import clock
from gateway.core.errors import StoreError
from gateway.core.supervise import Backoff, supervised_thread

PREFETCH = 16
#: Characters of a reason put in the ``x-edigw-reason`` header (a longer one is cut).
MAX_HEADER = 2000

log = structlog.get_logger("edigw.outbound.bus")


class Outcome(Protocol):
    """What ``accept`` answers (``gateway.channels.intake.OutboundResult`` is one)."""

    @property
    def transmission_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def partner_id(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def repeat(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message of ``edigw.outbound`` as ``accept_batch`` gets it."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]


#: ``accept(body, routing_key, message_id, headers)``: receive one message; raises only when
#: nothing could be recorded (it is then returned to the queue).
Accept = Callable[[bytes, str, "str | None", dict[str, Any]], Outcome]
#: ``accept_batch(messages)``: receive the messages in hand at once (one archive sync, one
#: commit), their outcomes in the same order; raises only when nothing could be recorded.
AcceptBatch = Callable[[list[OutboundMessage]], Sequence[Outcome]]


def dead_headers(original: dict[str, Any] | None, outcome: Outcome) -> dict[str, Any]:
    """The headers of a refused message's copy on the dead-letter exchange."""
    headers = dict(original or {})
    reason = outcome.reason or "refused"
    headers.update({
        "x-edigw-reason": reason if len(reason) <= MAX_HEADER else reason[:MAX_HEADER - 1] + "…",
        "x-edigw-stage": outcome.stage or "",
        "x-edigw-transmission": outcome.transmission_id or "",
        "x-edigw-partner": outcome.partner_id or "",
    })
    return headers


@dataclass(frozen=True, slots=True)
class OutboundConsumerHealth:
    """A snapshot of the consumer for /health and ``edigw status``."""

    connected: bool
    last_error: str | None
    node: str | None  # the broker node (masked URL) consumed from, or tried last
    last_success: dt.datetime | None  # last time a message was received and acknowledged
    received: int  # messages received (rendered or repeats) and acknowledged
    refused: int  # messages dead-lettered (FAILED) and acknowledged
    returned: int  # messages returned to the queue because nothing could be recorded
    outage_since: dt.datetime | None  # accept has been failing since


@dataclass(frozen=True, slots=True)
class _Delivery:
    tag: int
    routing_key: str
    properties: Any  # pika.BasicProperties
    body: bytes


class OutboundConsumer:
    """Consumes ``edigw.outbound`` into the outbound intake until stopped."""

    def __init__(self, broker_url: str | Sequence[str], accept: Accept | None = None, *,
                 accept_batch: AcceptBatch | None = None,
                 names: OutboundNames = OUTBOUND, prefetch: int = PREFETCH,
                 retry_initial: float = 0.5, retry_max: float = 30.0, declare: bool = True,
                 heartbeat: int | None = None) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        if (accept is None) == (accept_batch is None):
            raise ValueError("give accept or accept_batch (one of them)")
        self._accept_batch: AcceptBatch = accept_batch if accept_batch is not None \
            else _one_by_one(accept)  # type: ignore[arg-type]
        self._nodes = Rotation(broker_url)
        self._names = names
        self._prefetch = prefetch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._declare = declare
        # Every node's parameters now: a malformed URL stops the start, not a reconnect.
        self._params = {url: parameters(url, heartbeat=heartbeat)
                        for url in self._nodes.urls}
        self._log = log.bind(queue=names.queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[_Delivery] = []  # delivered, not yet settled (I/O thread only)
        self._backoff = Backoff(retry_initial, retry_max)  # the connection's
        self._failing = Backoff(retry_initial, retry_max)  # accept's, failures in a row
        self._outage_logged = False
        # Health (written by the consumer thread, read by anyone).
        self._connected = False
        self._last_error: str | None = None
        self._last_success: dt.datetime | None = None
        self._outage_since: dt.datetime | None = None
        self._counts = {"received": 0, "refused": 0, "returned": 0}

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the consumer thread; returns at once (it connects in the background)."""
        if self._thread is not None:
            raise RuntimeError("outbound consumer already started")
        pika_log = logging.getLogger("pika")  # pika logs each failed attempt at ERROR
        if pika_log.level == logging.NOTSET:
            pika_log.setLevel(logging.CRITICAL)
        self._thread = supervised_thread("edigw-outbound-bus", self._run_once,
                                         stop=self._stop, backoff=self._backoff,
                                         quiet_return=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming and close the connection; what was not settled stays on the queue
        (it is redelivered to the next consumer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning("outbound_bus_stop_timeout", timeout=timeout)

    @property
    def health(self) -> OutboundConsumerHealth:
        c = self._counts
        return OutboundConsumerHealth(
            connected=self._connected, last_error=self._last_error,
            node=mask_url(self._nodes.current), last_success=self._last_success,
            received=c["received"], refused=c["refused"], returned=c["returned"],
            outage_since=self._outage_since)

    # -- connection lifecycle -----------------------------------------------------------------

    def _run_once(self) -> None:
        """One connection, until stopped or lost (then started again after the back-off; a
        bug is logged with its traceback by the supervisor and started again all the same)."""
        try:
            self._serve_one_connection()
        except (px.AMQPError, OSError) as exc:
            self._lost(describe(exc))
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._connected = False
            self._pending = []  # unacknowledged: the broker redelivers them

    def _lost(self, error: str) -> None:
        self._last_error = error
        if not self._outage_logged:  # once per outage; reset when a connection opens
            self._outage_logged = True
            self._log.warning("outbound_bus_unavailable", error=error,
                              broker=mask_url(self._nodes.current),
                              message=f"cannot consume documents for partners ({error}); "
                                      "retrying")
        else:
            self._log.debug("outbound_bus_unavailable_again", error=error,
                            broker=mask_url(self._nodes.current))

    def _serve_one_connection(self) -> None:
        url = self._nodes.next()  # a cluster: the next node at each (re)connection
        connection = pika.BlockingConnection(self._params[url])
        try:
            channel = connection.channel()
            if self._declare:
                declare_outbound(channel, self._names)
            # Refused messages go out on a channel of their own, in confirm mode: the
            # original is acknowledged only once the broker has its copy.
            dead = connection.channel()
            dead.confirm_delivery()
            channel.basic_qos(prefetch_count=self._prefetch)
            channel.basic_consume(self._names.queue, self._on_delivery)
            self._connected = True
            self._backoff.reset()
            self._outage_logged = False
            self._log.info("outbound_bus_consuming", exchange=self._names.exchange,
                           broker=mask_url(url))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.25)
                if self._pending and not self._stop.is_set():
                    self._settle(connection, channel, dead)
        finally:
            self._connected = False
            if connection.is_open:
                try:
                    connection.close()
                except (px.AMQPError, OSError):
                    pass
        self._log.info("outbound_bus_stopped", broker=mask_url(url))

    def _on_delivery(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._pending.append(_Delivery(method.delivery_tag, method.routing_key or "",
                                       properties, bytes(body)))

    # -- one message --------------------------------------------------------------------------

    def _settle(self, connection: Any, channel: Any, dead: Any) -> None:
        """Hand what was delivered to ``accept_batch``, dead-letter the refusals, then
        acknowledge; give everything from the first failure on back to the queue."""
        batch = list(self._pending)
        messages = [OutboundMessage(
            d.body, d.routing_key, getattr(d.properties, "message_id", None) or None,
            dict(getattr(d.properties, "headers", None) or {})) for d in batch]
        try:
            outcomes = list(self._accept_batch(messages))
        except (StoreError, OSError) as exc:  # the store or the archive's disk
            self._give_back(connection, channel, f"not recorded: {exc}")
            return
        except Exception as exc:  # a bug: logged with its traceback; never lose a message
            self._log.exception("outbound_accept_crashed", size=len(batch), error=str(exc))
            self._give_back(connection, channel, f"not recorded: {type(exc).__name__}: {exc}")
            return
        if len(outcomes) != len(batch):
            self._log.error("outbound_accept_miscounted", messages=len(batch),
                            outcomes=len(outcomes))
            self._give_back(connection, channel, "accept answered another number of results")
            return
        done = 0
        for d, m, outcome in zip(batch, messages, outcomes, strict=True):
            if outcome.status == "FAILED" and not self._dead_letter(d, m, outcome, dead):
                break
            self._log.info("outbound_received", routing_key=m.routing_key,
                           message_id=m.message_id, transmission_id=outcome.transmission_id,
                           partner=outcome.partner_id, status=outcome.status,
                           repeat=outcome.repeat)
            self._counts["refused" if outcome.status == "FAILED" else "received"] += 1
            done += 1
        if done:
            # Settled in order: one basic.ack (multiple) for all of them.
            channel.basic_ack(batch[done - 1].tag, multiple=True)
            del self._pending[:done]
            self._last_success = clock.now()
        if done < len(batch):
            self._give_back(connection, channel, "dead-letter copy not confirmed")
            return
        self._failing.reset()
        if self._outage_since is not None:
            down = (clock.now() - self._outage_since).total_seconds()
            self._log.info("outbound_bus_recovered", after_outage_s=round(down, 1))
            self._outage_since = None
            self._last_error = None

    def _dead_letter(self, d: _Delivery, m: OutboundMessage, outcome: Outcome,
                     dead: Any) -> bool:
        """Publish a refused message's copy with the reason to the dead-letter exchange;
        True once the broker confirmed it."""
        self._log.warning("outbound_refused_dead_lettered", routing_key=m.routing_key,
                          message_id=m.message_id, transmission_id=outcome.transmission_id,
                          partner=outcome.partner_id, stage=outcome.stage,
                          reason=outcome.reason)
        props = d.properties
        copy = pika.BasicProperties(
            content_type=getattr(props, "content_type", None),
            content_encoding=getattr(props, "content_encoding", None),
            headers=dead_headers(m.headers, outcome),
            delivery_mode=pika.DeliveryMode.Persistent,
            correlation_id=getattr(props, "correlation_id", None),
            message_id=m.message_id, timestamp=getattr(props, "timestamp", None),
            type=getattr(props, "type", None), app_id=getattr(props, "app_id", None))
        try:
            dead.basic_publish(self._names.dead_exchange, m.routing_key, m.body,
                               properties=copy, mandatory=True)
        except (px.UnroutableError, px.NackError) as exc:
            self._last_error = f"dead-letter copy not confirmed: {type(exc).__name__}"
            return False
        return True

    def _give_back(self, connection: Any, channel: Any, error: str) -> None:
        """Pause (serving the connection), then return every message in hand to the
        queue."""
        self._last_error = error
        delay = self._failing.next()
        if self._outage_since is None:
            self._outage_since = clock.now()
            self._log.warning("outbound_bus_not_recorded", error=error,
                              waiting=len(self._pending), retry_in=round(delay, 2),
                              message="documents for partners cannot be recorded; they go "
                                      "back to the queue and are tried again")
        else:
            self._log.debug("outbound_bus_not_recorded_again", error=error,
                            retry_in=round(delay, 2))
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            connection.sleep(min(0.25, left))
        if self._stop.is_set():
            return  # closing the connection returns them all the same
        # Settled in order, so every tag up to the last one delivered is unacknowledged:
        # one basic.nack (multiple) returns them all, the failed one first in line.
        returned, self._pending = self._pending, []
        channel.basic_nack(returned[-1].tag, multiple=True, requeue=True)
        self._counts["returned"] += len(returned)


def _one_by_one(accept: Accept) -> AcceptBatch:
    """``accept_batch`` over an ``accept`` of one message: a failure part-way returns the
    whole batch to the queue, and those recorded before it come back as repeats."""

    def batch(messages: list[OutboundMessage]) -> list[Outcome]:
        return [accept(m.body, m.routing_key, m.message_id, m.headers) for m in messages]

    return batch
