"""The exchanges and queues edigw publishes to, declared idempotently.

    exchange  <settings.exchange>          topic, durable; routing key <doctype>.<partner>
      └─ queue <name>  (quorum)            bound with each of its keys (default order.#),
                                           dead-lettering to the dead-letter exchange
    exchange  <settings.dead_letter_exchange>  fanout, durable
      └─ queue <settings.dead_letter_queue> (quorum)

Declaring an existing queue with other arguments fails (PRECONDITION_FAILED); the
:class:`BrokerError` then says which queue and why.
"""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions as px

from gateway.bus.connect import broker_error, parameters
from gateway.bus.settings import BusSettings


def queue_arguments(settings: BusSettings) -> dict[str, Any]:
    """Arguments of every document queue: quorum, dead-lettering to the DLX."""
    return {"x-queue-type": "quorum", "x-dead-letter-exchange": settings.dead_letter_exchange}


def declare_topology(settings: BusSettings, *, timeout: float = 10.0) -> None:
    """Declare exchanges, queues and bindings; raises BrokerError when the broker refuses."""
    step = f"connecting to {settings.safe_url}"
    try:
        connection = pika.BlockingConnection(parameters(settings.url, timeout=timeout))
    except (px.AMQPError, OSError) as exc:
        raise broker_error(exc, settings.url) from exc
    try:
        channel = connection.channel()
        step = f"declaring exchange {settings.exchange!r}"
        channel.exchange_declare(settings.exchange, exchange_type="topic", durable=True)
        step = f"declaring exchange {settings.dead_letter_exchange!r}"
        channel.exchange_declare(settings.dead_letter_exchange, exchange_type="fanout",
                                 durable=True)
        step = f"declaring queue {settings.dead_letter_queue!r}"
        channel.queue_declare(settings.dead_letter_queue, durable=True,
                              arguments={"x-queue-type": "quorum"})
        channel.queue_bind(settings.dead_letter_queue, settings.dead_letter_exchange)
        for name, keys in settings.queues:
            step = f"declaring queue {name!r}"
            channel.queue_declare(name, durable=True, arguments=queue_arguments(settings))
            for key in keys:
                step = f"binding queue {name!r} to {settings.exchange!r} with {key!r}"
                channel.queue_bind(name, settings.exchange, routing_key=key)
    except (px.AMQPError, OSError) as exc:
        raise broker_error(exc, settings.url, doing=f"{step} on") from exc
    finally:
        if connection.is_open:
            try:
                connection.close()
            except px.AMQPError:
                pass
