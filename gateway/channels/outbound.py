"""Outbound delivery: files for partners (CONTRL …) sent by the channel their profile names.

The payload and its ``outbound`` row were committed with the outcome they answer, so a crash
before delivery only delays it: ``deliver_pending`` runs after every processing batch, at
start-up and periodically, and picks up whatever is still PENDING. Each channel has a
``Sender``: ``folder`` writes into a local folder (this module), ``sftp`` puts the file on
the partner's server (``gateway.channels.sftp``). A sender writes under a temporary name and
renames when complete, so a partner's poller never sees half a file; a failure is recorded
on the row and retried until ``max_attempts``, then the row is FAILED for an operator.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from gateway.core import clock
from gateway.core.errors import EdigwError
from gateway.store.archive import Archive, make_durable
from gateway.store.db import Store
from gateway.store.records import OutboundRow

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.channels.outbound")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a sender tells of one delivery.

    ``delivered``: the partner's side confirmed it as part of the sending (a folder or SFTP
    rename done, a positive synchronous MDN); False when a receipt is still to come (an
    asynchronous MDN, a CONTRL) or none will (SMTP accepted it). ``remote_id`` is what that
    later receipt names (the AS2 Message-ID, the mail's Message-ID). ``receipt`` is the
    receipt itself as text (an MDN's disposition and MIC)."""

    detail: str
    delivered: bool = True
    remote_id: str | None = None
    receipt: str | None = None


class DeliveryRefused(EdigwError):
    """The partner refused the payload for good (a negative MDN: its disposition): the
    delivery fails at once, without retries."""


class Sender(Protocol):
    """Delivers one outbound payload. Returns where it went (for the timeline) as a
    string — delivered, as a folder write is — or a ``Delivery``; raises to be retried,
    or ``DeliveryRefused`` to fail at once."""

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> str | Delivery:
        ...


