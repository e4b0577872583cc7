"""The exchanges and queues edigw publishes to, declared idempotently.

    exchange  <settings.exchange>          topic, durable; routing key <doctype>.<partner>
      └─ queue <name>  (queue_type)        bound with each of its keys (default order.#),
                                           dead-lettering to the dead-letter exchange
      └─ queue <settings.test_queue>  (queue_type)  bound with ``test.#``: documents of
                                           partners in test (``test.<doctype>.<partner>``),
                                           declared whatever ``queues`` says
    exchange  <settings.dead_letter_exchange>  fanout, durable
      └─ queue <settings.dead_letter_queue> (queue_type)

Documents the ERP sends to partners come the other way (:class:`OutboundNames`)::

    exchange  edi.outbound           topic, durable; routing key <doctype>.<partner>
      └─ queue edigw.outbound        quorum, bound with ``#``, dead-lettering to
                                     edi.outbound.dead (a delivery limit, a rejection)
    exchange  edi.outbound.dead      fanout, durable
      └─ queue edigw.outbound.dead   quorum: what edigw refused, with its reason in the
                                     ``x-edigw-*`` headers (:mod:`gateway.bus.outbound`)

The outbound queues are quorum whatever ``[broker] queue_type`` says: they are new, so no
classic queue of that name exists to clash with, and a document for a partner must survive
the loss of a node as much as an order does.

``[broker] queue_type`` is ``quorum`` (the default, what edigw has always declared: the
queue is replicated on every node of a cluster and survives the loss of a minority of them)
or ``classic``. Both are declared durable, not exclusive and not auto-delete, as quorum
queues must be. RabbitMQ cannot change the type of an existing queue: declaring it with
another type (or other arguments) fails with PRECONDITION_FAILED, and the
:class:`BrokerError` then says which queue, what the broker holds and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika.exceptions as px

from gateway.bus.connect import broker_error, connect_any
from gateway.bus.settings import BusSettings
from gateway.core.errors import BrokerError


def type_arguments(queue_type: str) -> dict[str, Any]:
    """``x-queue-type``, said explicitly for a classic queue too (a vhost whose default type
    is quorum would otherwise make one; RabbitMQ 3.10 takes ``classic`` as equivalent to a
    classic queue declared without the argument)."""
    return {"x-queue-type": queue_type}


def queue_arguments(settings: BusSettings) -> dict[str, Any]:
    """Arguments of every document queue: its type, dead-lettering to the DLX."""
    return {**type_arguments(settings.queue_type),
            "x-dead-letter-exchange": settings.dead_letter_exchange}


def precondition_hint(queue: str, queue_type: str, broker_text: str) -> str:
    """What an operator should do when the broker refused to declare ``queue`` as it exists
    with other arguments (406 PRECONDITION_FAILED)."""
    if "x-queue-type" in broker_text:
        other = "classic" if queue_type == "quorum" else "quorum"
        return (f"queue {queue!r} already exists on the broker with another type than "
                f"[broker] queue_type = {queue_type!r}, and RabbitMQ cannot change a queue's "
                f"type in place: set queue_type = {other!r} to keep using it, or move its "
                f"messages away, delete it (rabbitmqctl delete_queue {queue}) and let edigw "
                f"declare it again as a {queue_type} queue")
    return (f"queue {queue!r} already exists on the broker with other arguments; delete it "
            f"(after moving its messages away) or make the settings match it")


@dataclass(frozen=True, slots=True)
class OutboundNames:
    """Where the ERP hands edigw documents for partners, and where refused ones go."""

    exchange: str = "edi.outbound"
    queue: str = "edigw.outbound"
    dead_exchange: str = "edi.outbound.dead"
    dead_queue: str = "edigw.outbound.dead"


#: The names edigw declares by default.
OUTBOUND = OutboundNames()


def declare_outbound(channel: Any, names: OutboundNames = OUTBOUND) -> None:
    """Declare the outbound exchange and queue and their dead letters on a pika channel
    (idempotent): both exchanges durable, both queues quorum, durable, bound with ``#``."""
    channel.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(names.dead_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(names.dead_queue, durable=True, exclusive=False, auto_delete=False,
                          arguments=type_arguments("quorum"))
    channel.queue_bind(names.dead_queue, names.dead_exchange)
    channel.queue_declare(names.queue, durable=True, exclusive=False, auto_delete=False,
                          arguments={**type_arguments("quorum"),
                                     "x-dead-letter-exchange": names.dead_exchange})
    channel.queue_bind(names.queue, names.exchange, routing_key="#")


def outbound_names(settings: BusSettings) -> OutboundNames:
    """The outbound exchange and queues the settings name."""
    return OutboundNames(settings.outbound_exchange, settings.outbound_queue,
                         settings.outbound_dead_exchange, settings.outbound_dead_queue)


#: The routing keys of a partner in test start with this word (``test.order.acme``).
TEST_KEYS = "test.#"


def test_binding(settings: BusSettings) -> list[tuple[str, str]]:
    """The test queue and its binding, unless ``queues`` already binds it (declared once)."""
    for name, keys in settings.queues:
        if name == settings.test_queue and TEST_KEYS in keys:
            return []
    return [(settings.test_queue, TEST_KEYS)]


#: ``declare_topology``'s default: the outbound names of its settings.
FROM_SETTINGS = OutboundNames("", "", "", "")


def declare_topology(settings: BusSettings, *, timeout: float = 10.0,
                     url: str | Sequence[str] | None = None,
                     outbound: OutboundNames | None = FROM_SETTINGS) -> None:
    """Declare exchanges, queues and bindings; raises BrokerError when the broker refuses.

    ``url``: the node (or nodes, tried in order) to declare on; the settings' nodes by
    default. On a cluster one node is enough: the others see the same topology.
    ``outbound``: the outbound exchange and queues too (by default those of the
    settings; None: not them)."""
    if outbound is FROM_SETTINGS:
        outbound = outbound_names(settings)
    connection, node = connect_any(url if url is not None else settings.urls, timeout=timeout)
    step = "opening a channel"
    queue = ""
    try:
        channel = connection.channel()
        step = f"declaring exchange {settings.exchange!r}"
        channel.exchange_declare(settings.exchange, exchange_type="topic", durable=True)
        step = f"declaring exchange {settings.dead_letter_exchange!r}"
        channel.exchange_declare(settings.dead_letter_exchange, exchange_type="fanout",
                                 durable=True)
        queue = settings.dead_letter_queue
        step = f"declaring {settings.queue_type} queue {queue!r}"
        channel.queue_declare(queue, durable=True, exclusive=False, auto_delete=False,
                              arguments=type_arguments(settings.queue_type))
        channel.queue_bind(queue, settings.dead_letter_exchange)
        for name, keys in settings.queues:
            queue = name
            step = f"declaring {settings.queue_type} queue {name!r}"
            channel.queue_declare(name, durable=True, exclusive=False, auto_delete=False,
                                  arguments=queue_arguments(settings))
            for key in keys:
                step = f"binding queue {name!r} to {settings.exchange!r} with {key!r}"
                channel.queue_bind(name, settings.exchange, routing_key=key)
        for name, key in test_binding(settings):
            queue = name
            step = f"declaring {settings.queue_type} queue {name!r}"
            channel.queue_declare(name, durable=True, exclusive=False, auto_delete=False,
                                  arguments=queue_arguments(settings))
            step = f"binding queue {name!r} to {settings.exchange!r} with {key!r}"
            channel.queue_bind(name, settings.exchange, routing_key=key)
        if outbound is not None:
            queue = outbound.queue
            step = f"declaring the outbound exchange and queues ({outbound.exchange!r})"
            declare_outbound(channel, outbound)
    except (px.AMQPError, OSError) as exc:
        error = broker_error(exc, node, doing=f"{step} on")
        if isinstance(exc, px.ChannelClosedByBroker) and exc.reply_code == 406 and queue:
            kind = "quorum" if outbound is not None and queue == outbound.queue \
                else settings.queue_type
            raise BrokerError(f"{error}: "
                              f"{precondition_hint(queue, kind, exc.reply_text)}") from exc
        raise error from exc
    finally:
        if connection.is_open:
            try:
                connection.close()
            except px.AMQPError:
                pass
