"""The store: transmissions, their timeline, documents and the outbox (SQLAlchemy Core).

SQLite (a file under ``var/`` by default) and PostgreSQL run the same code. Every method
is one transaction; a method that returns has committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.core import clock, errors
from gateway.core.canonical import content_digest
from gateway.core.conflicts import compare
from gateway.core.errors import StoreError
from gateway.core.ids import new_id
from gateway.core.records import (
    Failed,
    NewDocument,
    NewInterchange,
    NewOutbound,
    NewTransmission,
    Note,
    Processed,
    Recorded,
)
from gateway.store import schema as s
from gateway.store.records import (
    DocumentRow,
    LogFilter,
    OutboundRow,
    OutboxItem,
    TransmissionRow,
    aware,
)

__all__ = ["NewDocument", "Store", "TransmissionRow", "create_engine", "default_sqlite_url",
           "is_outage", "new_id", "utcnow"]

def utcnow() -> dt.datetime:
    return clock.now()


class Store:
    """Transactional access to the gateway's records."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock = threading.Lock()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> Store:
        """Open the store at ``url`` (creating a SQLite file's folder) and migrate it."""
        engine = create_engine(url)
        store = cls(engine)
        if migrate:
            from gateway.store.migrate import upgrade

            upgrade(engine)
        return store

    def close(self) -> None:
        self.engine.dispose()

    # -- receive ------------------------------------------------------------------------

    def is_outage(self, exc: BaseException) -> bool:
        """``is_outage``: whether ``exc`` says this store cannot be reached."""
        return is_outage(exc)

    def find_by_sha256(self, sha256: str) -> TransmissionRow | None:
        """The first transmission (not itself a duplicate) that had these exact bytes."""
        q = (
            sa.select(s.transmissions)
            .where(s.transmissions.c.sha256 == sha256)
            .where(s.transmissions.c.status != s.DUPLICATE)
            .order_by(s.transmissions.c.received_at)
            .limit(1)
        )
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            for chunk in _chunks(digests, 500):
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
                document_count=0))
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
            for chunk in _chunks(list(tids), 500):
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
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return TransmissionRow.from_row(row) if row else None

    # -- process ------------------------------------------------------------------------

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
                request_reason=reason))
            conn.execute(s.transmission_events.insert(), [
                dict(transmission_id=new, at=now, event="reprocess",
                     detail=f"attempt at transmission {original_id} (was {o.status}), "
                            f"requested by {by}: {reason}"),
                dict(transmission_id=original_id, at=now, event="reprocessed",
                     detail=f"new attempt {new} requested by {by}: {reason}")])
        return new

    def numbers_seen(self, partner_id: str, keys: Sequence[tuple[str, str | None]],
                     since: dt.datetime, *, exclude_message_ids: Iterable[str] = ()
                     ) -> dict[tuple[str, str | None], str]:
        """Of ``keys`` (doc type, business number), those this partner sent before in a stored
        document (not a duplicate or failed one) of another message id since ``since``:
        key -> "in transmission T on <date>"."""
        d = s.documents
        excluded = set(exclude_message_ids)
        wanted = set(keys)
        found: dict[tuple[str, str | None], str] = {}
        numbers = sorted({n for _t, n in keys if n})
        with self.engine.connect() as conn:
            for chunk in _chunks(numbers, 500):
                rows = conn.execute(
                    sa.select(d.c.doc_type, d.c.business_number, d.c.message_id,
                              d.c.transmission_id, d.c.created_at)
                    .where(d.c.partner_id == partner_id, d.c.business_number.in_(chunk),
                           d.c.status.in_((s.PENDING, s.DOC_PUBLISHED, s.UNROUTABLE)),
                           d.c.created_at >= since)
                    .order_by(d.c.created_at)).all()
                for r in rows:
                    key = (r.doc_type, r.business_number)
                    if key in wanted and r.message_id not in excluded:
                        found.setdefault(key, f"in transmission {r.transmission_id} on "
                                              f"{aware(r.created_at):%Y-%m-%d %H:%M} UTC")
        return found

    def reprocess_chain(self, tid: str) -> list[str]:
        """The transmissions ``tid`` replays, nearest first (empty for a first attempt)."""
        t = s.transmissions
        chain: list[str] = []
        with self.engine.connect() as conn:
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

    def record_processed(self, tid: str, *, partner_id: str, fmt: str, standard: str | None,
                         docs: Sequence[NewDocument], events: Iterable[tuple[str, str]] = (),
                         final: bool = True, interchanges: Sequence[NewInterchange] = (),
                         outbound: Sequence[NewOutbound] = (), stage: str | None = None,
                         reason: str | None = None, failed: bool = False) -> int:
        """``record_outcome`` of a processed transmission given field by field."""
        return self.record_outcome(Processed(
            tid, partner_id, fmt, standard, docs, tuple(events), interchanges, outbound,
            Note(stage, reason, failed)), final=final)

    def record_outcome(self, record: Processed, *, final: bool = True) -> int:
        """Store the documents of a transmission and their outbox rows in one commit.

        A document whose ``message_id`` is already stored is recorded as DUPLICATE and gets no
        outbox row; one already stored by this same transmission (an earlier chunk, or a run
        cut short by a crash) is skipped. With ``final=False`` only the documents (and
        events) are written (a chunk of a large interchange) and the transmission stays as
        it is. Returns the number of documents queued for publishing.
        """
        with self._begin() as conn:
            return self._record_processed(conn, record, final=final)

    def record_batch(self, records: Sequence[Recorded]) -> list[int]:
        """Several transmissions' outcomes in one commit (small files processed together).

        Each is ``Processed`` (as ``record_outcome``: its documents, interchanges, replies
        archived already, and the note of messages that failed, ``failed`` when none
        succeeded: the transmission is then FAILED, its failed messages still stored as
        documents) or ``Failed`` (as ``record_failed``). Returns the documents queued, per
        record. The statements are set-based: one lookup, one insert per table and one
        executemany per kind of update for the whole batch, whatever its size.
        """
        now = utcnow()
        d_, t = s.documents, s.transmissions
        queued = [0] * len(records)
        with self._begin() as conn:
            existing = _earlier(conn, [(o.partner_id, d) for o in records
                                       if isinstance(o, Processed) for d in o.docs])
            doc_rows: list[dict[str, Any]] = []
            outbox_rows: list[dict[str, Any]] = []
            event_rows: list[dict[str, Any]] = []
            done_rows: list[dict[str, Any]] = []
            failed_rows: list[dict[str, Any]] = []
            side_rows: list[tuple[sa.Table, dict[str, Any]]] = []
            for i, o in enumerate(records):
                tid = o.tid
                if isinstance(o, Processed) and any(existing.stored_by(d.message_id, tid)
                                                    for d in o.docs):
                    # A resumed run: let the careful path count what is stored already.
                    queued[i] = self._record_processed(conn, o)
                    continue
                event_rows += [dict(transmission_id=tid, at=now, event=e, detail=d)
                               for e, d in o.events]
                if isinstance(o, Failed):
                    failed_rows.append(dict(
                        b_id=tid, status=o.status, stage=o.stage, reason=o.reason,
                        updated_at=now))
                    event_rows.append(dict(transmission_id=tid, at=now,
                                           event=o.status.lower(),
                                           detail=f"{o.stage}: {o.reason}"))
                    if o.partner_id or o.fmt:
                        conn.execute(t.update().where(t.c.id == tid).values(
                            partner_id=o.partner_id, format=o.fmt, standard=o.standard))
                    continue
                made = _document_rows(tid, o.partner_id, o.docs, existing, now)
                doc_rows += made.docs
                outbox_rows += made.outbox
                queued[i] = len(made.outbox)
                total = len(o.docs)
                status, stage, reason = _final_status(o.note, made.counts())
                done_rows.append(dict(
                    b_id=tid, partner_id=o.partner_id, format=o.fmt,
                    standard=o.standard, status=status,
                    stage=stage, reason=reason, document_count=total, updated_at=now))
                event_rows += _duplicate_events(tid, made.duplicates, now)
                event_rows += _conflict_events(conn, tid, made.conflicts, existing, now)
                event_rows += _outcome_events(tid, o.note, total, queued[i], now)
                side_rows += _side_rows(o, now)
            if doc_rows:
                conn.execute(d_.insert(), doc_rows)
            if outbox_rows:
                conn.execute(s.outbox.insert(), outbox_rows)
            if done_rows:
                conn.execute(t.update().where(t.c.id == sa.bindparam("b_id")).values(
                    partner_id=sa.bindparam("partner_id"), format=sa.bindparam("format"),
                    standard=sa.bindparam("standard"), status=sa.bindparam("status"),
                    stage=sa.bindparam("stage"), reason=sa.bindparam("reason"),
                    document_count=sa.bindparam("document_count"),
                    updated_at=sa.bindparam("updated_at")), done_rows)
            if failed_rows:
                conn.execute(t.update().where(t.c.id == sa.bindparam("b_id")).values(
                    status=sa.bindparam("status"), stage=sa.bindparam("stage"),
                    reason=sa.bindparam("reason"), updated_at=sa.bindparam("updated_at")),
                    failed_rows)
            if event_rows:
                conn.execute(s.transmission_events.insert(), event_rows)
            _insert_side_rows(conn, side_rows)
        return queued

    def get_transmissions(self, tids: Sequence[str]) -> dict[str, TransmissionRow]:
        """Several transmissions by id, in one query per 500."""
        out: dict[str, TransmissionRow] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(tids), 500):
                for row in conn.execute(sa.select(s.transmissions)
                                        .where(s.transmissions.c.id.in_(chunk))):
                    r = TransmissionRow.from_row(row)
                    out[r.id] = r
        return out

    def _record_processed(self, conn: sa.Connection, record: Processed, *,
                          final: bool = True) -> int:
        now = utcnow()
        tid, partner_id = record.tid, record.partner_id
        existing = _earlier(conn, [(partner_id, d) for d in record.docs])
        made = _document_rows(tid, partner_id, record.docs, existing, now)
        if made.docs:
            conn.execute(s.documents.insert(), made.docs)
        if made.outbox:
            conn.execute(s.outbox.insert(), made.outbox)
        event_rows = [dict(transmission_id=tid, at=now, event=e, detail=d)
                      for e, d in record.events]
        event_rows += _duplicate_events(tid, made.duplicates, now)
        event_rows += _conflict_events(conn, tid, made.conflicts, existing, now)
        if final:
            counts = _status_counts(conn, [tid]).get(tid, {})
            total = sum(counts.values())
            pending = counts.get(s.PENDING, 0)
            status, stage, reason = _final_status(record.note, counts)
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid).values(
                partner_id=partner_id, format=record.fmt, standard=record.standard,
                status=status, stage=stage, reason=reason, document_count=total,
                updated_at=now))
            event_rows += _outcome_events(tid, record.note, total, pending, now)
        if event_rows:
            conn.execute(s.transmission_events.insert(), event_rows)
        if final:
            _insert_side_rows(conn, _side_rows(record, now))
        return len(made.outbox)

    def clear_outcome(self, tid: str) -> None:
        """Before a transmission is processed again: forget its failed and unsupported
        messages, documents still held (a streamed run cut short) and its interchanges
        (processing records them anew). Documents that went on are kept; the new run
        recognises them by message id."""
        with self._begin() as conn:
            conn.execute(s.documents.delete().where(s.documents.c.transmission_id == tid)
                         .where(s.documents.c.status.in_((s.DOC_FAILED, s.DOC_UNSUPPORTED,
                                                          s.DOC_HELD))))
            conn.execute(s.interchanges.delete().where(s.interchanges.c.transmission_id == tid))

    # -- held documents (a streamed transmission) ------------------------------------------
    #
    # A large file is processed as a stream: its documents are stored as they are made,
    # HELD (no outbox row), so memory stays flat; they are released to the outbox only
    # once what could still reject them has been read (the UNT of a message published in
    # parts, the UNZ of the interchange), or failed with the reason. The ERP never gets a
    # document of an interchange that turned out bad, nor a part without its total.

    def hold_documents(self, tid: str, *, partner_id: str,
                       docs: Sequence[NewDocument]) -> list[str]:
        """Store ``docs`` HELD (failed messages as they are), in one commit; their ids."""
        now = utcnow()
        rows = [dict(id=new_id(), transmission_id=tid, partner_id=partner_id,
                     doc_type=d.doc_type, schema_version=d.schema_version,
                     business_number=d.business_number, interchange_ref=d.interchange_ref,
                     message_ref=d.message_ref, message_id=d.message_id,
                     status=d.status or s.DOC_HELD, created_at=now, published_at=None,
                     payload=d.payload, stage=d.stage, reason=d.reason,
                     content_sha=d.content_sha) for d in docs]
        if rows:
            with self._begin() as conn:
                conn.execute(s.documents.insert(), rows)
        return [str(r["id"]) for r in rows]

    def patch_held(self, document_ids: Sequence[str], old: bytes, new: bytes) -> None:
        """Replace ``old`` by ``new`` once in each held payload (a part's total), one commit.

        Payloads are read four at a time: a part may be as large as a broker message (1 MB),
        and memory must not grow with the number of parts."""
        d = s.documents
        with self._begin() as conn:
            for chunk in _chunks(list(document_ids), 4):
                rows = conn.execute(sa.select(d.c.id, d.c.payload).where(d.c.id.in_(chunk))
                                    .where(d.c.status == s.DOC_HELD)).all()
                if rows:
                    conn.execute(d.update().where(d.c.id == sa.bindparam("b_id"))
                                 .values(payload=sa.bindparam("payload")),
                                 [dict(b_id=r.id, payload=bytes(r.payload).replace(old, new, 1))
                                  for r in rows])

    def fail_held(self, tid: str, *, stage: str, reason: str,
                  document_ids: Sequence[str] | None = None) -> int:
        """Mark held documents FAILED with ``stage`` and ``reason`` (those of ``tid``, or only
        ``document_ids``); returns how many."""
        d = s.documents
        update = (d.update().where(d.c.transmission_id == tid).where(d.c.status == s.DOC_HELD)
                  .values(status=s.DOC_FAILED, stage=stage, reason=reason))
        failed = 0
        with self._begin() as conn:
            if document_ids is None:
                failed += conn.execute(update).rowcount
            else:
                for chunk in _chunks(list(document_ids), 500):
                    failed += conn.execute(update.where(d.c.id.in_(chunk))).rowcount
        return failed

    def release_held(self, tid: str, *, on_conflict: str = "hold") -> tuple[int, int]:
        """Queue every held document of ``tid`` for publishing, in one commit; returns how
        many were queued and how many were kept back (duplicates, conflicts held). As
        ``record_processed`` decides: the same content received before is a DUPLICATE,
        the same number with other content a CONFLICT (held, or published with a note under
        ``on_conflict = "publish"``); one this transmission released before a crash is
        dropped."""
        d = s.documents
        now = utcnow()
        queued = kept = 0
        with self._begin() as conn:
            while True:
                rows = conn.execute(
                    sa.select(d.c.id, d.c.message_id, d.c.doc_type, d.c.partner_id,
                              d.c.business_number, d.c.content_sha)
                    .where(d.c.transmission_id == tid).where(d.c.status == s.DOC_HELD)
                    .order_by(d.c.id).limit(1000)).all()
                if not rows:
                    break
                held = [_Held(r, on_conflict) for r in rows]
                existing = _earlier(conn, [(h.partner_id, h) for h in held])
                made = _document_rows(tid, rows[0].partner_id, held, existing, now,
                                      ids=[r.id for r in rows])
                stored = {r["id"] for r in made.docs}
                again = [r.id for r in rows if r.id not in stored]
                if again:
                    conn.execute(d.delete().where(d.c.id.in_(again)))
                if made.docs:
                    conn.execute(d.update().where(d.c.id == sa.bindparam("b_id")).values(
                        status=sa.bindparam("status"), conflict_of=sa.bindparam("conflict_of")),
                        [dict(b_id=r["id"], status=r["status"], conflict_of=r["conflict_of"])
                         for r in made.docs])
                if made.outbox:
                    conn.execute(s.outbox.insert(), made.outbox)
                queued += len(made.outbox)
                kept += len(made.duplicates) + sum(1 for c in made.conflicts if c.held)
                events = _duplicate_events(tid, made.duplicates, now)
                events += _conflict_events(conn, tid, made.conflicts, existing, now)
                if events:
                    conn.execute(s.transmission_events.insert(), events)
        return queued, kept

    # -- interchanges and outbound --------------------------------------------------------

    def interchange_refs_seen(self, partner_id: str, refs: Sequence[str],
                              since: dt.datetime | None = None) -> dict[str, tuple[str, dt.datetime]]:
        """Of ``refs``, those already received from ``partner_id`` (since ``since``): ref ->
        (transmission id, received at) of the first time."""
        found: dict[str, tuple[str, dt.datetime]] = {}
        # Asked once per transmission processed: a statement built once (bound parameters)
        # costs a third of one built per call (0.24 ms of Python per one-order file).
        query = _REFS_SEEN if since is None else _REFS_SEEN_SINCE
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(refs)), 500):
                for r in conn.execute(query, {"partner": partner_id, "refs": chunk,
                                              "since": since}):
                    found.setdefault(r.control_ref, (r.transmission_id, aware(r.received_at)))
        return found

    def interchanges_of(self, tid: str) -> list[dict[str, Any]]:
        i = s.interchanges
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(i).where(i.c.transmission_id == tid)
                                .order_by(i.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def pending_outbound(self, limit: int = 100) -> list[OutboundRow]:
        o = s.outbound
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(o).where(o.c.status == s.OUT_PENDING)
                                .order_by(o.c.created_at, o.c.id).limit(limit)).all()
        return [_outbound_row(r) for r in rows]

    def outbound_of(self, tid: str) -> list[OutboundRow]:
        o = s.outbound
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(o).where(o.c.transmission_id == tid)
                                .order_by(o.c.created_at, o.c.id)).all()
        return [_outbound_row(r) for r in rows]

    def mark_outbound_sent(self, oid: str, detail: str) -> None:
        now = utcnow()
        with self._begin() as conn:
            row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid)
                               .values(status=s.OUT_SENT, sent_at=now, detail=detail,
                                       attempts=s.outbound.c.attempts + 1, last_error=None)
                               .returning(s.outbound.c.transmission_id, s.outbound.c.kind)).first()
            if row is not None and row.transmission_id:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now, event=f"{row.kind}-sent",
                    detail=detail))

    def mark_outbound_failed(self, oid: str, error: str, *, give_up: bool = False) -> None:
        now = utcnow()
        values: dict[str, Any] = dict(attempts=s.outbound.c.attempts + 1, last_error=error[:2000])
        if give_up:
            values["status"] = s.OUT_FAILED
        with self._begin() as conn:
            row = conn.execute(sa.update(s.outbound).where(s.outbound.c.id == oid).values(**values)
                               .returning(s.outbound.c.transmission_id, s.outbound.c.kind)).first()
            if give_up and row is not None and row.transmission_id:
                conn.execute(s.transmission_events.insert().values(
                    transmission_id=row.transmission_id, at=now,
                    event=f"{row.kind}-failed", detail=error[:2000]))

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
            for chunk in _chunks(list(tids), 500):
                conn.execute(t.update().where(t.c.id.in_(chunk), t.c.status == s.RECEIVED)
                             .values(attempts=t.c.attempts + 1))
                rows = conn.execute(sa.select(t.c.id, t.c.attempts).where(
                    t.c.id.in_(chunk), t.c.status == s.RECEIVED))
                out.update((r.id, r.attempts) for r in rows)
        return out

    def transmissions_to_process(self, limit: int = 100) -> list[TransmissionRow]:
        """RECEIVED transmissions whose processing has not committed (e.g. after a crash)."""
        q = (sa.select(s.transmissions).where(s.transmissions.c.status == s.RECEIVED)
             .order_by(s.transmissions.c.received_at).limit(limit))
        with self.engine.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    # -- publish ------------------------------------------------------------------------

    def pending_outbox(self, limit: int, *, exclude: Iterable[int] = ()) -> list[OutboxItem]:
        """Outbox rows to publish, oldest first, skipping ids already in flight."""
        o, d = s.outbox, s.documents
        q = (
            sa.select(o.c.id, o.c.routing_key, o.c.attempts, d.c.id.label("document_id"),
                      d.c.transmission_id, d.c.partner_id, d.c.doc_type, d.c.schema_version,
                      d.c.message_id, d.c.payload)
            .select_from(o.join(d, d.c.id == o.c.document_id))
            .order_by(o.c.id)
            .limit(limit)
        )
        exclude = list(exclude)
        if exclude:
            q = q.where(o.c.id > max(exclude)) if len(exclude) > 500 else q.where(o.c.id.not_in(exclude))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [OutboxItem(outbox_id=r.id, document_id=r.document_id,
                           transmission_id=r.transmission_id, partner_id=r.partner_id,
                           doc_type=r.doc_type, schema_version=r.schema_version,
                           message_id=r.message_id, routing_key=r.routing_key, body=r.payload,
                           attempts=r.attempts) for r in rows]

    def mark_published(self, outbox_ids: Sequence[int]) -> None:
        """The broker confirmed these messages: documents PUBLISHED, outbox rows removed."""
        if not outbox_ids:
            return
        now = utcnow()
        # Two statements per 500 ids (RETURNING: SQLite 3.35+, PostgreSQL) and one closing
        # look for the whole flush: the publisher holds SQLite's write lock meanwhile, and
        # the pipeline's commits wait for it.
        tids: set[str] = set()
        with self._begin() as conn:
            for chunk in _chunks(list(outbox_ids), 500):
                rows = conn.execute(s.outbox.delete().where(s.outbox.c.id.in_(chunk))
                                    .returning(s.outbox.c.document_id)).scalars().all()
                if not rows:
                    continue
                tids.update(conn.execute(
                    s.documents.update().where(s.documents.c.id.in_(rows))
                    .values(status=s.DOC_PUBLISHED, published_at=now)
                    .returning(s.documents.c.transmission_id)).scalars())
            if tids:
                self._close_transmissions(conn, sorted(tids), now)

    def mark_unroutable(self, outbox_id: int, reason: str) -> None:
        """The broker returned this message: no queue takes its routing key."""
        now = utcnow()
        with self._begin() as conn:
            row = conn.execute(sa.select(s.outbox.c.document_id).where(s.outbox.c.id == outbox_id)).first()
            if row is None:
                return
            conn.execute(s.documents.update().where(s.documents.c.id == row.document_id)
                         .values(status=s.UNROUTABLE))
            conn.execute(s.outbox.delete().where(s.outbox.c.id == outbox_id))
            tid = conn.execute(sa.select(s.documents.c.transmission_id, s.documents.c.business_number)
                               .where(s.documents.c.id == row.document_id)).one()
            conn.execute(s.transmission_events.insert().values(
                transmission_id=tid.transmission_id, at=now, event="unroutable",
                detail=f"document {tid.business_number or row.document_id}: {reason}"))

    def record_publish_failure(self, outbox_ids: Sequence[int], error: str) -> None:
        """A publish attempt failed (nack, lost connection); the rows stay for a retry."""
        if not outbox_ids:
            return
        with self._begin() as conn:
            for chunk in _chunks(list(outbox_ids), 500):
                conn.execute(s.outbox.update().where(s.outbox.c.id.in_(chunk))
                             .values(attempts=s.outbox.c.attempts + 1, last_error=error[:2000]))

    def outbox_size(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(s.outbox)).scalar_one()

    def _close_transmissions(self, conn: sa.Connection, tids: Sequence[str], now: dt.datetime) -> None:
        """Settle the PROCESSED transmissions none of whose documents is still pending:
        PUBLISHED, or PARTIAL (a document failed or was rejected) or HELD (a conflict
        waits for an operator)."""
        for chunk in _chunks(list(tids), 500):
            still_pending = set(conn.execute(
                sa.select(s.documents.c.transmission_id)
                .where(s.documents.c.transmission_id.in_(chunk))
                .where(s.documents.c.status == s.PENDING).distinct()).scalars())
            done = [t for t in chunk if t not in still_pending]
            if not done:
                continue
            # Only the statuses that change the outcome are looked at (few rows, by index).
            kept: dict[str, set[str]] = {}
            for tid_, status in conn.execute(
                    sa.select(s.documents.c.transmission_id, s.documents.c.status)
                    .where(s.documents.c.transmission_id.in_(done))
                    .where(s.documents.c.status.in_((s.DOC_CONFLICT, *_NOT_PUBLISHED)))
                    .distinct()):
                kept.setdefault(tid_, set()).add(status)
            by_status: dict[str, list[str]] = {}
            for t in done:
                statuses = kept.get(t, set())
                settled = _settle(0, s.DOC_CONFLICT in statuses,
                                  bool(statuses - {s.DOC_CONFLICT}))
                by_status.setdefault(settled, []).append(t)
            for status, group in by_status.items():
                closed = conn.execute(
                    s.transmissions.update()
                    .where(s.transmissions.c.id.in_(group))
                    .where(s.transmissions.c.status == s.PROCESSED)
                    .values(status=status, updated_at=now)
                    .returning(s.transmissions.c.id)).scalars().all()
                if closed:
                    conn.execute(s.transmission_events.insert(), [
                        dict(transmission_id=t, at=now, event=status.lower(),
                             detail=_SETTLED[status]) for t in closed])

    # -- read ---------------------------------------------------------------------------

    def get_transmission(self, tid: str) -> TransmissionRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.transmissions).where(s.transmissions.c.id == tid)).first()
            if row is None and len(tid) >= 6:  # a unique prefix is enough, as with git
                rows = conn.execute(sa.select(s.transmissions)
                                    .where(s.transmissions.c.id.like(tid + "%")).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
        return TransmissionRow.from_row(row) if row else None

    def events(self, tid: str) -> list[dict[str, Any]]:
        e = s.transmission_events
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(e.c.at, e.c.event, e.c.detail)
                                .where(e.c.transmission_id == tid).order_by(e.c.id)).all()
        return [dict(at=aware(r.at), event=r.event, detail=r.detail) for r in rows]

    def documents_of(self, tid: str) -> list[DocumentRow]:
        d = s.documents
        cols = [c for c in d.c if c.name != "payload"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(d.c.transmission_id == tid)
                                .order_by(d.c.created_at, d.c.id)).all()
        return [_document_row(r) for r in rows]

    def document_payload(self, document_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(s.documents.c.payload)
                               .where(s.documents.c.id == document_id)).scalar_one()
        payload: dict[str, Any] = json.loads(raw)
        return payload

    def find_documents(self, *, business_number: str | None = None, partner: str | None = None,
                       doc_type: str | None = None, limit: int = 100) -> list[DocumentRow]:
        d = s.documents
        cols = [c for c in d.c if c.name != "payload"]
        q = sa.select(*cols).order_by(d.c.created_at.desc()).limit(limit)
        if business_number:
            q = q.where(d.c.business_number == business_number)
        if partner:
            q = q.where(d.c.partner_id == partner)
        if doc_type:
            q = q.where(d.c.doc_type == doc_type)
        with self.engine.connect() as conn:
            return [_document_row(r) for r in conn.execute(q)]

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
        with self.engine.connect() as conn:
            return [TransmissionRow.from_row(r) for r in conn.execute(q)]

    def ping(self) -> str | None:
        """None when the store answers a query, else why not (for ``/readyz``)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return f"store unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None

    def counts_by_status(self) -> dict[str, int]:
        t = s.transmissions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all()
        return {r[0]: r[1] for r in rows}

    # -- plumbing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite the gateway's threads take turns through a lock:
        SQLite allows one writer, and its busy handler would otherwise make them sleep."""
        lock = self._write_lock if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        with lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.DBAPIError as exc:
                if is_outage(exc):
                    raise StoreError(f"store unavailable: {exc.orig}") from exc
                raise


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached (an outage to wait out), rather
    than that one transmission's data was refused (which fails that transmission alone)."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return True
        if not isinstance(exc, sa.exc.OperationalError):
            return False
        # PostgreSQL says which: a statement cancelled or over a limit is the data's doing
        # (class 54, 57014), a lost connection or a server going down is an outage.
        state = getattr(exc.orig, "sqlstate", None) or ""
        return not (state.startswith("54") or state == "57014")
    return errors.is_outage(exc) or isinstance(exc, sa.exc.TimeoutError)


