"""Retention: raw payloads purged from the archive after their partner's ``retention_days``.

Only the raw bytes go. The transmission, its timeline, its documents (canonical JSON),
interchanges and everything else stay; the transmission gets ``purged_at`` and a ``purged``
event, so ``edigw show`` and ``edigw explain`` keep answering and a reprocess can say why it
cannot run. A partner without ``retention_days`` (in its profile or ``[tracker.defaults]``)
keeps its payloads for ever; transmissions with no known partner (quarantined, or a profile
since removed) follow the defaults, and a repeat of identical bytes its original's partner.

The archive is content-addressed: the same bytes received twice are one file. A file is
deleted only when no transmission that is not purged still has those bytes (a repeat still
within its retention, another partner's longer retention), nor an outbound payload or an
AS2 MDN (edigw's own messages, which retention does not touch).

Order of work, per batch: delete the files, then record ``purged_at`` in one commit. A crash
in between leaves transmissions whose files are gone but not yet marked; the next run marks
them (deleting a missing file is no error). The other order would leave files nobody ever
deletes. Bytes received again after their transmission was purged are recorded as a
DUPLICATE of it (the store still knows the digest) and are not processed; the small window
in which such a repeat's file could be deleted under it therefore loses nothing processed.

``RECEIVED`` transmissions (never processed, e.g. waiting after a crash) are never purged.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewaySettings, PartnerDirectory
from gateway.core import clock
from gateway.core.errors import PayloadPurged, StoreError
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.records import TransmissionRow, aware
from gateway.store.retention import PurgeCandidate, byte_holders, mark_purged, purge_candidates

#: Transmissions handled per commit.
BATCH = 500


def purged_message(transmission_id: str, purged_at: dt.datetime) -> str:
    """What a reprocess of a purged transmission answers."""
    return (f"transmission {transmission_id}: payload purged on "
            f"{aware(purged_at).strftime('%Y-%m-%d %H:%M UTC')} (retention); its metadata and "
            "documents are kept, but it cannot be reprocessed")


def ensure_payload(row: TransmissionRow) -> None:
    """Raise ``PayloadPurged`` when ``row``'s raw payload was purged (before a reprocess)."""
    if row.purged_at is not None:
        raise PayloadPurged(row.id, row.purged_at)


@dataclass(frozen=True, slots=True)
class Purged:
    """One transmission whose raw payload was (or, in a dry run, would be) purged."""

    transmission_id: str
    partner_id: str | None
    received_at: dt.datetime
    sha256: str
    size: int
    retention_days: int
    #: The archived file was deleted (False: kept for ``shared_with``, or already gone).
    deleted: bool
    #: A transmission not purged that has the same bytes (why the file was kept).
    shared_with: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__}
        out["received_at"] = self.received_at.isoformat()
        return out


@dataclass(slots=True)
class PurgeResult:
    """What a purge did (or, with ``dry_run``, would do)."""

    dry_run: bool
    at: dt.datetime
    purged: list[Purged] = field(default_factory=list)
    #: Partner (None: the defaults) -> its retention in days, for those that have one.
    retention: dict[str | None, int] = field(default_factory=dict)

    @property
    def files_deleted(self) -> int:
        return sum(1 for p in self.purged if p.deleted)

    @property
    def bytes_freed(self) -> int:
        return sum(p.size for p in self.purged if p.deleted)

    def as_dict(self) -> dict[str, Any]:
        return dict(dry_run=self.dry_run, at=self.at.isoformat(),
                    transmissions=len(self.purged), files_deleted=self.files_deleted,
                    bytes_freed=self.bytes_freed,
                    retention={k or "*": v for k, v in self.retention.items()},
                    purged=[p.as_dict() for p in self.purged])


def purge(store: Store, archive: Archive, settings: GatewaySettings,
          partners: PartnerDirectory, *, now: dt.datetime | None = None,
          dry_run: bool = False,
          on_batch: Callable[[Sequence[Purged]], None] | None = None) -> PurgeResult:
    """Purge the raw payloads older than their partner's retention; idempotent. ON_BATCH is
    told each batch purged (a progress bar)."""
    # UTC, as the store keeps it (SQLite compares the text without the offset).
    now = now.astimezone(dt.UTC) if now is not None else clock.now()
    result = PurgeResult(dry_run=dry_run, at=now)
    tracker = settings.tracker
    known = [p.id for p in partners]
    groups: list[tuple[str | None, int]] = []
    for p in partners:
        days = tracker.rules_for(p).retention_days
        if days:
            groups.append((p.id, days))
    default_days = tracker.rules_for(None).retention_days
    if default_days:
        groups.append((None, default_days))
    result.retention = dict(groups)
    planned: set[str] = set()  # a dry run's "purged so far"
    for partner_id, days in groups:
        cutoff = now - dt.timedelta(days=days)
        after: tuple[dt.datetime, str] | None = None
        while True:
            rows = purge_candidates(store, partner_id, known, cutoff, after, BATCH)
            if not rows:
                break
            after = (rows[-1].received_at, rows[-1].id)
            batch = _purge_batch(store, archive, rows, days, now, dry_run, planned)
            result.purged += batch
            if on_batch is not None:
                on_batch(batch)
    return result


def _purge_batch(store: Store, archive: Archive, rows: Sequence[PurgeCandidate], days: int,
                 now: dt.datetime, dry_run: bool, planned: set[str]) -> list[Purged]:
    ids = [r.id for r in rows]
    planned.update(ids)
    # Read just before deleting: a repeat received meanwhile keeps its bytes.
    holders = byte_holders(store, {r.sha256 for r in rows}, exclude=planned, chunk=BATCH)
    out: list[Purged] = []
    gone: set[str] = set()  # one file for the same bytes twice in a batch
    for r in rows:
        holder = holders.get(r.sha256)
        deleted = False
        if holder is None and r.sha256 not in gone:
            gone.add(r.sha256)
            deleted = r.sha256 in archive
            if not dry_run:
                _delete(archive, r.sha256)
        out.append(Purged(transmission_id=r.id, partner_id=r.partner_id,
                          received_at=r.received_at, sha256=r.sha256, size=r.size,
                          retention_days=days, deleted=deleted, shared_with=holder))
    if not dry_run:
        _record(store, out, now)
    return out


def _delete(archive: Archive, sha256: str) -> None:
    """Remove one archived file (the Archive has no delete of its own; its ``path_of`` gives
    the place). The folder is synced so that the removal survives a crash, as a write does."""
    path = archive.path_of(sha256)
    try:
        path.unlink(missing_ok=True)
        if archive.fsync and path.parent.exists():
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot delete archived payload {sha256[:12]} under "
                         f"{archive.root}: {exc}") from exc


def _record(store: Store, purged: Sequence[Purged], now: dt.datetime) -> None:
    """``purged_at`` and a ``purged`` event for each, in one commit (only where not set)."""
    mark_purged(store, {p.transmission_id: _purged_detail(p) for p in purged}, now)


def _purged_detail(p: Purged) -> str:
    """The ``purged`` event's detail: how long it was kept, and why its bytes stayed."""
    return (f"raw payload purged after {p.retention_days} day(s) of retention; metadata and "
            "documents kept"
            + ("" if p.shared_with is None else
               f" (archived bytes kept: also those of {p.shared_with})"))
