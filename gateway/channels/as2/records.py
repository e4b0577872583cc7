"""AS2 messages received and the MDN each was answered with (table ``as2_messages``).

One row per (AS2-From, AS2-To, Message-ID). An accepted message has a ``transmission_id``;
a refused one has none, and a later message with the same Message-ID (the partner resending
once its configuration is fixed) replaces the refused row. The MDN as sent is in the archive
under ``mdn_archive_key``: the MDN's headers, a blank line, then its body (the form pyas2lib's
``Mdn.parse`` reads); ``mdn_http_parts`` splits it into HTTP headers and body for sending.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import HTTP
from typing import Any

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store, new_id, utcnow
from gateway.store.records import aware

_TIMES = ("received_at", "mdn_next_at", "mdn_sent_at")


@dataclass(frozen=True, slots=True)
class As2MessageRow:
    id: str
    message_id: str
    partner_id: str | None
    as2_from: str
    as2_to: str
    transmission_id: str | None
    received_at: dt.datetime
    signed: bool
    encrypted: bool
    compressed: bool
    algorithms: str | None
    mic: str | None
    disposition: str
    detail: str | None
    mdn_mode: str
    mdn_signed: bool
    mdn_url: str | None
    mdn_archive_key: str | None
    mdn_content_type: str | None
    mdn_state: str
    mdn_attempts: int
    mdn_next_at: dt.datetime | None
    mdn_last_error: str | None
    mdn_sent_at: dt.datetime | None

    @property
    def accepted(self) -> bool:
        return self.transmission_id is not None


class As2Records:
    """Reads and writes ``as2_messages`` on the gateway's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, as2_from: str, as2_to: str, message_id: str) -> As2MessageRow | None:
        t = s.as2_messages
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.as2_from == as2_from,
                                                  t.c.as2_to == as2_to,
                                                  t.c.message_id == message_id)).first()
        return _row(row) if row is not None else None

    def get(self, row_id: str) -> As2MessageRow | None:
        t = s.as2_messages
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == row_id)).first()
        return _row(row) if row is not None else None

    def add(self, **columns: Any) -> str | None:
        """Insert a row (``id`` and ``received_at`` filled in when not given); returns its id.

        A refused row with the same key is replaced. Returns None when an accepted row with the
        same key is already there (the same message received twice at the same moment)."""
        t = s.as2_messages
        values = dict(columns)
        values.setdefault("id", new_id())
        values.setdefault("received_at", utcnow())
        values.setdefault("mdn_state", "none")
        with self.store._begin() as conn:
            old = conn.execute(sa.select(t.c.id, t.c.transmission_id).where(
                t.c.as2_from == values["as2_from"], t.c.as2_to == values["as2_to"],
                t.c.message_id == values["message_id"])).first()
            if old is not None:
                if old.transmission_id is not None:
                    return None
                conn.execute(t.delete().where(t.c.id == old.id))
            try:
                with conn.begin_nested():
                    conn.execute(t.insert().values(**values))
            except sa.exc.IntegrityError:
                return None
        return str(values["id"])

    def due_mdns(self, now: dt.datetime, limit: int = 50) -> list[As2MessageRow]:
        """Asynchronous MDNs waiting for delivery whose next attempt is due, oldest first."""
        t = s.as2_messages
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.mdn_state == "pending",
                                                   t.c.mdn_next_at <= now)
                                .order_by(t.c.mdn_next_at, t.c.id).limit(limit)).all()
        return [_row(r) for r in rows]

    def mdn_attempt(self, row_id: str, *, delivered: bool, error: str | None,
                    next_at: dt.datetime | None) -> None:
        """Record one delivery attempt of an asynchronous MDN: delivered → ``sent``; not
        delivered with a ``next_at`` → still ``pending``; without one → ``failed``."""
        t = s.as2_messages
        now = utcnow()
        values: dict[str, Any] = {"mdn_attempts": t.c.mdn_attempts + 1,
                                  "mdn_last_error": (error or None) and error[:2000]}
        if delivered:
            values.update(mdn_state="sent", mdn_sent_at=now, mdn_next_at=None)
        elif next_at is not None:
            values.update(mdn_state="pending", mdn_next_at=next_at)
        else:
            values.update(mdn_state="failed", mdn_next_at=None)
        with self.store._begin() as conn:
            conn.execute(t.update().where(t.c.id == row_id).values(**values))

    def recent(self, limit: int = 100) -> list[As2MessageRow]:
        t = s.as2_messages
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.received_at.desc(), t.c.id.desc())
                                .limit(limit)).all()
        return [_row(r) for r in rows]


def mdn_http_parts(raw: bytes) -> tuple[dict[str, str], bytes]:
    """An archived MDN (headers, blank line, body) as HTTP headers and body."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            break
    else:
        return {}, raw
    parsed = BytesHeaderParser(policy=HTTP).parsebytes(head + sep)
    return {k: str(v) for k, v in parsed.items()}, body


def _row(r: Any) -> As2MessageRow:
    values = dict(r._mapping)
    for k in _TIMES:
        values[k] = aware(values[k])
    return As2MessageRow(**values)


#: What ``edigw show`` prints of the row.
_SHOWN = ("message_id", "as2_from", "as2_to", "received_at", "signed", "encrypted",
                 "compressed", "algorithms", "mic", "disposition", "detail", "mdn_mode",
                 "mdn_signed", "mdn_url", "mdn_state", "mdn_attempts", "mdn_next_at",
                 "mdn_last_error", "mdn_sent_at")


def transport_record(store: Store, transmission_id: str) -> dict[str, Any] | None:
    """The AS2 message and its MDN that brought this transmission, if it came this way;
    datetimes timezone-aware."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(s.as2_messages).where(
            s.as2_messages.c.transmission_id == transmission_id)).first()
    if row is None:
        return None
    return {k: _aware_value(getattr(row, k)) for k in _SHOWN}


def _aware_value(value: Any) -> Any:
    return aware(value) if isinstance(value, dt.datetime) else value