class FolderSender:
    """Writes into ``[outbound] folder`` of the partner, else ``<root>/<partner id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder_for(self, partner_id: str, partner: Partner | None) -> Path:
        if partner is not None and partner.outbound.folder is not None:
            return partner.outbound.folder
        return self.root / partner_id

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> str:
        target, written = self._write(row, data, partner)
        if written:
            make_durable([target])
        return f"{row.kind} written to {target}"

    def send_many(self, batch: list[tuple[OutboundRow, bytes, Partner | None]]
                  ) -> list[str | Delivery | Exception]:
        """``send`` for a batch: every file written and renamed, then all made durable
        with one sync; a file that could not be written is its own failure."""
        results: list[str | Delivery | Exception] = []
        written: list[Path] = []
        for row, data, partner in batch:
            try:
                target, fresh = self._write(row, data, partner)
            except Exception as exc:
                results.append(exc)
                continue
            if fresh:
                written.append(target)
            results.append(f"{row.kind} written to {target}")
        try:
            make_durable(written)
        except OSError as exc:  # nothing is known to be durable: every one is retried
            return [exc for _ in batch]
        return results

    def send_file(self, row: OutboundRow, source: Path, partner: Partner | None) -> str:
        """``send`` for a payload too big to hold: copied from the archive block by block."""
        folder = self.folder_for(row.partner_id, partner)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(row.filename).name
        n = 1
        while target.exists():
            if target.stat().st_size == source.stat().st_size and _same_file(target, source):
                return f"{row.kind} written to {target}"
            n += 1
            target = folder / f"{Path(row.filename).stem}.{n}{Path(row.filename).suffix}"
        temp = folder / f".{target.name}.part"
        with open(source, "rb") as src, open(temp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        os.replace(temp, target)
        make_durable([target])
        return f"{row.kind} written to {target}"

    def _write(self, row: OutboundRow, data: bytes, partner: Partner | None
               ) -> tuple[Path, bool]:
        """Write under a temporary name and rename; (target, False) when it is there
        already with the same bytes (delivered before a crash)."""
        folder = self.folder_for(row.partner_id, partner)
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(row.filename).name  # never a path from elsewhere
        target = folder / name
        n = 1
        while target.exists():
            if target.read_bytes() == data:  # delivered before a crash: done
                return target, False
            n += 1
            target = folder / f"{Path(name).stem}.{n}{Path(name).suffix}"
        temp = folder / f".{target.name}.part"
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
        return target, True


class OutboundDispatcher:
    """Delivers PENDING outbound rows through the sender of their channel.

    A failed attempt is tried again after a back-off (``retry_initial`` seconds, doubled
    each time up to ``retry_max``); after ``max_attempts`` the row is FAILED (and an
    outbound document's transmission with it), which the tracker alerts on. A partner's
    refusal (``DeliveryRefused``, e.g. a negative MDN) fails it at once. A suspended
    partner's rows are not sent: they wait, PENDING, until it is live again."""

    def __init__(self, store: Store, archive: Archive, *, senders: dict[str, Sender],
                 partner: Callable[[str], Partner | None], max_attempts: int = 10,
                 retry_initial: float = 30.0, retry_max: float = 3600.0) -> None:
        self.store = store
        self.archive = archive
        self.senders = senders
        self.partner = partner
        self.max_attempts = max_attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        #: Partners found suspended at the last look: their rows wait.
        self._held: set[str] = set()

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1, 2 …)."""
        return float(min(self.retry_max, self.retry_initial * 2.0 ** min(max(attempts - 1, 0), 30)))

    def deliver_pending(self, limit: int = 500) -> int:
        """Send every pending payload whose channel has a sender; returns how many went.
        Never raises for one payload: its failure is recorded and the others go on."""
        delivered = 0
        batches: dict[str, list[OutboundRow]] = {}
        # A suspended partner's rows wait until it is live again: those found suspended
        # before are left out of the query (while they still are), the others skipped here.
        held = {pid for pid in self._held if self._suspended(pid)}
        for row in self.store.pending_outbound(limit, held=held):
            if self._suspended(row.partner_id):
                held.add(row.partner_id)
                continue
            sender = self.senders.get(row.channel)
            if sender is None:
                continue  # a channel this process does not run (yet): left pending
            if hasattr(sender, "send_many") and row.size <= self.LARGE:
                batches.setdefault(row.channel, []).append(row)
            elif self.deliver_one(row, sender):
                delivered += 1
        for channel, rows in batches.items():
            delivered += self._deliver_batch(rows, self.senders[channel])
        if held - self._held:
            log.info("outbound_held", partners=sorted(held - self._held),
                     reason="partner suspended: delivered once it is live again")
        self._held = held
        return delivered

    def _suspended(self, partner_id: str) -> bool:
        partner = self.partner(partner_id)
        return partner is not None and partner.state == "suspended"

    #: Rows handed to a sender's ``send_many`` at once (one sync, one commit).
    BATCH = 100

    def _deliver_batch(self, rows: list[OutboundRow], sender: Sender) -> int:
        delivered = 0
        for first in range(0, len(rows), self.BATCH):
            chunk = rows[first:first + self.BATCH]
            batch = []
            for row in chunk:
                try:
                    data = self.archive.get(row.sha256)
                except Exception as exc:
                    self._failed(row, exc)
                    continue
                batch.append((row, data, self.partner(row.partner_id)))
            results = sender.send_many(batch)  # type: ignore[attr-defined]
            sent = []
            for (row, _, _), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    self._failed(row, result)
                    continue
                delivery = result if isinstance(result, Delivery) else Delivery(detail=result)
                sent.append((row.id, delivery.detail, delivery.delivered, delivery.remote_id,
                             delivery.receipt))
                log.info("outbound_delivered" if delivery.delivered else "outbound_sent",
                         outbound_id=row.id, partner=row.partner_id, kind=row.kind,
                         channel=row.channel, detail=delivery.detail)
            self.store.mark_outbound_sent_many(sent)
            delivered += len(sent)
        return delivered

    def _failed(self, row: OutboundRow, exc: Exception) -> None:
        if isinstance(exc, DeliveryRefused):
            self.store.mark_outbound_failed(row.id, f"refused by the partner: {exc}",
                                            give_up=True)
            log.warning("outbound_refused", outbound_id=row.id, partner=row.partner_id,
                        channel=row.channel, filename=row.filename, error=str(exc))
            return
        attempts = row.attempts + 1
        give_up = attempts >= self.max_attempts
        retry_at = None if give_up else \
            clock.now() + dt.timedelta(seconds=self.backoff(attempts))
        self.store.mark_outbound_failed(row.id, f"{type(exc).__name__}: {exc}",
                                        give_up=give_up, retry_at=retry_at)
        log.warning("outbound_failed", outbound_id=row.id, partner=row.partner_id,
                    channel=row.channel, filename=row.filename, error=str(exc),
                    attempts=attempts, gave_up=give_up)

    #: A payload larger than this goes to a sender that can take a file (``send_file``)
    #: from the archive, never whole in memory.
    LARGE = 16 << 20

    def deliver_one(self, row: OutboundRow, sender: Sender) -> bool:
        """One attempt at ``row``; True when it went."""
        try:
            by_file = getattr(sender, "send_file", None)
            if by_file is not None and row.size > self.LARGE:
                result = by_file(row, self.archive.path_of(row.sha256),
                                 self.partner(row.partner_id))
            else:
                result = sender.send(row, self.archive.get(row.sha256),
                                     self.partner(row.partner_id))
        except Exception as exc:  # recorded, retried (or refused for good), never fatal
            self._failed(row, exc)
            return False
        delivery = result if isinstance(result, Delivery) else Delivery(detail=result)
        self.store.mark_outbound_sent(row.id, delivery.detail, delivered=delivery.delivered,
                                      remote_id=delivery.remote_id, receipt=delivery.receipt)
        log.info("outbound_delivered" if delivery.delivered else "outbound_sent",
                 outbound_id=row.id, partner=row.partner_id, kind=row.kind,
                 channel=row.channel, detail=delivery.detail)
        return True


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
