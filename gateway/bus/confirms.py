"""Which outbox rows the broker has confirmed, returned or refused (sans-IO, no pika).

RabbitMQ numbers the messages published on a channel in confirm mode 1, 2, 3 …; a
``basic.ack`` or ``basic.nack`` names one delivery tag or, with ``multiple``, every tag up to
it. A mandatory message that no queue takes comes back as ``basic.return`` *before* its
ack (RabbitMQ "Publisher Confirms", "When will messages be confirmed?"), so a return only
marks the entry; the ack that follows settles it as unroutable instead of published.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _InFlight:
    tag: int
    outbox_id: int
    key: str
    returned: str | None = None  # the broker's reason, once a basic.return arrived


@dataclass(frozen=True, slots=True)
class Settled:
    """What one ack settled: rows to mark published, rows to mark unroutable (with reason)."""

    published: list[int] = field(default_factory=list)
    unroutable: list[tuple[int, str]] = field(default_factory=list)


class ConfirmTracker:
    """Delivery tags of one channel in confirm mode, mapped to outbox ids.

    ``key`` identifies a message in a ``basic.return`` (the publisher uses the document id
    it sends as a header, since a return carries no delivery tag).
    """

    def __init__(self) -> None:
        self._next_tag = 1
        self._pending: OrderedDict[int, _InFlight] = OrderedDict()  # tags in publish order
        self._by_key: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def outbox_ids(self) -> Iterator[int]:
        return (entry.outbox_id for entry in self._pending.values())

    def published(self, outbox_id: int, key: str) -> int:
        """Record a basic.publish; returns the delivery tag the broker will confirm."""
        tag = self._next_tag
        self._next_tag += 1
        self._pending[tag] = _InFlight(tag, outbox_id, key)
        self._by_key[key] = tag
        return tag

    def returned(self, key: str, reason: str) -> bool:
        """A basic.return for ``key``; False when no such message is in flight."""
        tag = self._by_key.get(key)
        if tag is None:
            return False
        self._pending[tag].returned = reason
        return True

    def acked(self, tag: int, multiple: bool) -> Settled:
        """A basic.ack: every settled row is either published or, if returned, unroutable."""
        settled = Settled()
        for entry in self._take(tag, multiple):
            if entry.returned is None:
                settled.published.append(entry.outbox_id)
            else:
                settled.unroutable.append((entry.outbox_id, entry.returned))
        return settled

    def nacked(self, tag: int, multiple: bool) -> list[int]:
        """A basic.nack: the broker refused these rows; they must be published again."""
        return [entry.outbox_id for entry in self._take(tag, multiple)]

    def abandon(self) -> list[int]:
        """The channel is gone: every unconfirmed row must be published again."""
        ids = list(self.outbox_ids())
        self._pending.clear()
        self._by_key.clear()
        return ids

    def _take(self, tag: int, multiple: bool) -> list[_InFlight]:
        taken: list[_InFlight] = []
        if multiple:
            while self._pending:
                first = next(iter(self._pending))
                if first > tag:
                    break
                taken.append(self._pending.popitem(last=False)[1])
        elif tag in self._pending:
            taken.append(self._pending.pop(tag))
        for entry in taken:
            if self._by_key.get(entry.key) == entry.tag:
                del self._by_key[entry.key]
        return taken
