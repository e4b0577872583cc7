"""The value of each order and invoice, read once from its canonical JSON into
``document_values``: what the manager page sums per day, partner and currency instead of
parsing payloads on every request.

The rollup is filled on read, bounded to the range asked: ``refresh(store, zone, since)``
adds the documents created since ``since`` that it does not hold yet (an index range on
``documents (doc_type, created_at)``, an anti-join on the rollup's key), then re-reads the
few rows not settled yet. ``document_values_coverage`` remembers which ``created_at`` range
is held, so a later request reads only what came since (less an hour's margin for
transactions that committed late) or what lies before it. Nothing in the pipeline writes
here: the rollup is a cache of the documents, and can be emptied at any time.
``document_value_days`` sums the counted rows per day, partner, type, direction, format and
currency in the same transactions (only rows an insert or a settling really wrote are added,
so two requests filling at once do not count twice), and ``document_value_weeks`` the same
per week: the manager's queries read a range's whole weeks there, its other days here.

- **Settled**: a document HELD (its streamed file not finished) or CONFLICT (waiting for an
  operator) may still change; its row is re-read each time until it is neither.
- **Counted**: FAILED, UNSUPPORTED, DUPLICATE and REJECTED documents, copies and duplicate
  messages of an invoice (BGM 1225 copy, duplicate) are held but not counted.
- **Day**: the day of the document's transmission (``received_at``, as ``/api/stats``) in
  the console's zone; a change of zone empties the rollup.
- **Amount**: an order's lines (``gateway.store.read.stats.order_amount``); an invoice's net
  total (``invoice_amount``), negative for a credit note and for a cancellation.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from gateway.core import clock
from gateway.core.status import DocumentStatus
from gateway.store import schema as s
from gateway.store.db import Store
from gateway.store.read.stats import order_amount
from gateway.store.records import aware

#: The document types the rollup holds.
VALUED_TYPES = ("order", "invoice")
#: Statuses a document may still leave (released, rejected, failed): read again until not.
UNSETTLED = frozenset({DocumentStatus.HELD, DocumentStatus.CONFLICT})
#: The same as SQL, as the partial index ``ix_documents_unsettled`` is defined (the query
#: that reads it must say it alike).
STILL_HELD = "status IN ('CONFLICT', 'HELD')"
#: Statuses that do not count, as in ``/api/stats``.
NOT_COUNTED = frozenset({DocumentStatus.FAILED, DocumentStatus.UNSUPPORTED,
                         DocumentStatus.DUPLICATE, DocumentStatus.REJECTED})
#: UNCL 1001 codes of credit notes (EN 16931 BT-3 for a credit note: 81, 83, 261, 262, 296,
#: 308, 381, 396, 420, 458, 532).
CREDIT_NOTE_TYPES = frozenset({"81", "83", "261", "262", "296", "308", "381", "396", "420",
                               "458", "532"})
#: BGM 1225 functions that repeat an invoice counted already.
REPEATS = frozenset({"copy", "duplicate"})
#: BGM 1225 functions that take an invoice back.
TAKEN_BACK = frozenset({"cancel", "delete"})
#: What a refresh reads again before the end of what it held (late commits).
MARGIN = dt.timedelta(hours=1)
#: Documents read per query while filling.
CHUNK = 2000
_E4 = Decimal(10000)
_MAX_E4 = 2**63 - 1


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def invoice_amount(payload: dict[str, Any]) -> Decimal:
    """An invoice's net value (without VAT, as order lines are): ``totals.tax_exclusive``
    (BT-109), else line total + charges − allowances (BT-106 + BT-108 − BT-107), else the sum
    of the lines' net amounts. A credit note (``CREDIT_NOTE_TYPES``) and a cancellation count
    negative, whatever sign the partner wrote."""
    totals = payload.get("totals") or {}
    amount = _decimal(totals.get("tax_exclusive"))
    if amount is None:
        line_total = _decimal(totals.get("line_total"))
        if line_total is not None:
            amount = (line_total + (_decimal(totals.get("charge_total")) or 0)
                      - (_decimal(totals.get("allowance_total")) or 0))
    if amount is None:
        amount = sum((_decimal(line.get("line_net_amount")) or Decimal(0)
                      for line in payload.get("lines") or [] if isinstance(line, dict)),
                     Decimal(0))
    credit = str(payload.get("invoice_type") or "") in CREDIT_NOTE_TYPES
    if credit != (payload.get("function") in TAKEN_BACK):
        return -abs(amount)
    return abs(amount) if credit else amount  # a cancelled credit note gives back


def _value(doc_type: str, status: str, payload: bytes | None) -> tuple[str | None, int, bool]:
    """(currency, amount × 10 000, counted) of one document."""
    try:
        data = json.loads(payload or b"")
    except (ValueError, UnicodeDecodeError):
        return None, 0, False
    if not isinstance(data, dict):
        return None, 0, False
    counted = status not in NOT_COUNTED and status not in UNSETTLED
    try:
        if doc_type == "invoice":
            amount = invoice_amount(data)
            counted = counted and data.get("function") not in REPEATS
        else:
            amount = order_amount(data)
        e4 = int((amount * _E4).to_integral_value(ROUND_HALF_EVEN))
    except (InvalidOperation, TypeError, AttributeError, ValueError):
        return None, 0, False  # a foreign payload: held, counted as nothing
    if abs(e4) > _MAX_E4:
        return None, 0, False
    currency = data.get("currency")
    return (str(currency)[:16] if currency else None), e4, counted


def _rows(found: Iterable[Any], zone: ZoneInfo) -> list[dict[str, Any]]:
    out = []
    for r in found:
        currency, e4, counted = _value(r.doc_type, r.status, r.payload)
        day = aware(r.received_at).astimezone(zone).date()
        out.append(dict(document_id=r.id, day=day,
                        week=day - dt.timedelta(days=day.weekday()), month=day.replace(day=1),
                        partner_id=r.partner_id, doc_type=r.doc_type, direction=r.direction,
                        format=(r.format or None) and str(r.format)[:16], currency=currency,
                        amount_e4=e4, counted=counted, settled=r.status not in UNSETTLED))
    return out


_DAY_KEY = ("day", "partner_id", "doc_type", "direction", "format", "currency")
_WEEK_KEY = ("week", *_DAY_KEY[1:])


def _add_to_days(conn: sa.Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Add the counted ``rows`` to their days' and weeks' sums (``document_value_days``,
    ``document_value_weeks``)."""
    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if not r["counted"]:
            continue
        key = tuple(r[k] or "" for k in _DAY_KEY)
        cell = acc.setdefault(key, dict(zip(_DAY_KEY, key, strict=True), week=r["week"],
                                        month=r["month"], documents=0, amount_e4=0))
        cell["documents"] += 1
        cell["amount_e4"] += r["amount_e4"]
    if not acc:
        return
    weeks: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in acc.values():
        key = (cell["week"], *(cell[k] for k in _DAY_KEY[1:]))
        week = weeks.setdefault(key, dict(zip(_WEEK_KEY, key, strict=True), documents=0,
                                          amount_e4=0, month=cell["week"].replace(day=1)))
        week["documents"] += cell["documents"]
        week["amount_e4"] += cell["amount_e4"]
    for table, key, rows in ((s.document_value_days, _DAY_KEY, list(acc.values())),
                             (s.document_value_weeks, _WEEK_KEY, list(weeks.values()))):
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            ins = sqlite_insert(table)
        conn.execute(ins.on_conflict_do_update(index_elements=list(key), set_={
            "documents": table.c.documents + ins.excluded.documents,
            "amount_e4": table.c.amount_e4 + ins.excluded.amount_e4}), rows)


