"""ERP acknowledgements: the message, its exchange and queue, and the consumer.

    exchange  <acks_exchange> (edi.acks)   topic, durable; the ERP publishes here, any key
      └─ queue <acks_queue> (edigw.acks)   [broker] queue_type (quorum by default), durable,
                                           bound with ``#``

The message (``docs/erp-acks.md``) is a JSON object::

    {"message_id": "…", "status": "accepted" | "rejected", "reason": "…",
     "at": "2024-05-02T09:15:00+02:00", "document_id": "…"}

``message_id`` is the id edigw published the document under (the AMQP ``message_id``);
``reason`` is required when rejected; ``at`` and ``document_id`` are optional. Status is
read case-insensitively; unknown fields are ignored.

:class:`AckConsumer` reads the queue on a thread of its own (pika ``BlockingConnection``,
prefetch 100) and acknowledges deliveries to the broker only AFTER the store has committed
them (at-least-once; a repeat is harmless, see :mod:`gateway.store.erp`). A malformed
message is recorded INVALID with its reason and acknowledged: requeueing it would only bring
it back. While the store is down, the deliveries stay unacknowledged on the open connection
and the commit is tried again with back-off; nothing is returned to the queue meanwhile
(RabbitMQ 4 quorum queues drop a message returned too often: 20 times by default), so no
acknowledgement is lost however long the outage. When the broker goes away, the consumer
reconnects with back-off; what it had not acknowledged is redelivered. On a cluster
(``broker_url`` a list of nodes) each reconnection goes to the next node, round-robin.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import pika
import pika.exceptions as px
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.bus.connect import Rotation, describe, parameters
from gateway.bus.settings import mask_url
from gateway.bus.topology import type_arguments
from gateway.core import clock
from gateway.core.errors import StoreError
from gateway.core.status import ErpStatus
from gateway.core.supervise import Backoff, supervised_thread
from gateway.store.db import Store
from gateway.store.erp import (
    APPLIED,
    INVALID,
    REPEAT,
    UNKNOWN,
    AckOutcome,
    ErpAck,
    ErpAcks,
    InvalidAck,
)

CONTENT_TYPE = "application/json"
PREFETCH = 100
MAX_REASON = 2000  # characters of a reason kept (a longer one is cut, not refused)

log = structlog.get_logger("edigw.acks")


# -- the message ------------------------------------------------------------------------------

class AckMessage(BaseModel):
    """The acknowledgement an ERP publishes on ``edi.acks`` (the JSON body)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    message_id: Annotated[str, Field(strict=True, min_length=1, max_length=64)]
    status: Literal["accepted", "rejected"]
    reason: Annotated[str, Field(strict=True)] | None = None
    at: dt.datetime | None = None
    document_id: Annotated[str, Field(strict=True, min_length=1, max_length=32)] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status_any_case(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("reason", mode="after")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        if not v:
            return None
        return v if len(v) <= MAX_REASON else v[:MAX_REASON - 1] + "…"

    @model_validator(mode="after")
    def _rejection_has_reason(self) -> AckMessage:
        if self.status == "rejected" and not self.reason:
            raise ValueError("reason is required when status is rejected")
        return self

    def to_ack(self) -> ErpAck:
        status = ErpStatus.ACCEPTED if self.status == "accepted" else ErpStatus.REJECTED
        return ErpAck(message_id=self.message_id, status=status,
                      reason=self.reason, at=self.at, document_id=self.document_id)


def parse_ack(body: bytes) -> ErpAck | InvalidAck:
    """The acknowledgement in ``body``, or what is wrong with it (never raises)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return InvalidAck(reason=f"not JSON: {exc}")
    if not isinstance(data, dict):
        return InvalidAck(reason=f"not a JSON object but a {type(data).__name__}")
    named = data.get("message_id")
    mid = (named.strip()[:64] or None) if isinstance(named, str) else None
    try:
        return AckMessage.model_validate(data).to_ack()
    except ValidationError as exc:
        return InvalidAck(reason=_errors(exc), message_id=mid)


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        text = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("missing", "value_error") and _short(err.get("input")):
            text += f", not {err['input']!r}"
        parts.append(f"{where}: {text}" if where else text)
    return "; ".join(parts)


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 80


def encode_ack(message_id: str, status: str, reason: str | None = None, *,
               at: dt.datetime | None = None, document_id: str | None = None) -> bytes:
    """The JSON body of an acknowledgement (what an ERP sends; tests and tools use it)."""
    body: dict[str, Any] = {"message_id": message_id, "status": status.lower()}
    if reason is not None:
        body["reason"] = reason
    if at is not None:
        body["at"] = at.isoformat()
    if document_id is not None:
        body["document_id"] = document_id
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


# -- topology ---------------------------------------------------------------------------------

class AckNames(Protocol):
    """Where acknowledgements arrive (``[tracker]`` settings provide these)."""

    @property
    def acks_exchange(self) -> str: ...
    @property
    def acks_queue(self) -> str: ...


def declare_acks(channel: Any, names: AckNames, queue_type: str = "quorum") -> None:
    """Declare the acknowledgement exchange (topic, durable) and the gateway's queue (of
    ``queue_type``, quorum by default) bound to it with ``#`` on a pika channel
    (idempotent)."""
    channel.exchange_declare(names.acks_exchange, exchange_type="topic", durable=True)
    channel.queue_declare(names.acks_queue, durable=True, exclusive=False, auto_delete=False,
                          arguments=type_arguments(queue_type))
    channel.queue_bind(names.acks_queue, names.acks_exchange, routing_key="#")


# -- the consumer -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AckConsumerHealth:
    """A snapshot of the consumer for /health and ``edigw status``."""

    connected: bool
    last_error: str | None
    node: str | None  # the broker node (masked URL) consumed from, or tried last
    last_success: dt.datetime | None  # last time acknowledgements were recorded
    consumed: int  # messages recorded and acknowledged to the broker since start
    accepted: int
    rejected: int
    unknown: int  # naming no published document
    invalid: int  # malformed
    store_outage_since: dt.datetime | None


#: ``on_order_answered(document_id, erp_status, reason, details)``: ``details`` is the
#: acknowledgement's JSON object (line details of an order, when the ERP sends them).
#: Raising StoreError leaves the acknowledgement on the broker (it comes again).
OnAnswered = Callable[[str, str, "str | None", dict[str, Any]], object]


@dataclass(frozen=True, slots=True)
class _Delivery:
    tag: int
    body: bytes


class AckConsumer:
    """Consumes the ERP's acknowledgements into the store until stopped."""

    def __init__(self, store: Store, broker_url: str | Sequence[str], names: AckNames, *,
                 prefetch: int = PREFETCH, retry_initial: float = 0.5, retry_max: float = 30.0,
                 declare: bool = True, heartbeat: int | None = None,
                 queue_type: str = "quorum",
                 on_order_answered: OnAnswered | None = None) -> None:
        self._acks = ErpAcks(store)
        #: Told of every document the ERP accepted or rejected (a repeat too: the callee
        #: does nothing twice), after the commit and before the broker's ack.
        self._on_answered = on_order_answered
        self._nodes = Rotation(broker_url)
        self._queue_type = queue_type
        self._names = names
        self._prefetch = prefetch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        #: Declare the exchange and queue at every (re)connection: the ERP can publish to
        #: ``edi.acks`` as soon as edigw has run once.
        self._declare = declare
        # Every node's parameters now: a malformed URL stops the start, not a reconnect.
        self._params = {url: parameters(url, heartbeat=heartbeat) for url in self._nodes.urls}
        self._log = log.bind(queue=names.acks_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[_Delivery] = []  # delivered, not yet recorded (I/O thread only)
        self._backoff = Backoff(retry_initial, retry_max)
        self._outage_logged = False
        # Health (written by the consumer thread, read by anyone).
        self._connected = False
        self._last_error: str | None = None
        self._last_success: dt.datetime | None = None
        self._store_outage_since: dt.datetime | None = None
        self._counts = {"consumed": 0, "accepted": 0, "rejected": 0, "unknown": 0,
                        "invalid": 0}

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the consumer thread; returns at once (it connects in the background)."""
        if self._thread is not None:
            raise RuntimeError("acknowledgement consumer already started")
        pika_log = logging.getLogger("pika")  # pika logs each failed attempt at ERROR
        if pika_log.level == logging.NOTSET:
            pika_log.setLevel(logging.CRITICAL)
        self._thread = supervised_thread("edigw-acks", self._run_once, stop=self._stop,
                                         backoff=self._backoff, quiet_return=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming and close the connection; what was not recorded yet stays on the
        queue (it is redelivered to the next consumer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning("acks_stop_timeout", timeout=timeout)

    @property
    def health(self) -> AckConsumerHealth:
        c = self._counts
        return AckConsumerHealth(
            connected=self._connected, last_error=self._last_error,
            node=mask_url(self._nodes.current), last_success=self._last_success,
            consumed=c["consumed"], accepted=c["accepted"],
            rejected=c["rejected"], unknown=c["unknown"], invalid=c["invalid"],
            store_outage_since=self._store_outage_since)

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
            self._log.warning("acks_broker_unavailable", error=error,
                              broker=mask_url(self._nodes.current),
                              message=f"cannot consume ERP acknowledgements ({error}); "
                                      "retrying")
        else:
            self._log.debug("acks_broker_unavailable_again", error=error,
                            broker=mask_url(self._nodes.current))

    def _serve_one_connection(self) -> None:
        url = self._nodes.next()  # a cluster: the next node at each (re)connection
        connection = pika.BlockingConnection(self._params[url])
        try:
            channel = connection.channel()
            if self._declare:
                declare_acks(channel, self._names, self._queue_type)
            channel.basic_qos(prefetch_count=self._prefetch)
            channel.basic_consume(self._names.acks_queue, self._on_delivery)
            self._connected = True
            self._backoff.reset()
            self._outage_logged = False
            self._log.info("acks_consuming", exchange=self._names.acks_exchange,
                           broker=mask_url(url))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.25)
                if self._pending:
                    self._settle(connection, channel)
        finally:
            self._connected = False
            if connection.is_open:
                try:
                    connection.close()
                except (px.AMQPError, OSError):
                    pass
        self._log.info("acks_stopped", broker=mask_url(url))

    def _on_delivery(self, _channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        self._pending.append(_Delivery(method.delivery_tag, bytes(body)))

    # -- recording ----------------------------------------------------------------------------

    def _settle(self, connection: Any, channel: Any) -> None:
        """Record what was delivered in one commit, then acknowledge it to the broker."""
        batch, self._pending = self._pending, []
        items = [(parse_ack(d.body), d.body) for d in batch]
        outcomes = self._record(connection, items)
        if outcomes is None:  # stopping during a store outage: the broker keeps them
            return
        if self._on_answered is not None:
            self._answered(batch, outcomes)
        channel.basic_ack(batch[-1].tag, multiple=True)
        self._last_success = clock.now()
        for outcome in outcomes:
            self._count(outcome)

    def _answered(self, batch: list[_Delivery], outcomes: list[AckOutcome]) -> None:
        """Tell ``on_order_answered`` of each document the ERP accepted or rejected. A
        StoreError goes up: the connection closes and the batch is redelivered."""
        assert self._on_answered is not None
        for delivery, outcome in zip(batch, outcomes, strict=True):
            if outcome.result not in (APPLIED, REPEAT) or not outcome.document_ids:
                continue
            try:
                details = json.loads(delivery.body)
            except ValueError:
                details = {}
            for document_id in outcome.document_ids:
                try:
                    self._on_answered(document_id, outcome.status, outcome.reason,
                                      details if isinstance(details, dict) else {})
                except StoreError:
                    raise
                except Exception as exc:  # a bug there must not hold up the acknowledgements
                    self._log.exception("erp_ack_answer_failed", document_id=document_id,
                                        error=f"{type(exc).__name__}: {exc}")

    def _record(self, connection: Any, items: list[tuple[ErpAck | InvalidAck, bytes]]
                ) -> list[AckOutcome] | None:
        """Commit ``items``; while the store is down, wait (keeping the connection alive)
        and try again. None when asked to stop meanwhile."""
        backoff = Backoff(self._retry_initial, self._retry_max)
        while True:
            try:
                outcomes = self._record_or_isolate(items)
            except StoreError as exc:
                self._last_error = str(exc)
                if self._store_outage_since is None:
                    self._store_outage_since = clock.now()
                    self._log.warning("acks_store_unavailable", error=str(exc),
                                      waiting=len(items),
                                      message="cannot record ERP acknowledgements; they stay "
                                              "on the broker until the store answers")
                if not self._pause(connection, backoff.next()):
                    return None
                continue
            if self._store_outage_since is not None:
                down = (clock.now() - self._store_outage_since).total_seconds()
                self._log.info("acks_store_back", after_outage_s=round(down, 1))
                self._store_outage_since = None
                self._last_error = None
            return outcomes

    def _record_or_isolate(self, items: list[tuple[ErpAck | InvalidAck, bytes]]
                           ) -> list[AckOutcome]:
        """Record the batch; should it fail for another reason than an outage (a value the
        database refuses), record its messages one by one so that one bad message cannot
        hold up the others, and that one as INVALID with the database's reason."""
        try:
            return self._acks.record_many(items)
        except StoreError:
            raise
        except Exception as exc:
            self._log.warning("acks_batch_refused", error=str(exc), size=len(items))
        out = []
        for ack, raw in items:
            try:
                out.append(self._acks.record(ack, raw))
            except StoreError:
                raise
            except Exception as exc:
                mid = getattr(ack, "message_id", None)
                out.append(self._acks.record(InvalidAck(
                    reason=f"could not be recorded: {type(exc).__name__}: {exc}"[:2000],
                    message_id=mid), raw))
        return out

    def _pause(self, connection: Any, seconds: float) -> bool:
        """Let ``seconds`` pass while serving the connection (heartbeats); False on stop."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            connection.sleep(min(0.25, left))
        return False

    def _count(self, outcome: AckOutcome) -> None:
        c = self._counts
        c["consumed"] += 1
        if outcome.result == INVALID:
            c["invalid"] += 1
            self._log.warning("erp_ack_invalid", message_id=outcome.message_id,
                              reason=outcome.reason)
            return
        if outcome.result == UNKNOWN:
            c["unknown"] += 1
            self._log.warning("erp_ack_unknown", message_id=outcome.message_id,
                              status=outcome.status,
                              message="the ERP acknowledged a message id edigw did not publish")
            return
        c["accepted" if outcome.status == ErpStatus.ACCEPTED else "rejected"] += 1
        self._log.info("erp_ack", message_id=outcome.message_id, status=outcome.status,
                       result=outcome.result, business_number=outcome.business_number,
                       transmission_id=",".join(outcome.transmission_ids),
                       reason=outcome.reason)
