"""How edigw reaches RabbitMQ and which names it uses there (no TOML here: config builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.urls import mask_url as mask_url  # re-exported: gateway.bus uses it

#: One queue and the routing keys it is bound with on the documents exchange.
QueueBinding = tuple[str, tuple[str, ...]]

#: The queue types edigw declares: ``quorum`` (replicated on a cluster; what edigw has always
#: declared) or ``classic``.
QUEUE_TYPES = ("quorum", "classic")

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Broker URLs, exchange and queue names, queue type, and the publisher's pacing.

    ``urls``: the nodes of a cluster, tried in turn (round-robin) at each (re)connection;
    when empty it is ``(url,)``, and when given ``url`` becomes its first element (so code
    that needs one node keeps working). A ``url`` other than the default and not among
    ``urls`` wins (``dataclasses.replace(settings, url=…)`` means that one broker).

    ``queues`` may be given as a mapping ``{"erp.orders": ["order.#"]}``; it is kept as a
    tuple of ``(queue, (binding key, ...))`` so the settings stay hashable.
    """

    url: str = DEFAULT_URL
    exchange: str = "edi.documents"
    queues: tuple[QueueBinding, ...] = (("erp.orders", ("order.#",)),)
    dead_letter_exchange: str = "edi.documents.dlx"
    dead_letter_queue: str = "erp.orders.dead"
    #: The ERP's documents for partners (``edi.outbound``) and their dead letters.
    outbound_exchange: str = "edi.outbound"
    outbound_queue: str = "edigw.outbound"
    outbound_dead_exchange: str = "edi.outbound.dead"
    outbound_dead_queue: str = "edigw.outbound.dead"
    confirm_window: int = 256  # unconfirmed messages on the wire at most
    batch: int = 500  # outbox rows read per query
    retry_initial: float = 0.5  # seconds before the first reconnect attempt
    retry_max: float = 30.0
    poll_interval: float = 0.5  # seconds between outbox polls when nothing wakes the publisher
    heartbeat: int = 30  # AMQP heartbeat timeout (s) asked of the broker
    #: Messages unconfirmed and no basic.ack for this long (s): the publisher reconnects (to
    #: the next node) and publishes what is unconfirmed again.
    confirm_timeout: float = 30.0
    urls: tuple[str, ...] = ()  # the cluster's nodes; () means (url,)
    queue_type: str = "quorum"  # x-queue-type of the declared queues: "quorum" or "classic"
    #: Where documents of partners in test go: always declared, bound with ``test.#``.
    test_queue: str = "erp.test"

    def __post_init__(self) -> None:
        queues: Any = self.queues
        if isinstance(queues, Mapping):
            queues = queues.items()
        normal = tuple((str(name), _keys(keys)) for name, keys in queues)
        object.__setattr__(self, "queues", normal)
        urls: Any = self.urls
        urls = (urls,) if isinstance(urls, str) else tuple(str(u) for u in urls)
        if not urls or (self.url not in urls and self.url != DEFAULT_URL):
            # No list, or ``replace(settings, url=…)``: that one URL is the broker.
            urls = (self.url,)
        object.__setattr__(self, "url", urls[0])
        object.__setattr__(self, "urls", urls)
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                             f"not {self.queue_type!r}")
        if self.confirm_window < 1:
            raise ValueError(f"confirm_window must be at least 1, not {self.confirm_window}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, not {self.batch}")
        if self.confirm_timeout <= 0:
            raise ValueError(f"confirm_timeout must be positive, not {self.confirm_timeout}")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ValueError("retry_initial must be positive and not above retry_max")

    @property
    def safe_url(self) -> str:
        """The URL with its password replaced by ``***``, fit for logs and messages."""
        return mask_url(self.url)

    @property
    def safe_urls(self) -> str:
        """Every node's URL, passwords masked, comma-separated (for logs and messages)."""
        return ", ".join(mask_url(u) for u in self.urls)


def _keys(keys: str | Any) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else tuple(str(k) for k in keys)

