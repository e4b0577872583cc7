"""Receive, then acknowledge: the one order every channel keeps.

A payload is first received durably: archived and recorded as a transmission
(``Receiver.receive_many``). Only then is its transport acknowledged to the source: the
remote file deleted or moved, the mail flagged, the HTTP request answered 200 with its MDN
or reply. Then the receiver records that acknowledgement, and what needs processing is
handed to it.

Errors are the same for every channel: when the receive fails (the store is down, a
payload over the size limit), the error goes to the channel and nothing is acknowledged,
so the source keeps the payload and offers it again. When the acknowledgement fails after
the receive, the payload is safe; the source offers it again and the receiver recognises
it (a ``resumed`` receipt: acknowledged again, not processed twice).

``acknowledge`` is the channel's part. It is given the receipts, in the order of the items,
and returns an ``Acknowledgement``: the receipts it acknowledged (with the detail the
timeline shows), those to hand to processing (usually the same; a channel may hand them
before it acknowledges, or keep some back), and any answer of its own for the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.core.ports import Incoming, Receipt, Receiver

T = TypeVar("T")


@dataclass
class Acknowledgement(Generic[T]):
    """What the channel's acknowledgement did (see the module's docstring)."""

    acknowledged: list[Receipt] = field(default_factory=list)
    detail: str = ""
    process: list[Receipt] = field(default_factory=list)
    answer: T | None = None


def hand_over(receipts: Sequence[Receipt],
              on_received: Callable[[list[Receipt]], None] | None) -> None:
    """Hand to processing the receipts that need it (not a duplicate, not a resumed one)."""
    fresh = [r for r in receipts if r.needs_processing]
    if fresh and on_received is not None:
        on_received(fresh)


def receive_then_acknowledge(
        receiver: Receiver, items: list[Incoming],
        acknowledge: Callable[[list[Receipt]], Acknowledgement[T]],
        on_received: Callable[[list[Receipt]], None] | None) -> Acknowledgement[T]:
    """Receive ``items`` durably, then ``acknowledge`` them, record the acknowledgement and
    hand what needs it to processing. Errors of the receive propagate, nothing
    acknowledged."""
    receipts = receiver.receive_many(items)
    ack = acknowledge(receipts)
    if ack.acknowledged:
        receiver.acknowledged(ack.acknowledged, ack.detail)
    hand_over(ack.process, on_received)
    return ack


async def receive_then_acknowledge_async(
        receiver: Receiver, items: list[Incoming],
        acknowledge: Callable[[list[Receipt]], Awaitable[Acknowledgement[T]]],
        on_received: Callable[[list[Receipt]], None] | None, *,
        received: Callable[[list[Receipt]], None] | None = None) -> Acknowledgement[T]:
    """``receive_then_acknowledge`` for a channel whose acknowledgement is a coroutine (IMAP):
    the store's work runs in a worker thread. ``received`` runs in that thread right after the
    receive, before anything is acknowledged (the verdicts a channel records itself)."""
    def receive() -> list[Receipt]:
        receipts = receiver.receive_many(items)
        if received is not None:
            received(receipts)
        return receipts

    receipts = await asyncio.to_thread(receive)
    ack = await acknowledge(receipts)
    if ack.acknowledged:
        await asyncio.to_thread(receiver.acknowledged, ack.acknowledged, ack.detail)
    hand_over(ack.process, on_received)
    return ack
