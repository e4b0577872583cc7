"""Where a document handed to edigw for partners goes: one partner's intake, or every
subscriber of a price list.

``route_outbound`` makes the ``accept`` callback of the ``edigw.outbound`` consumer
(``gateway.bus.outbound.OutboundConsumer``): the routing key ``<doctype>.<partner>`` says
the document type and the partner; the broker's ``message_id`` (else the SHA-256 of the
body) is the reference a redelivered message is recognised by. ``price-list.<name>`` where
``<name>`` is no partner but a list partners subscribe to (profile ``outbound.price_lists``)
goes to the price-list distributor, which hands the list to each subscriber's intake.

``edigw send --price-list`` and ``POST /api/outbound?price_list=`` use :func:`distribute`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from gateway.channels.intake import OutboundIntake, OutboundResult

PRICE_LIST = "price-list"


class Distribute(Protocol):
    """``PriceListDistributor.distribute``: one price list to each subscriber of
    ``list_id``; their results ([] when nobody subscribes)."""

    def __call__(self, body: bytes, *, list_id: str, origin: str,
                 ref: str | None) -> list[OutboundResult]: ...


#: ``accept(body, routing_key, message_id, headers)`` of the outbound consumer.
Accept = Callable[[bytes, str, "str | None", dict[str, Any]], OutboundResult]


def split_key(routing_key: str) -> tuple[str | None, str | None]:
    """``(doc_type, partner)`` of ``<doctype>.<partner>`` (a partner id may hold dots);
    None for a part that is empty. The document type is not checked here: the intake
    refuses a document whose type is not the one its key names."""
    head, _, rest = routing_key.strip().partition(".")
    return (head or None), (rest or None)


def message_ref(body: bytes, message_id: str | None) -> str:
    """What a redelivered message is recognised by: its id, else its bytes' SHA-256."""
    if message_id and message_id.strip():
        return message_id.strip()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def summary(results: list[OutboundResult]) -> OutboundResult:
    """One result for several (a price list sent to each subscriber): the first refusal,
    else the first result."""
    return next((r for r in results if r.failed), results[0])


def route_outbound(intake: OutboundIntake, distribute: Distribute | None = None) -> Accept:
    """The ``accept`` callback of the ``edigw.outbound`` consumer over ``intake``."""

    def accept(body: bytes, routing_key: str, message_id: str | None,
               headers: dict[str, Any]) -> OutboundResult:
        doc_type, partner = split_key(routing_key)
        ref = message_ref(body, message_id)
        if (doc_type == PRICE_LIST and partner is not None and distribute is not None
                and intake.partners(partner) is None):
            results = distribute(body, list_id=partner, origin="erp", ref=ref)
            if results:
                return summary(results)
            # Nobody subscribes: the intake refuses it as for an unknown partner.
        return intake.accept(body, origin="erp", ref=ref, partner=partner, doc_type=doc_type)

    return accept


def distributor_of(gateway: Any) -> Distribute | None:
    """The price-list distributor of a running gateway (``Gateway.price_lists``), if any."""
    lists = getattr(gateway, "price_lists", None)
    method = getattr(lists, "distribute", None)
    return method if callable(method) else None