def _document_row(r: Any) -> DocumentRow:
    data = dict(r._mapping)
    data["created_at"] = aware(data["created_at"])
    data["published_at"] = aware(data["published_at"])
    if "erp_at" in data:
        data["erp_at"] = aware(data["erp_at"])
    return DocumentRow(**data)


#: Documents that were received: an identical one later is a DUPLICATE, a different one
#: under the same number a CONFLICT. Failed, unsupported and rejected ones do not count.
_RECEIVED = (s.PENDING, s.DOC_PUBLISHED, s.UNROUTABLE, s.DOC_CONFLICT)
#: Documents of a transmission that went nowhere: it is PARTIAL rather than PUBLISHED.
_NOT_PUBLISHED = (s.DOC_FAILED, s.DOC_UNSUPPORTED, s.DOC_REJECTED)
#: Stored by an earlier run of the same transmission (a resumed run skips them).
_STORED = (*_RECEIVED, s.DOC_REJECTED)
_PART_ID = re.compile(r"-p\d+$")

_SETTLED: dict[str, str] = {
    s.PUBLISHED: "every document confirmed by the broker",
    s.PARTIAL: "every queued document confirmed by the broker; others failed or were "
               "rejected (see the documents)",
    s.HELD: "every queued document confirmed by the broker; a document is held as a "
            "conflict for an operator (edigw conflicts)",
}


