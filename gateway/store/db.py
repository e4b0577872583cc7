"""The store: transmissions, their timeline, documents and the outbox (SQLAlchemy Core).

SQLite (a file under ``var/`` by default) and PostgreSQL run the same code. Every method
is one transaction; a method that returns has committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.core import clock
from gateway.core.errors import StoreError
from gateway.store import schema as s
from gateway.store.records import (
    DocumentRow,
    LogFilter,
    NewDocument,
    NewInterchange,
    NewOutbound,
    OutboundRow,
    OutboxItem,
    TransmissionRow,
    aware,
)

_last_ms = 0
_seq = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A 24-character id that sorts by creation: milliseconds, a sequence, 32 random bits."""
    global _last_ms, _seq
    with _id_lock:
        ms = int(time.time() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFFF:
                ms, _seq = ms + 1, 0
        else:
            _seq = 0
        _last_ms = ms
        return f"{ms:012x}{_seq:04x}{secrets.token_hex(4)}"


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
        return self.record_received_many([dict(
            channel=channel, channel_ref=channel_ref, filename=filename, size=size,
            sha256=sha256, partner_id=partner_id, duplicate_of=duplicate_of)])[0]

    def record_received_many(self, items: Sequence[dict[str, Any]]) -> list[str]:
        """``record_received`` for many payloads in one commit (group commit for throughput).

        Each item holds the keyword arguments of ``record_received``.
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
                         final: bool = True, **outcome: Any) -> int:
        """Store the documents of a transmission and their outbox rows in one commit.

        A document whose ``message_id`` is already stored is recorded as DUPLICATE and gets no
        outbox row; one already stored by this same transmission (an earlier chunk, or a run
        cut short by a crash) is skipped. With ``final=False`` only the documents are written
        (a chunk of a large interchange) and the transmission stays as it is. Returns the
        number of documents queued for publishing.
        """
        with self._begin() as conn:
            return self._record_processed(conn, tid, partner_id=partner_id, fmt=fmt,
                                          standard=standard, docs=docs, events=events,
                                          final=final, **outcome)

    def record_batch(self, outcomes: Sequence[dict[str, Any]]) -> list[int]:
        """Several transmissions' outcomes in one commit (small files processed together).

        Each item has ``kind`` "processed" (keyword arguments of ``record_processed``) or
        "failed" (those of ``record_failed``). A processed item may also carry
        ``interchanges`` (NewInterchange), ``outbound`` (NewOutbound, bytes archived already)
        and ``stage``/``reason``/``failed``: the note of messages that failed (with
        ``failed`` True when none succeeded: the transmission is then FAILED, its failed
        messages still stored as documents). Returns the documents queued, per item. The
        statements are set-based: one lookup, one insert per table and one executemany per
        kind of update for the whole batch, whatever its size.
        """
        now = utcnow()
        d_, t = s.documents, s.transmissions
        queued = [0] * len(outcomes)
        with self._begin() as conn:
            existing = _existing(conn, [d.message_id for o in outcomes
                                        if o["kind"] == "processed" for d in o["docs"]])
            doc_rows: list[dict[str, Any]] = []
            outbox_rows: list[dict[str, Any]] = []
            event_rows: list[dict[str, Any]] = []
            done_rows: list[dict[str, Any]] = []
            failed_rows: list[dict[str, Any]] = []
            side_rows: list[tuple[sa.Table, dict[str, Any]]] = []
            seen: set[str] = set()
            for i, o in enumerate(outcomes):
                tid = o["tid"]
                if o["kind"] == "processed" and any(existing.get(d.message_id) == tid
                                                    for d in o["docs"]):
                    # A resumed run: let the careful path count what is stored already.
                    queued[i] = self._record_processed(
                        conn, **{k: v for k, v in o.items() if k != "kind"})
                    continue
                event_rows += [dict(transmission_id=tid, at=now, event=e, detail=d)
                               for e, d in o.get("events", ())]
                if o["kind"] != "processed":
                    failed_rows.append(dict(
                        b_id=tid, status=o.get("status", s.FAILED), stage=o["stage"],
                        reason=o["reason"], updated_at=now))
                    event_rows.append(dict(transmission_id=tid, at=now,
                                           event=o.get("status", s.FAILED).lower(),
                                           detail=f"{o['stage']}: {o['reason']}"))
                    if o.get("partner_id") or o.get("fmt"):
                        conn.execute(t.update().where(t.c.id == tid).values(
                            partner_id=o.get("partner_id"), format=o.get("fmt"),
                            standard=o.get("standard")))
                    continue
                docs, boxes, dups = _document_rows(tid, o["partner_id"], o["docs"], existing,
                                                   seen, now)
                doc_rows += docs
                outbox_rows += boxes
                queued[i] = len(boxes)
                total = len(o["docs"])
                status, stage, reason = _final_status(o, bool(queued[i]))
                done_rows.append(dict(
                    b_id=tid, partner_id=o["partner_id"], format=o["fmt"],
                    standard=o["standard"], status=status,
                    stage=stage, reason=reason, document_count=total, updated_at=now))
                event_rows += _duplicate_events(tid, dups, now)
                event_rows += _outcome_events(tid, o, total, queued[i], now)
                side_rows += _side_rows(tid, o["partner_id"], o, now)
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

    def _record_processed(self, conn: sa.Connection, tid: str, *, partner_id: str, fmt: str,
                          standard: str | None, docs: Sequence[NewDocument],
                          events: Iterable[tuple[str, str]] = (), final: bool = True,
                          **outcome: Any) -> int:
        now = utcnow()
        existing = _existing(conn, [d.message_id for d in docs])
        doc_rows, outbox_rows, dups = _document_rows(tid, partner_id, docs, existing, set(), now)
        if doc_rows:
            conn.execute(s.documents.insert(), doc_rows)
        if outbox_rows:
            conn.execute(s.outbox.insert(), outbox_rows)
        event_rows = [dict(transmission_id=tid, at=now, event=e, detail=d) for e, d in events]
        event_rows += _duplicate_events(tid, dups, now)
        if final:
            d_ = s.documents
            total, pending = conn.execute(
                sa.select(sa.func.count(), sa.func.count().filter(d_.c.status == s.PENDING))
                .where(d_.c.transmission_id == tid)).one()
            status, stage, reason = _final_status(outcome, bool(pending))
            conn.execute(s.transmissions.update().where(s.transmissions.c.id == tid).values(
                partner_id=partner_id, format=fmt, standard=standard, status=status,
                stage=stage, reason=reason, document_count=total, updated_at=now))
            event_rows += _outcome_events(tid, outcome, total, pending, now)
        if event_rows:
            conn.execute(s.transmission_events.insert(), event_rows)
        if final:
            _insert_side_rows(conn, _side_rows(tid, partner_id, outcome, now))
        return len(outbox_rows)

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
                     payload=d.payload, stage=d.stage, reason=d.reason) for d in docs]
        if rows:
            with self._begin() as conn:
                conn.execute(s.documents.insert(), rows)
        return [r["id"] for r in rows]

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

    def release_held(self, tid: str) -> tuple[int, int]:
        """Queue every held document of ``tid`` for publishing, in one commit; returns how
        many were queued and how many were duplicates. A message id stored before is a
        DUPLICATE (as ``record_processed`` decides), one this transmission released before
        a crash is dropped."""
        d = s.documents
        now = utcnow()
        queued = 0
        dups: list[str] = []
        seen: set[str] = set()
        with self._begin() as conn:
            while True:
                rows = conn.execute(
                    sa.select(d.c.id, d.c.message_id, d.c.doc_type, d.c.partner_id,
                              d.c.business_number)
                    .where(d.c.transmission_id == tid).where(d.c.status == s.DOC_HELD)
                    .order_by(d.c.id).limit(1000)).all()
                if not rows:
                    break
                existing = _existing(conn, [r.message_id for r in rows])
                fresh, twice, again = [], [], []
                for r in rows:
                    earlier = existing.get(r.message_id)
                    if earlier == tid:
                        again.append(r.id)
                    elif earlier is not None or r.message_id in seen:
                        twice.append(r.id)
                        dups.append(r.business_number or r.message_id)
                    else:
                        fresh.append(r)
                    seen.add(r.message_id)
                if again:
                    conn.execute(d.delete().where(d.c.id.in_(again)))
                if twice:
                    conn.execute(d.update().where(d.c.id.in_(twice))
                                 .values(status=s.DOC_DUPLICATE))
                if fresh:
                    conn.execute(d.update().where(d.c.id.in_([r.id for r in fresh]))
                                 .values(status=s.PENDING))
                    conn.execute(s.outbox.insert(), [
                        dict(document_id=r.id, routing_key=f"{r.doc_type}.{r.partner_id}",
                             created_at=now, attempts=0) for r in fresh])
                    queued += len(fresh)
            events = _duplicate_events(tid, dups, now)
            if events:
                conn.execute(s.transmission_events.insert(), events)
        return queued, len(dups)

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
                               .where(s.documents.c.id == row.document_id)).first()
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
        """Mark PUBLISHED the transmissions none of whose documents is still pending."""
        for chunk in _chunks(list(tids), 500):
            still_pending = set(conn.execute(
                sa.select(s.documents.c.transmission_id)
                .where(s.documents.c.transmission_id.in_(chunk))
                .where(s.documents.c.status == s.PENDING).distinct()).scalars())
            done = [t for t in chunk if t not in still_pending]
            if not done:
                continue
            closed = conn.execute(
                s.transmissions.update()
                .where(s.transmissions.c.id.in_(done))
                .where(s.transmissions.c.status == s.PROCESSED)
                .values(status=s.PUBLISHED, updated_at=now)
                .returning(s.transmissions.c.id)).scalars().all()
            if closed:
                conn.execute(s.transmission_events.insert(), [
                    dict(transmission_id=t, at=now, event="published",
                         detail="every document confirmed by the broker") for t in closed])

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
        return json.loads(raw)

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
    if isinstance(exc, StoreError):
        return getattr(exc, "outage", True)
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return True
        if not isinstance(exc, sa.exc.OperationalError):
            return False
        # PostgreSQL says which: a statement cancelled or over a limit is the data's doing
        # (class 54, 57014), a lost connection or a server going down is an outage.
        state = getattr(exc.orig, "sqlstate", None) or ""
        return not (state.startswith("54") or state == "57014")
    return isinstance(exc, (ConnectionError, sa.exc.TimeoutError))


def _document_row(r: Any) -> DocumentRow:
    data = dict(r._mapping)
    data["created_at"] = aware(data["created_at"])
    data["published_at"] = aware(data["published_at"])
    if "erp_at" in data:
        data["erp_at"] = aware(data["erp_at"])
    return DocumentRow(**data)


_NOT_STORED = (s.DOC_DUPLICATE, s.DOC_FAILED, s.DOC_UNSUPPORTED, s.DOC_HELD)


def _existing(conn: sa.Connection, message_ids: list[str]) -> dict[str, str]:
    """Stored documents (not duplicates, not failed messages) with these message ids:
    message_id -> transmission."""
    d_ = s.documents
    found: dict[str, str] = {}
    for chunk in _chunks(message_ids, 500):
        rows = conn.execute(sa.select(d_.c.message_id, d_.c.transmission_id)
                            .where(d_.c.message_id.in_(chunk))
                            .where(d_.c.status.not_in(_NOT_STORED))).all()
        found.update((r[0], r[1]) for r in rows)
    return found


def _document_rows(tid: str, partner_id: str, docs: Sequence[NewDocument],
                   existing: dict[str, str], seen: set[str], now: dt.datetime
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Rows for a transmission's documents and outbox: a message_id stored before (or twice
    in this batch) is a DUPLICATE without outbox row; one this transmission stored already
    (a resumed run) is skipped. Returns document rows, outbox rows and duplicates' numbers."""
    doc_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    dups: list[str] = []
    for d in docs:
        if d.status is not None:  # a failed or unsupported message: kept, never published
            doc_rows.append(dict(
                id=new_id(), transmission_id=tid, partner_id=partner_id, doc_type=d.doc_type,
                schema_version=d.schema_version, business_number=d.business_number,
                interchange_ref=d.interchange_ref, message_ref=d.message_ref,
                message_id=d.message_id, status=d.status, created_at=now, published_at=None,
                payload=d.payload, stage=d.stage, reason=d.reason))
            continue
        earlier = existing.get(d.message_id)
        if earlier == tid:
            continue
        did = new_id()
        is_dup = earlier is not None or d.message_id in seen
        seen.add(d.message_id)
        doc_rows.append(dict(
            id=did, transmission_id=tid, partner_id=partner_id, doc_type=d.doc_type,
            schema_version=d.schema_version, business_number=d.business_number,
            interchange_ref=d.interchange_ref, message_ref=d.message_ref,
            message_id=d.message_id, status=s.DOC_DUPLICATE if is_dup else s.PENDING,
            created_at=now, published_at=None, payload=d.payload, stage=None, reason=None))
        if is_dup:
            dups.append(d.business_number or d.message_id)
        else:
            outbox_rows.append(dict(document_id=did, routing_key=d.routing_key,
                                    created_at=now, attempts=0))
    return doc_rows, outbox_rows, dups


def _final_status(outcome: dict[str, Any], pending: bool) -> tuple[str, str | None, str | None]:
    """A processed transmission's status, stage and reason: FAILED when every message
    failed, else PROCESSED/PUBLISHED with the note of the messages that failed, if any."""
    if outcome.get("failed"):
        return s.FAILED, outcome.get("stage"), outcome.get("reason")
    return (s.PROCESSED if pending else s.PUBLISHED), outcome.get("stage"), outcome.get("reason")


def _outcome_events(tid: str, outcome: dict[str, Any], total: int, queued: int,
                    now: dt.datetime) -> list[dict[str, Any]]:
    if outcome.get("failed"):
        return [dict(transmission_id=tid, at=now, event="failed",
                     detail=f"{outcome.get('stage')}: {outcome.get('reason')}")]
    rows = [dict(transmission_id=tid, at=now, event="processed",
                 detail=f"{total} document(s), {queued} queued for publishing")]
    if outcome.get("reason"):
        rows.append(dict(transmission_id=tid, at=now, event="messages-failed",
                         detail=f"{outcome.get('stage')}: {outcome['reason']}"))
    return rows


def _side_rows(tid: str, partner_id: str, outcome: dict[str, Any], now: dt.datetime
               ) -> list[tuple[sa.Table, dict[str, Any]]]:
    """Interchange and outbound rows that go with a processed transmission's outcome."""
    rows: list[tuple[sa.Table, dict[str, Any]]] = []
    ics: Sequence[NewInterchange] = outcome.get("interchanges", ())
    for ic in ics:
        rows.append((s.interchanges, dict(
            transmission_id=tid, partner_id=partner_id, sender_id=ic.sender_id,
            sender_qualifier=ic.sender_qualifier, recipient_id=ic.recipient_id,
            control_ref=ic.control_ref, prepared=ic.prepared, received_at=now,
            message_count=ic.message_count, status=ic.status, reason=ic.reason)))
    outs: Sequence[NewOutbound] = outcome.get("outbound", ())
    for out in outs:
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