def _insert_new(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` and add them to their days, leaving out those another request
    inserted meanwhile (only the rows this insert wrote are added)."""
    v = s.document_values
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        q: Any = pg_insert(v).on_conflict_do_nothing(index_elements=["document_id"])
    else:
        q = v.insert().prefix_with("OR IGNORE")
    written = set(conn.execute(q.returning(v.c.document_id), rows).scalars())
    _add_to_days(conn, (r for r in rows if r["document_id"] in written))


def _fill(store: Store, zone: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> int:
    """Add the documents created in ``[lo, hi)`` that the rollup lacks; how many.

    Each chunk is an index range on ``(doc_type, created_at)`` read on from the last key
    seen; the chunk's ids are then looked up in ``document_values`` by key, and only the
    missing documents are read whole (with their payloads). No anti-join: with one, the
    planner may hash the whole rollup for every chunk (seen on PostgreSQL: 7 s a chunk)."""
    d, t, v = s.documents, s.transmissions, s.document_values
    added = 0
    for doc_type in VALUED_TYPES:
        after: tuple[dt.datetime, str] | None = None
        while True:
            keys = (sa.select(d.c.id, d.c.created_at)
                    .where(d.c.doc_type == doc_type)
                    .where(d.c.created_at >= lo).where(d.c.created_at < hi)
                    .order_by(d.c.created_at, d.c.id).limit(CHUNK))
            if after is not None:  # on from the last one read: each document read once
                # The plain bound lets the index range start there (an OR alone does not).
                keys = keys.where(d.c.created_at >= after[0],
                                  sa.or_(d.c.created_at > after[0],
                                         sa.and_(d.c.created_at == after[0],
                                                 d.c.id > after[1])))
            with store.connect() as conn:
                page = conn.execute(keys).all()
                ids = [r.id for r in page]
                have = set(conn.execute(sa.select(v.c.document_id)
                                        .where(v.c.document_id.in_(ids))).scalars()
                           ) if ids else set()
                missing = [i for i in ids if i not in have]
                found = list(conn.execute(
                    sa.select(d.c.id, d.c.partner_id, d.c.doc_type, d.c.status, d.c.payload,
                              d.c.created_at, t.c.received_at, t.c.format, t.c.direction)
                    .select_from(d.join(t, d.c.transmission_id == t.c.id))
                    .where(d.c.id.in_(missing)))) if missing else []
            if found:
                with store._begin() as conn:
                    _insert_new(conn, _rows(found, zone))
                added += len(found)
            if len(page) < CHUNK:
                break
            after = (page[-1].created_at, page[-1].id)
    return added


def _settle(store: Store, zone: ZoneInfo) -> None:
    """Read again the rows whose document could still change and has: left HELD or
    CONFLICT, or gone. One still held is left as it is (counted as nothing until it
    settles): a store with thousands of held documents is not rewritten at every read.
    The ids of the unsettled rows and of the documents still held are read from two partial
    indexes (no row read); only the rows of the documents that left are read."""
    d, t, v = s.documents, s.transmissions, s.document_values
    with store.engine.connect() as conn:
        # From the partial indexes: SQLite, without statistics, would take the other
        # indexes on these columns (and read each row) unless told.
        lite = conn.dialect.name == "sqlite"
        waiting = set(conn.execute(sa.text(
            "SELECT document_id FROM document_values"
            + (" INDEXED BY ix_document_values_unsettled WHERE settled = 0" if lite
               else " WHERE settled = false"))).scalars())
        if not waiting:
            return
        waiting -= set(conn.execute(sa.text(
            "SELECT id FROM documents" + (" INDEXED BY ix_documents_unsettled" if lite else "")
            + " WHERE " + STILL_HELD)).scalars())
        found: list[Any] = []
        for ids in (sorted(waiting)[i:i + CHUNK] for i in range(0, len(waiting), CHUNK)):
            found += conn.execute(
                sa.select(v.c.document_id, d.c.id, d.c.partner_id, d.c.doc_type, d.c.status,
                          d.c.payload, t.c.received_at, t.c.format, t.c.direction)
                .select_from(v.outerjoin(d, d.c.id == v.c.document_id)
                             .outerjoin(t, t.c.id == d.c.transmission_id))
                .where(v.c.document_id.in_(ids)).where(v.c.settled.is_(False))
                .where(sa.or_(d.c.id.is_(None), d.c.status.notin_(list(UNSETTLED)))))
    if not found:
        return
    gone = [r.document_id for r in found if r.id is None or r.received_at is None]
    fresh = _rows([r for r in found if r.id is not None and r.received_at is not None], zone)
    with store._begin() as conn:
        if gone:  # never counted: nothing to take from the days
            conn.execute(v.delete().where(v.c.document_id.in_(gone)))
        now_counted = []
        for row in fresh:
            done = conn.execute(v.update().where(v.c.document_id == row["document_id"])
                                .where(v.c.settled.is_(False)).values(
                {k: val for k, val in row.items() if k != "document_id"}))
            if done.rowcount == 1:  # this request settled it (another may have meanwhile)
                now_counted.append(row)
        _add_to_days(conn, now_counted)


def refresh(store: Store, zone: ZoneInfo, since: dt.datetime) -> None:
    """Make the rollup hold every order and invoice created since ``since`` (UTC), with its
    day in ``zone``: fill what is missing at either end of what it holds, then settle."""
    c, v = s.document_values_coverage, s.document_values
    now = aware(clock.now()).astimezone(dt.UTC)
    since = min(aware(since).astimezone(dt.UTC), now)
    with store.engine.connect() as conn:
        held = conn.execute(sa.select(c).where(c.c.id == 1)).first()
    if held is not None and held.zone != zone.key:
        with store._begin() as conn:  # days were cut in another zone: start again
            conn.execute(v.delete())
            conn.execute(s.document_value_days.delete())
            conn.execute(s.document_value_weeks.delete())
            conn.execute(c.delete())
        held = None
    if held is None:
        windows = [(since, now)]
        start = since
    else:
        covered_from = aware(held.covered_from).astimezone(dt.UTC)
        covered_until = aware(held.covered_until).astimezone(dt.UTC)
        windows = [(covered_until - MARGIN, now)]
        if since < covered_from:
            windows.insert(0, (since, covered_from + MARGIN))
        start = min(since, covered_from)
    added = sum(_fill(store, zone, lo, hi) for lo, hi in windows)
    _settle(store, zone)
    if held is not None and len(windows) == 1 and not added:
        return  # nothing new: the next read looks from the same point (no write per read)
    with store._begin() as conn:
        conn.execute(c.delete().where(c.c.id == 1))
        conn.execute(c.insert().values(id=1, zone=zone.key, covered_from=start,
                                       covered_until=now))


def clear(store: Store) -> None:
    """Empty the rollup (it fills again on the next read)."""
    with store._begin() as conn:
        conn.execute(s.document_values.delete())
        conn.execute(s.document_value_days.delete())
        conn.execute(s.document_value_weeks.delete())
        conn.execute(s.document_values_coverage.delete())


__all__ = ["CREDIT_NOTE_TYPES", "clear", "invoice_amount", "refresh"]
