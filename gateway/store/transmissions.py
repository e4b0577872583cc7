"""The transmission repository: receipt, acknowledgement, attempts, failures, timelines.

A transmission is one payload a channel received; its row and its events (the timeline)
are written here, except where its documents settle it (``documents``, ``outbox``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from gateway.core.ids import new_id
from gateway.core.records import NewTransmission
from gateway.core.scope import EVERYTHING, Scope
from gateway.store import schema as s
from gateway.store.engine import StoreEngine, chunks, utcnow
from gateway.store.instances import DEAD_AFTER, live_instances
from gateway.store.records import LogFilter, TransmissionRow, aware


class TransmissionRepository(StoreEngine):
    """Transmissions and their timeline: received, acknowledged, attempted, failed, read."""

    def find_by_sha256(self, sha256: str) -> TransmissionRow | None:
        """The first transmission (not itself a duplicate) that had these exact bytes."""
        q = (
            sa.select(s.transmissions)
            .where(s.transmissions.c.sha256 == sha256)
            .where(s.transmissions.c.status != s.DUPLICATE)
            .order_by(s.transmissions.c.received_at)
            .limit(1)
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
        return TransmissionRow.from_row(row) if row else None

    def receive_lookup(self, channel: str, items: Sequence[tuple[str | None, str]]
                       ) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """For a batch of (channel_ref, sha256): the first transmission of each digest, and
        the unacknowledged transmissions from this exact channel place (crash leftovers)."""
        t = s.transmissions
        digests = sorted({sha for _, sha in items})
        refs = sorted({ref for ref, _ in items if ref})
        originals: dict[str, tuple[Any, str]] = {}
        unacked: dict[tuple[str, str], str] = {}
        with self.connect() as conn:
            for chunk in chunks(digests, 500):
                rows = conn.execute(
                    sa.select(t.c.id, t.c.sha256, t.c.received_at, t.c.channel, t.c.channel_ref,
                              t.c.acknowledged_at)
                    .where(t.c.sha256.in_(chunk)).where(t.c.status != s.DUPLICATE)).all()
                for r in rows:
                    best = originals.get(r.sha256)
                    if best is None or (r.received_at, r.id) < best[0]:
                        originals[r.sha256] = ((r.received_at, r.id), r.id)
                    if (r.channel == channel and r.acknowledged_at is None
                            and r.channel_ref in refs):
                        unacked[(r.channel_ref, r.sha256)] = r.id
        return {sha: v[1] for sha, v in originals.items()}, unacked

    def record_received(self, *, channel: str, channel_ref: str | None, filename: str | None,
                        size: int, sha256: str, partner_id: str | None = None,
                        duplicate_of: str | None = None) -> str:
        """Record a payload whose bytes are already archived; returns the transmission id.

        With ``duplicate_of`` the transmission is recorded as DUPLICATE and is not processed.
        """
        return self.record_received_many([NewTransmission(
            channel=channel, channel_ref=channel_ref, filename=filename, size=size,
            sha256=sha256, partner_id=partner_id, duplicate_of=duplicate_of)])[0]

    def record_received_many(self, items: Sequence[NewTransmission]) -> list[str]:
        """``record_received`` for many payloads in one commit (group commit for throughput).

        Each item holds the keyword arguments of ``record_received`` (and may hold the id).
        """
        now = utcnow()
        ids = []
        t_rows, e_rows = [], []
        for it in items:
            tid = it.get("id") or new_id()
            ids.append(tid)
            dup = it.get("duplicate_of")
            t_rows.append(dict(
                id=tid, channel=it["channel"], channel_ref=it.get("channel_ref"),
                partner_id=it.get("partner_id"), filename=it.get("filename"), size=it["size"],
                sha256=it["sha256"], received_at=now, acknowledged_at=None,
                status=s.DUPLICATE if dup else s.RECEIVED, duplicate_of=dup, updated_at=now,
                document_count=0, claimed_by=None if dup else self.instance_id))
            e_rows.append(dict(transmission_id=tid, at=now, event="received",
                               detail=f"{it['size']} bytes via {it['channel']}, sha256 {it['sha256'][:12]}"))
            if dup:
                e_rows.append(dict(transmission_id=tid, at=now, event="duplicate",
                                   detail=f"same bytes as transmission {dup}; not processed again"))
        if t_rows:
            with self._begin() as conn:
                conn.execute(s.transmissions.insert(), t_rows)
                conn.execute(s.transmission_events.insert(), e_rows)
        return ids

    def mark_acknowledged_many(self, tids: Sequence[str], detail: str) -> None:
        """``mark_acknowledged`` for many transmissions in one commit."""
        if not tids:
            return
        now = utcnow()
        with self._begin() as conn:
            for chunk in chunks(list(tids), 500):
                conn.execute(s.transmissions.update().where(s.transmissions.c.id.in_(chunk))
                             .values(acknowledged_at=now))
            conn.execute(s.transmission_events.insert(), [
                dict(transmission_id=t, at=now, event="acknowledged", detail=detail) for t in tids])

    def mark_acknowledged(self, tid: str, detail: str) -> None:
        """The channel has acknowledged its transport (moved the file, flagged the mail)."""
        now = utcnow()
        with self._begin() as conn:
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid)
                         .values(acknowledged_at=now))
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid, at=now, event="acknowledged", detail=detail))

    def unacknowledged_from(self, channel: str, channel_ref: str, sha256: str) -> TransmissionRow | None:
        """A transmission received from this exact place whose transport ack never happened."""
        q = (
            sa.select(s.transmissions)
            .where(s.transmissions.c.sha256 == sha256)
            .where(s.transmissions.c.channel == channel)
            .where(s.transmissions.c.channel_ref == channel_ref)
            .where(s.transmissions.c.acknowledged_at.is_(None))
            .limit(1)
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
        return TransmissionRow.from_row(row) if row else None

    def record_reprocess(self, original_id: str, *, by: str, reason: str) -> str:
        """A new attempt at ``original_id``: a transmission of the same archived payload,
        linked to the first (``reprocess_of``), with who asked and why on both timelines.
        Returns the new transmission's id (RECEIVED, ready to be processed)."""
        t = s.transmissions
        now = utcnow()
        new = new_id()
        with self._begin() as conn:
            o = conn.execute(sa.select(t).where(t.c.id == original_id)).first()
            if o is None:
                raise KeyError(original_id)
            conn.execute(t.insert().values(
                id=new, channel=o.channel, channel_ref=f"reprocess:{original_id}",
                partner_id=o.partner_id, filename=o.filename, size=o.size, sha256=o.sha256,
                received_at=now, acknowledged_at=now, status=s.RECEIVED, duplicate_of=None,
                updated_at=now, document_count=0, reprocess_of=original_id, requested_by=by,
                request_reason=reason, claimed_by=self.instance_id))
            conn.execute(s.transmission_events.insert(), [
                dict(transmission_id=new, at=now, event="reprocess",
                     detail=f"attempt at transmission {original_id} (was {o.status}), "
                            f"requested by {by}: {reason}"),
                dict(transmission_id=original_id, at=now, event="reprocessed",
                     detail=f"new attempt {new} requested by {by}: {reason}")])
        return new

    def reprocess_chain(self, tid: str) -> list[str]:
        """The transmissions ``tid`` replays, nearest first (empty for a first attempt)."""
        t = s.transmissions
        chain: list[str] = []
        with self.connect() as conn:
            current = tid
            while len(chain) < 100:
                up = conn.execute(sa.select(t.c.reprocess_of).where(t.c.id == current)).scalar()
                if not up or up in chain:
                    break
                chain.append(up)
                current = up
        return chain

    def add_event(self, tid: str, event: str, detail: str | None = None) -> None:
        with self._begin() as conn:
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid, at=utcnow(), event=event, detail=detail))

    def record_failed(self, tid: str, *, stage: str, reason: str, status: str = s.FAILED,
                      partner_id: str | None = None, fmt: str | None = None,
                      standard: str | None = None, events: Iterable[tuple[str, str]] = ()) -> None:
        """Mark a transmission FAILED (or QUARANTINED) at ``stage``; its payload stays archived."""
        with self._begin() as conn:
            self._record_failed(conn, tid, stage=stage, reason=reason, status=status,
                                partner_id=partner_id, fmt=fmt, standard=standard, events=events)

    def _record_failed(self, conn: sa.Connection, tid: str, *, stage: str, reason: str,
                       status: str = s.FAILED, partner_id: str | None = None,
                       fmt: str | None = None, standard: str | None = None,
                       events: Iterable[tuple[str, str]] = ()) -> None:
        now = utcnow()
        values: dict[str, Any] = dict(status=status, stage=stage, reason=reason, updated_at=now)
        if partner_id:
            values["partner_id"] = partner_id
        if fmt:
            values["format"] = fmt
        if standard:
            values["standard"] = standard
        conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid).values(**values))
        rows = [dict(transmission_id=tid, at=now, event=e, detail=d) for e, d in events]
        rows.append(dict(transmission_id=tid, at=now, event=status.lower(),
                         detail=f"{stage}: {reason}"))
        conn.execute(s.transmission_events.insert(), rows)

    def start_attempts(self, tids: Sequence[str]) -> dict[str, int]:
        """Count one more start of processing for each RECEIVED transmission of ``tids``,
        committed before the work begins; returns their attempts so far (this one
        included). A transmission that crashes or hangs the process keeps its count."""
        t = s.transmissions
        out: dict[str, int] = {}
        with self._begin() as conn:
            for chunk in chunks(list(tids), 500):
                conn.execute(t.update().where(t.c.id.in_(chunk), t.c.status == s.RECEIVED)
                             .values(attempts=t.c.attempts + 1))
                rows = conn.execute(sa.select(t.c.id, t.c.attempts).where(
                    t.c.id.in_(chunk), t.c.status == s.RECEIVED))
                out.update((r.id, r.attempts) for r in rows)
        return out

    def transmissions_to_process(self, limit: int = 100, *, this_instance: bool = False
                                 ) -> list[TransmissionRow]:
        """RECEIVED transmissions whose processing has not committed (e.g. after a crash);
        with ``this_instance``, only those this instance has or may take (its own, nobody's,
        a dead instance's), not the work of the other live ones."""
        t = s.transmissions
        q = (sa.select(t).where(t.c.status == s.RECEIVED, t.c.direction == "in")
             .order_by(t.c.received_at).limit(limit))
        if this_instance and self.instance_id is not None:
            q = q.where(sa.or_(t.c.claimed_by.is_(None), t.c.claimed_by == self.instance_id,
                               t.c.claimed_by.not_in(live_instances(utcnow()))))
        with self.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    def claim_received(self, limit: int, *, since: dt.datetime | None = None,
                       dead_after: float = DEAD_AFTER) -> list[TransmissionRow]:
        """RECEIVED transmissions nobody is working on, claimed for this instance (oldest
        first): those no instance claimed (or this one did) received before ``since`` (any
        with None), and those of instances found dead, whenever received. On PostgreSQL rows
        another instance is claiming at the same moment are skipped (``SKIP LOCKED``)."""
        t = s.transmissions
        me = self.instance_id
        free = sa.or_(t.c.claimed_by.is_(None), t.c.claimed_by == me) if me is not None \
            else t.c.claimed_by.is_(None)
        if since is not None:
            free = sa.and_(free, t.c.received_at < since)
        orphan = sa.and_(t.c.claimed_by.is_not(None),
                         t.c.claimed_by.not_in(live_instances(utcnow(), dead_after)))
        q = (sa.select(t).where(t.c.status == s.RECEIVED, t.c.direction == "in",
                                sa.or_(free, orphan))
             .order_by(t.c.received_at).limit(limit).with_for_update(skip_locked=True))
        with self._begin() as conn:
            rows = [TransmissionRow.from_row(r) for r in conn.execute(q)]
            if rows and me is not None:
                conn.execute(t.update().where(t.c.id.in_([r.id for r in rows]))
                             .values(claimed_by=me))
        return rows

    def get_transmission(self, tid: str, scope: Scope = EVERYTHING) -> TransmissionRow | None:
        """Transmission ``tid`` (a unique prefix will do), or None; with a client's
        ``scope``, None too when it is another partner's (the partner is in the query)."""
        t = s.transmissions
        within = [t.c.partner_id == scope.partner] if scope.partner is not None else []
        with self.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == tid, *within)).first()
            if row is None and len(tid) >= 6:  # a unique prefix is enough, as with git
                rows = conn.execute(sa.select(t).where(
                    t.c.id.like(tid.replace("%", "").replace("_", "") + "%"), *within)
                    .limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
        return TransmissionRow.from_row(row) if row else None

    def get_transmissions(self, tids: Sequence[str]) -> dict[str, TransmissionRow]:
        """Several transmissions by id, in one query per 500."""
        out: dict[str, TransmissionRow] = {}
        with self.connect() as conn:
            for chunk in chunks(list(tids), 500):
                for row in conn.execute(sa.select(s.transmissions)
                                        .where(s.transmissions.c.id.in_(chunk))):
                    r = TransmissionRow.from_row(row)
                    out[r.id] = r
        return out

    def events(self, tid: str) -> list[dict[str, Any]]:
        e = s.transmission_events
        with self.connect() as conn:
            rows = conn.execute(sa.select(e.c.at, e.c.event, e.c.detail)
                                .where(e.c.transmission_id == tid).order_by(e.c.id)).all()
        return [dict(at=aware(r.at), event=r.event, detail=r.detail) for r in rows]

    def log(self, flt: LogFilter) -> list[TransmissionRow]:
        t = s.transmissions
        q = sa.select(t).order_by(t.c.received_at.desc(), t.c.id.desc()).limit(flt.limit)
        if flt.partner:
            q = q.where(t.c.partner_id == flt.partner)
        if flt.status:
            q = q.where(t.c.status == flt.status.upper())
        if flt.since:
            q = q.where(t.c.received_at >= flt.since)
        if flt.until:
            q = q.where(t.c.received_at < flt.until)
        if flt.direction:
            q = q.where(t.c.direction == flt.direction)
        with self.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    def counts_by_status(self) -> dict[str, int]:
        t = s.transmissions
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all()
        return {r[0]: r[1] for r in rows}
