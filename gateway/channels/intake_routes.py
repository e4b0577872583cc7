"""Where a document handed to edigw for partners goes: one partner's intake, or every
subscriber of a price list.

``route_outbound_batch`` (or ``route_outbound``, one message at a time) makes the callback of
the ``edigw.outbound`` consumer (``gateway.bus.outbound.OutboundConsumer``): the routing key ``<doctype>.<partner>`` says
the document type and the partner; the broker's ``message_id`` (else the SHA-256 of the
body) is the reference a redelivered message is recognised by. ``price-list.<name>`` where
``<name>`` is no partner but a list partners subscribe to (profile ``outbound.price_lists``)
goes to the price-list distributor (``Gateway.distributor``), which hands the list to each
subscriber's intake; a refusal among its copies is the message's result (dead-lettered).

``edigw send --price-list`` and ``POST /api/outbound?price_list=`` use :func:`distribute`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.channels.intake import Incoming, OutboundIntake, OutboundRefused, OutboundResult

PRICE_LIST = "price-list"


class Distributor(Protocol):
    """What is used of ``gateway.channels.pricelists.PriceListDistributor``."""

    def distribute(self, data: bytes, *, list_id: str, origin: str,
                   ref: str | None = None) -> list[OutboundResult]:
        """One price list to each subscriber of ``list_id``: their results."""
        ...


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


class Message(Protocol):
    """A message of ``edigw.outbound`` (``gateway.bus.outbound.OutboundMessage``)."""

    @property
    def body(self) -> bytes: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, Any]: ...


#: ``accept_batch(messages)`` of the outbound consumer.
AcceptBatch = Callable[[Sequence[Message]], list[OutboundResult]]


def _to_list(intake: OutboundIntake, lists: Distributor | None, doc_type: str | None,
             name: str | None) -> str | None:
    """The price list a routing key names (``price-list.<list>`` where ``<list>`` is no
    partner), when a distributor is there to send it."""
    if doc_type == PRICE_LIST and name is not None and lists is not None \
            and intake.partners(name) is None:
        return name
    return None


def _distributed(intake: OutboundIntake, lists: Distributor, body: bytes, list_id: str,
                 ref: str) -> OutboundResult:
    try:
        results = lists.distribute(body, list_id=list_id, origin="erp", ref=ref)
    except OutboundRefused:  # not even a list id: refused as an unknown partner
        results = []
    if results:
        return summary(results)
    return intake.accept(body, origin="erp", ref=ref, partner=list_id, doc_type=PRICE_LIST)


def route_outbound(intake: OutboundIntake, distributor: Distributor | None = None) -> Accept:
    """The ``accept`` callback of the ``edigw.outbound`` consumer over ``intake`` (and the
    gateway's price-list ``distributor``, when there is one)."""

    def accept(body: bytes, routing_key: str, message_id: str | None,
               headers: dict[str, Any]) -> OutboundResult:
        doc_type, partner = split_key(routing_key)
        ref = message_ref(body, message_id)
        list_id = _to_list(intake, distributor, doc_type, partner)
        if list_id is not None and distributor is not None:
            return _distributed(intake, distributor, body, list_id, ref)
        return intake.accept(body, origin="erp", ref=ref, partner=partner, doc_type=doc_type)

    return accept


def route_outbound_batch(intake: OutboundIntake, distributor: Distributor | None = None
                         ) -> AcceptBatch:
    """The ``accept_batch`` callback of the ``edigw.outbound`` consumer: the documents for
    partners received together (``OutboundIntake.accept_many``: one archive sync, one
    commit), a price list for its subscribers on its own; results in message order."""

    def accept_batch(messages: Sequence[Message]) -> list[OutboundResult]:
        results: list[OutboundResult | None] = [None] * len(messages)
        batch: list[tuple[int, Incoming]] = []
        for n, m in enumerate(messages):
            doc_type, partner = split_key(m.routing_key)
            ref = message_ref(m.body, m.message_id)
            list_id = _to_list(intake, distributor, doc_type, partner)
            if list_id is not None and distributor is not None:
                results[n] = _distributed(intake, distributor, m.body, list_id, ref)
            else:
                batch.append((n, Incoming(m.body, origin="erp", ref=ref, partner=partner,
                                          doc_type=doc_type)))
        if batch:
            for (n, _), result in zip(batch, intake.accept_many([i for _, i in batch]),
                                      strict=True):
                results[n] = result
        return [r for r in results if r is not None]

    return accept_batch


def distributor_of(gateway: Any) -> Distributor | None:
    """The price-list distributor of a gateway (``Gateway.distributor``), if any."""
    lists = getattr(gateway, "distributor", None)
    return lists if callable(getattr(lists, "distribute", None)) else None
