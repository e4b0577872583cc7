"""Outbound folder delivery: files for partners (CONTRL …) written where they collect them.

The payload and its ``outbound`` row were committed with the outcome they answer, so a crash
before delivery only delays it: ``deliver_pending`` runs after every processing batch, at
start-up and periodically, and picks up whatever is still PENDING. A file is written under a
temporary name (``.<name>.part``, which every folder watcher ignores), synced and renamed,
so a partner's poller never sees half a file. An existing file of the same name with other
content is never overwritten: the new one gets a numbered name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.config import Partner
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.records import OutboundRow

log = structlog.get_logger("edigw.channels.outbound")


class OutboundFolders:
    """Delivers PENDING outbound rows whose channel is ``folder``."""

    def __init__(self, store: Store, archive: Archive, *, root: Path,
                 partner: Callable[[str], Partner | None], max_attempts: int = 10) -> None:
        self.store = store
        self.archive = archive
        self.root = root
        self.partner = partner
        self.max_attempts = max_attempts

    def folder_for(self, partner_id: str) -> Path:
        p = self.partner(partner_id)
        if p is not None and p.outbound.folder is not None:
            return p.outbound.folder
        return self.root / partner_id

    def deliver_pending(self, limit: int = 500) -> int:
        """Write every pending file; returns how many were delivered. Never raises for one
        file: its failure is counted and recorded, and the others go on."""
        delivered = 0
        for row in self.store.pending_outbound(limit):
            if row.channel != "folder":
                continue
            try:
                target = self._write(row)
            except Exception as exc:  # recorded, retried, never fatal
                give_up = row.attempts + 1 >= self.max_attempts
                self.store.mark_outbound_failed(row.id, f"{type(exc).__name__}: {exc}",
                                                give_up=give_up)
                log.warning("outbound_failed", outbound_id=row.id, partner=row.partner_id,
                            filename=row.filename, error=str(exc), gave_up=give_up)
                continue
            self.store.mark_outbound_sent(row.id, f"{row.kind} written to {target}")
            log.info("outbound_delivered", outbound_id=row.id, partner=row.partner_id,
                     kind=row.kind, path=str(target))
            delivered += 1
        return delivered

    def _write(self, row: OutboundRow) -> Path:
        data = self.archive.get(row.sha256)
        folder = self.folder_for(row.partner_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(row.filename).name  # never a path from elsewhere
        target = folder / name
        n = 1
        while target.exists():
            if target.read_bytes() == data:  # delivered before a crash: done
                return target
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
        return target