def _settle(pending: int, conflicts: int, failed: int) -> str:
    """A processed transmission's status from its documents: PROCESSED while any is in the
    outbox, then HELD while a conflict waits, PARTIAL when one failed or was rejected,
    else PUBLISHED."""
    if pending:
        return s.PROCESSED
    if conflicts:
        return s.HELD
    return s.PARTIAL if failed else s.PUBLISHED


def _status_counts(conn: sa.Connection, tids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per transmission, its documents counted by status."""
    d = s.documents
    out: dict[str, dict[str, int]] = {}
    for chunk in _chunks(list(tids), 500):
        for tid, status, n in conn.execute(
                sa.select(d.c.transmission_id, d.c.status, sa.func.count())
                .where(d.c.transmission_id.in_(chunk))
                .group_by(d.c.transmission_id, d.c.status)):
            out.setdefault(tid, {})[status] = n
    return out


def _settle_counts(counts: dict[str, int]) -> str:
    return _settle(counts.get(s.PENDING, 0), counts.get(s.DOC_CONFLICT, 0),
                   sum(counts.get(x, 0) for x in _NOT_PUBLISHED))


def resettle(conn: sa.Connection, tids: Sequence[str], now: dt.datetime) -> dict[str, str]:
    """After an operator's decision: the status of processed transmissions worked out
    again from their documents (an event for each that changes); tid -> new status."""
    t = s.transmissions
    counts = _status_counts(conn, tids)
    changed: dict[str, str] = {}
    rows = conn.execute(sa.select(t.c.id, t.c.status).where(t.c.id.in_(list(tids)))).all()
    for tid, old in rows:
        if old not in (s.PROCESSED, s.PUBLISHED, s.PARTIAL, s.HELD):
            continue
        new = _settle_counts(counts.get(tid, {}))
        if new == old:
            continue
        conn.execute(t.update().where(t.c.id == tid).values(status=new, updated_at=now))
        conn.execute(s.transmission_events.insert().values(
            transmission_id=tid, at=now, event=new.lower(),
            detail=_SETTLED.get(new, "documents queued for publishing again")))
        changed[tid] = new
    return changed


class _Held:
    """A held document (a streamed transmission's) as the decision needs it."""

    __slots__ = ("business_number", "content_sha", "doc_type", "id", "message_id",
                 "on_conflict", "part", "partner_id", "status")

    def __init__(self, row: Any, on_conflict: str) -> None:
        self.id = row.id
        self.message_id = row.message_id
        self.doc_type = row.doc_type
        self.partner_id = row.partner_id
        self.business_number = row.business_number
        self.content_sha = row.content_sha
        self.part = 1 if _PART_ID.search(row.message_id) else None
        self.on_conflict = on_conflict
        self.status = None


class _Number:
    """What was received under one (partner, type, number): contents -> document id, and
    the document a different one is compared with (the last one queued or published, else
    the last one held)."""

    __slots__ = ("contents", "last", "last_held")

    def __init__(self) -> None:
        self.contents: dict[str | None, str] = {}
        self.last: str | None = None
        self.last_held: str | None = None

    def add(self, doc_id: str, sha: str | None, status: str) -> None:
        self.contents.setdefault(sha, doc_id)
        if status == s.DOC_CONFLICT:
            self.last_held = doc_id
        else:
            self.last = doc_id


class _Earlier:
    """What the store holds that a batch of new documents must be judged against: by
    message id (a resumed run, the very same message), and by business number."""

    def __init__(self) -> None:
        self.by_mid: dict[str, str] = {}  # received: message id -> transmission
        self.mine: set[tuple[str, str]] = set()  # (message id, transmission) stored
        self.numbers: dict[tuple[str, str, str], _Number] = {}
        self.payloads: dict[str, bytes] = {}  # this batch's documents, for differences
        self.tids: dict[str, str] = {}  # document id -> transmission, for the notes
        #: Numbers more than one new document has: the first is remembered for the others.
        self.repeated: set[tuple[str, str, str]] = set()

    def stored_by(self, mid: str, tid: str) -> bool:
        return (mid, tid) in self.mine

    def note_message(self, mid: str, tid: str, status: str) -> None:
        """A stored document with this message id: stored by ``tid`` (unless failed or a
        repeat), and received (unless also rejected)."""
        if status in _STORED:
            self.mine.add((mid, tid))
            if status in _RECEIVED:
                self.by_mid.setdefault(mid, tid)


def _number_key(partner_id: str, d: Any) -> tuple[str, str, str] | None:
    """Under which number a new document is judged; None for one without number or
    digest (judged by message id only) and for a part of a price list (its parts share
    the list's number with other content each)."""
    if (not d.business_number or not d.content_sha or d.part is not None
            or _PART_ID.search(d.message_id)):
        return None
    return (partner_id, d.doc_type, d.business_number)


# Built once (bound parameters): a statement built per call costs more than its query.
_BY_MESSAGE_ID = (sa.select(s.documents.c.message_id, s.documents.c.transmission_id,
                            s.documents.c.status)
                  .where(s.documents.c.message_id.in_(sa.bindparam("mids", expanding=True))))
_BY_NUMBER = (sa.select(s.documents.c.id, s.documents.c.transmission_id,
                        s.documents.c.partner_id, s.documents.c.doc_type,
                        s.documents.c.business_number, s.documents.c.message_id,
                        s.documents.c.content_sha, s.documents.c.status)
              .where(s.documents.c.partner_id.in_(sa.bindparam("partners", expanding=True)),
                     s.documents.c.doc_type.in_(sa.bindparam("types", expanding=True)),
                     s.documents.c.business_number.in_(sa.bindparam("numbers", expanding=True)))
              .order_by(s.documents.c.created_at, s.documents.c.id))


def _earlier(conn: sa.Connection, docs: list[tuple[str, Any]]) -> _Earlier:
    """Look up, for (partner id, new document) pairs, what the store holds under their
    numbers (by index ``ix_documents_business``: the same message id is under the same
    number too) and, for those without a number, under their message ids: one query per
    500 numbers or ids, however many documents."""
    found = _Earlier()
    counted: Counter[tuple[str, str, str]] = Counter()
    unnumbered: set[str] = set()
    for p, d in docs:
        if d.status is None:
            key = _number_key(p, d)
            if key is None:
                unnumbered.add(d.message_id)
            else:
                counted[key] += 1
    # Statuses are filtered here, not in SQL: a status condition the planner could use
    # would tempt SQLite to walk the (large) status index instead of the id's or number's.
    for chunk in _chunks(sorted(unnumbered), 500):
        for mid, tid, status in conn.execute(_BY_MESSAGE_ID, {"mids": chunk}):
            found.note_message(mid, tid, status)
    keys = set(counted)
    found.repeated = {k for k, n in counted.items() if n > 1}
    if not keys:
        return found
    partners = sorted({k[0] for k in keys})
    types = sorted({k[1] for k in keys})
    legacy: list[tuple[str, tuple[str, str, str], str]] = []
    for chunk in _chunks(sorted({k[2] for k in keys}), 500):
        for r in conn.execute(_BY_NUMBER, {"partners": partners, "types": types,
                                           "numbers": chunk}):
            found.note_message(r.message_id, r.transmission_id, r.status)
            key = (r.partner_id, r.doc_type, r.business_number)
            if r.status not in _RECEIVED or key not in keys or _PART_ID.search(r.message_id):
                continue
            found.tids[r.id] = r.transmission_id
            if r.content_sha is None:  # stored before digests existed: worked out once
                legacy.append((r.id, key, r.status))
                continue
            found.numbers.setdefault(key, _Number()).add(r.id, r.content_sha, r.status)
    if legacy:
        _backfill(conn, legacy, found)
    return found


def _backfill(conn: sa.Connection, legacy: list[tuple[str, tuple[str, str, str], str]],
              found: _Earlier) -> None:
    """Documents stored before content digests existed: digest their payload once and
    keep it (the next look finds it)."""
    d_ = s.documents
    shas: dict[str, str] = {}
    for chunk in _chunks([i for i, _, _ in legacy], 100):
        for doc_id, payload in conn.execute(sa.select(d_.c.id, d_.c.payload)
                                            .where(d_.c.id.in_(chunk))):
            shas[doc_id] = content_digest(bytes(payload))
    conn.execute(d_.update().where(d_.c.id == sa.bindparam("b_id"))
                 .values(content_sha=sa.bindparam("sha")),
                 [dict(b_id=i, sha=sha) for i, sha in shas.items()])
    # Legacy documents are older than any with a digest: "last" stays a newer one.
    for doc_id, key, status in legacy:
        number = found.numbers.setdefault(key, _Number())
        number.contents.setdefault(shas[doc_id], doc_id)
        if status == s.DOC_CONFLICT:
            number.last_held = number.last_held or doc_id
        else:
            number.last = number.last or doc_id


@dataclass(slots=True)
class _Conflict:
    """A new document whose number was received before with other content."""

    doc_id: str
    earlier_id: str
    doc_type: str
    number: str
    held: bool


@dataclass(slots=True)
class _Made:
    """A transmission's new document and outbox rows, and what the decision noted."""

    docs: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    duplicates: list[str]
    conflicts: list[_Conflict]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.docs:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


def _document_rows(tid: str, partner_id: str, docs: Sequence[Any], earlier: _Earlier,
                   now: dt.datetime, *, ids: Sequence[str] | None = None) -> _Made:
    """Rows for a transmission's documents and outbox, each judged against ``earlier``
    (updated as it goes, so a batch's later documents see its earlier ones):

    - one this transmission stored already (a resumed run) is skipped;
    - the same message id, or the same content under its number, received before: a
      DUPLICATE without outbox row;
    - its number received before with other content: a CONFLICT without outbox row, or
      under ``on_conflict = "publish"`` queued like any other, both with ``conflict_of``;
    - else queued (PENDING with an outbox row).

    ``ids`` are the documents' ids when they are stored already (held documents)."""
    made = _Made([], [], [], [])
    for n, d in enumerate(docs):
        did = ids[n] if ids is not None else new_id()
        if d.status is not None:  # a failed or unsupported message: kept, never published
            made.docs.append(dict(
                id=did, transmission_id=tid, partner_id=partner_id, doc_type=d.doc_type,
                schema_version=d.schema_version, business_number=d.business_number,
                interchange_ref=d.interchange_ref, message_ref=d.message_ref,
                message_id=d.message_id, status=d.status, created_at=now, published_at=None,
                payload=d.payload, stage=d.stage, reason=d.reason, content_sha=None,
                conflict_of=None))
            continue
        if earlier.stored_by(d.message_id, tid):
            continue
        key = _number_key(partner_id, d)
        number = earlier.numbers.get(key) if key else None
        status, conflict_of = s.PENDING, None
        if d.message_id in earlier.by_mid or (number is not None
                                              and d.content_sha in number.contents):
            status = s.DOC_DUPLICATE
            made.duplicates.append(d.business_number or d.message_id)
        elif number is not None and (number.last or number.last_held):
            conflict_of = number.last or number.last_held
            held = d.on_conflict != "publish"
            status = s.DOC_CONFLICT if held else s.PENDING
            made.conflicts.append(_Conflict(did, cast(str, conflict_of), d.doc_type,
                                            d.business_number, held))
        earlier.by_mid.setdefault(d.message_id, tid)
        if key is not None and status != s.DOC_DUPLICATE and (number is not None
                                                             or key in earlier.repeated):
            earlier.numbers.setdefault(key, _Number()).add(did, d.content_sha, status)
            earlier.tids[did] = tid
            if ids is None:
                earlier.payloads[did] = d.payload
        if ids is None:
            made.docs.append(dict(
                id=did, transmission_id=tid, partner_id=partner_id, doc_type=d.doc_type,
                schema_version=d.schema_version, business_number=d.business_number,
                interchange_ref=d.interchange_ref, message_ref=d.message_ref,
                message_id=d.message_id, status=status, created_at=now, published_at=None,
                payload=d.payload, stage=None, reason=None, content_sha=d.content_sha,
                conflict_of=conflict_of))
        else:  # a held document, stored already: only what changes
            made.docs.append(dict(id=did, status=status, conflict_of=conflict_of))
        if status == s.PENDING:
            made.outbox.append(dict(document_id=did, routing_key=f"{d.doc_type}.{partner_id}"
                                    if ids is not None else d.routing_key,
                                    created_at=now, attempts=0))
    return made


def _conflict_events(conn: sa.Connection, tid: str, conflicts: list[_Conflict],
                     earlier: _Earlier, now: dt.datetime) -> list[dict[str, Any]]:
    """One ``conflict`` event per conflicting document, naming the earlier document and
    what differs (payloads read only here, for conflicts)."""
    if not conflicts:
        return []
    wanted = {c.earlier_id for c in conflicts} | {c.doc_id for c in conflicts}
    payloads = {i: earlier.payloads[i] for i in wanted if i in earlier.payloads}
    missing = sorted(wanted - set(payloads))
    for chunk in _chunks(missing, 100):
        payloads.update((i, bytes(p)) for i, p in conn.execute(
            sa.select(s.documents.c.id, s.documents.c.payload)
            .where(s.documents.c.id.in_(chunk))))
    rows = []
    for c in conflicts[:50]:
        try:
            diff = compare(json.loads(payloads[c.earlier_id]),
                           json.loads(payloads[c.doc_id])).summary()
        except (KeyError, ValueError):
            diff = "differences not available"
        where = earlier.tids.get(c.earlier_id)
        what = ("held for an operator (edigw conflicts release|reject "
                f"{c.doc_id})" if c.held else "published anyway (on_conflict = publish)")
        rows.append(dict(
            transmission_id=tid, at=now, event="conflict",
            detail=f"{c.doc_type} {c.number}: document {c.doc_id} differs from document "
                   f"{c.earlier_id}" + (f" (transmission {where})" if where and where != tid
                                        else "") + f" with the same number: {diff}; {what}"))
    return rows


def _final_status(note: Note, counts: dict[str, int]) -> tuple[str, str | None, str | None]:
    """A processed transmission's status, stage and reason: FAILED when every message
    failed, else as its documents settle it (``_settle``) with the note of the messages
    that failed, if any."""
    if note.failed:
        return s.FAILED, note.stage, note.reason
    return _settle_counts(counts), note.stage, note.reason


def _outcome_events(tid: str, note: Note, total: int, queued: int,
                    now: dt.datetime) -> list[dict[str, Any]]:
    if note.failed:
        return [dict(transmission_id=tid, at=now, event="failed",
                     detail=f"{note.stage}: {note.reason}")]
    rows = [dict(transmission_id=tid, at=now, event="processed",
                 detail=f"{total} document(s), {queued} queued for publishing")]
    if note.reason:
        rows.append(dict(transmission_id=tid, at=now, event="messages-failed",
                         detail=f"{note.stage}: {note.reason}"))
    return rows


def _side_rows(record: Processed, now: dt.datetime) -> list[tuple[sa.Table, dict[str, Any]]]:
    """Interchange and outbound rows that go with a processed transmission's outcome."""
    tid, partner_id = record.tid, record.partner_id
    rows: list[tuple[sa.Table, dict[str, Any]]] = []
    for ic in record.interchanges:
        rows.append((s.interchanges, dict(
            transmission_id=tid, partner_id=partner_id, sender_id=ic.sender_id,
            sender_qualifier=ic.sender_qualifier, recipient_id=ic.recipient_id,
            control_ref=ic.control_ref, prepared=ic.prepared, received_at=now,
            message_count=ic.message_count, status=ic.status, reason=ic.reason)))
    for out in record.outbound:
        rows.append((s.outbound, dict(
            id=new_id(), transmission_id=tid, partner_id=partner_id, kind=out.kind,
            channel=out.channel, filename=out.filename, sha256=out.sha256, size=out.size,
            status=s.OUT_PENDING, attempts=0, last_error=None, created_at=now, sent_at=None,
            detail=out.detail)))
    return rows


def _insert_side_rows(conn: sa.Connection, rows: list[tuple[sa.Table, dict[str, Any]]]) -> None:
    for table in (s.interchanges, s.outbound):
        values = [r for t, r in rows if t is table]
        if values:
            conn.execute(table.insert(), values)


def _outbound_row(r: Any) -> OutboundRow:
    data = dict(r._mapping)
    data["created_at"] = aware(data["created_at"])
    data["sent_at"] = aware(data["sent_at"])
    return OutboundRow(**data)


def _duplicate_events(tid: str, dups: list[str], now: dt.datetime) -> list[dict[str, Any]]:
    if not dups:
        return []
    return [dict(transmission_id=tid, at=now, event="duplicate-documents",
                 detail="already received, not published again: " + ", ".join(dups[:20])
                 + (" …" if len(dups) > 20 else ""))]


_REFS_SEEN = (sa.select(s.interchanges.c.control_ref, s.interchanges.c.transmission_id,
                        s.interchanges.c.received_at)
              .where(s.interchanges.c.partner_id == sa.bindparam("partner"))
              .where(s.interchanges.c.control_ref.in_(sa.bindparam("refs", expanding=True)))
              .order_by(s.interchanges.c.id))
_REFS_SEEN_SINCE = _REFS_SEEN.where(s.interchanges.c.received_at >= sa.bindparam("since"))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and durable commits."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss, which is what "durably received" means.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def default_sqlite_url(var_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(var_dir).resolve() / 'edigw.sqlite3'}"
