"""RabbitMQ: the outbox publisher (pipelined confirms) and the topology it publishes to."""

from gateway.bus.connect import check_broker
from gateway.bus.publisher import OutboxPublisher, PublisherHealth
from gateway.bus.settings import BusSettings, mask_url
from gateway.bus.topology import declare_topology

__all__ = ["BusSettings", "OutboxPublisher", "PublisherHealth", "check_broker",
           "declare_topology", "mask_url"]
