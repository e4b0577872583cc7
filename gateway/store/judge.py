"""New documents judged against what the store holds: resumed, duplicate, conflict.

The decision ``record_outcome``, ``record_batch`` and ``release_held`` share: one lookup
for a whole batch, then each document judged in turn (a batch's later documents see its
earlier ones).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa

from gateway.core.conflicts import compare
from gateway.core.documents import routing_key
from gateway.core.ids import new_id
from gateway.store import schema as s
from gateway.store.engine import chunks

#: Documents that were received: an identical one later is a DUPLICATE, a different one
#: under the same number a CONFLICT. Failed, unsupported and rejected ones do not count.
_RECEIVED = (s.PENDING, s.DOC_PUBLISHED, s.UNROUTABLE, s.DOC_CONFLICT)
#: Stored by an earlier run of the same transmission (a resumed run skips them).
_STORED = (*_RECEIVED, s.DOC_REJECTED)
_PART_ID = re.compile(r"-p\d+$")


class Held:
    """A held document (a streamed transmission's) as the decision needs it."""

    __slots__ = ("business_number", "content_sha", "doc_type", "id", "message_id",
                 "on_conflict", "part", "partner_id", "routing_key", "status")

    def __init__(self, row: Any, on_conflict: str, *, test: bool = False) -> None:
        self.id = row.id
        self.message_id = row.message_id
        self.doc_type = row.doc_type
        self.partner_id = row.partner_id
        self.business_number = row.business_number
        self.content_sha = row.content_sha
        self.part = 1 if _PART_ID.search(row.message_id) else None
        self.on_conflict = on_conflict
        self.status = None
        # A partner in test: its documents go to the test queue (core.documents).
        self.routing_key = routing_key(row.doc_type, row.partner_id, test=test)

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


def earlier_documents(conn: sa.Connection, docs: list[tuple[str, Any]]) -> _Earlier:
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
    for chunk in chunks(sorted(unnumbered), 500):
        for mid, tid, status in conn.execute(_BY_MESSAGE_ID, {"mids": chunk}):
            found.note_message(mid, tid, status)
    keys = set(counted)
    found.repeated = {k for k, n in counted.items() if n > 1}
    if not keys:
        return found
    partners = sorted({k[0] for k in keys})
    types = sorted({k[1] for k in keys})
    legacy: list[tuple[str, tuple[str, str, str], str]] = []
    for chunk in chunks(sorted({k[2] for k in keys}), 500):
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
    from gateway.core.canonical import content_digest  # pydantic models: only when needed

    d_ = s.documents
    shas: dict[str, str] = {}
    for chunk in chunks([i for i, _, _ in legacy], 100):
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


def document_rows(tid: str, partner_id: str, docs: Sequence[Any], earlier: _Earlier,
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
            made.outbox.append(dict(document_id=did, routing_key=d.routing_key,
                                    created_at=now, attempts=0))
    return made


def conflict_events(conn: sa.Connection, tid: str, conflicts: list[_Conflict],
                     earlier: _Earlier, now: dt.datetime) -> list[dict[str, Any]]:
    """One ``conflict`` event per conflicting document, naming the earlier document and
    what differs (payloads read only here, for conflicts)."""
    if not conflicts:
        return []
    wanted = {c.earlier_id for c in conflicts} | {c.doc_id for c in conflicts}
    payloads = {i: earlier.payloads[i] for i in wanted if i in earlier.payloads}
    missing = sorted(wanted - set(payloads))
    for chunk in chunks(missing, 100):
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


def duplicate_events(tid: str, dups: list[str], now: dt.datetime) -> list[dict[str, Any]]:
    if not dups:
        return []
    return [dict(transmission_id=tid, at=now, event="duplicate-documents",
                 detail="already received, not published again: " + ", ".join(dups[:20])
                 + (" …" if len(dups) > 20 else ""))]
