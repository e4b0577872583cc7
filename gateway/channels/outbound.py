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

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.records import OutboundRow

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.channels.outbound")


class Sender(Protocol):
    """Delivers one outbound payload; returns where it went (for the timeline)."""

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> str:
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
        folder = self.folder_for(row.partner_id, partner)
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(row.filename).name  # never a path from elsewhere
        target = folder / name
        n = 1
        while target.exists():
            if target.read_bytes() == data:  # delivered before a crash: done
                return f"{row.kind} written to {target}"
            n += 1
            target = folder / f"{Path(name).stem}.{n}{Path(name).suffix}"
        temp = folder / f".{target.name}.part"
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return f"{row.kind} written to {target}"


class OutboundDispatcher:
    """Delivers PENDING outbound rows through the sender of their channel."""

    def __init__(self, store: Store, archive: Archive, *, senders: dict[str, Sender],
                 partner: Callable[[str], Partner | None], max_attempts: int = 10) -> None:
        self.store = store
        self.archive = archive
        self.senders = senders
        self.partner = partner
        self.max_attempts = max_attempts

    def deliver_pending(self, limit: int = 500) -> int:
        """Send every pending payload whose channel has a sender; returns how many went.
        Never raises for one payload: its failure is recorded and the others go on."""
        delivered = 0
        for row in self.store.pending_outbound(limit):
            sender = self.senders.get(row.channel)
            if sender is None:
                continue  # a channel this process does not run (yet): left pending
            try:
                detail = sender.send(row, self.archive.get(row.sha256),
                                     self.partner(row.partner_id))
            except Exception as exc:  # recorded, retried, never fatal
                give_up = row.attempts + 1 >= self.max_attempts
                self.store.mark_outbound_failed(row.id, f"{type(exc).__name__}: {exc}",
                                                give_up=give_up)
                log.warning("outbound_failed", outbound_id=row.id, partner=row.partner_id,
                            channel=row.channel, filename=row.filename, error=str(exc),
                            gave_up=give_up)
                continue
            self.store.mark_outbound_sent(row.id, detail)
            log.info("outbound_delivered", outbound_id=row.id, partner=row.partner_id,
                     kind=row.kind, channel=row.channel, detail=detail)
            delivered += 1
        return delivered
