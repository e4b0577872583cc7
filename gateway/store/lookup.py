"""What a search box's text names, by exact index-backed lookups (``gateway.tracker.search``).

One text is tried as each kind of reference a support person may paste, each an index seek
bounded by ``limit`` (migration 0011 holds the indexes), never a scan or a guess:

    transmission-id   ``transmissions.id`` (the primary key)
    document-id       ``documents.id``, answered with its transmission
    as2-message-id    ``as2_messages.message_id`` received, ``outbound.remote_id`` sent
                      (with or without the angle brackets)
    document-number   ``documents.business_number`` in any case (``lower()`` index)
    file-name         ``transmissions.filename`` in any case (``lower()`` index)
    interchange-ref   ``interchanges.control_ref`` received, ``outbound.control_ref`` sent

A partner narrows every lookup (it is in the index beside the value).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.store import schema as s
from gateway.store.db import Store

TRANSMISSION_ID = "transmission-id"
DOCUMENT_ID = "document-id"
AS2_MESSAGE_ID = "as2-message-id"
DOCUMENT_NUMBER = "document-number"
FILE_NAME = "file-name"
INTERCHANGE_REF = "interchange-ref"
#: The kinds in the order they are tried; the first that matches is what the text names.
KINDS = (TRANSMISSION_ID, DOCUMENT_ID, AS2_MESSAGE_ID, DOCUMENT_NUMBER, FILE_NAME,
         INTERCHANGE_REF)
#: The longest text looked up (the widest indexed column, an AS2 Message-ID).
MAX_TEXT = 998


@dataclass(frozen=True, slots=True)
class Recognised:
    """One kind of reference the text matched, and the transmissions it leads to (newest
    first for numbers and file names, at most the lookup's ``limit``)."""

    kind: str
    transmission_ids: tuple[str, ...]


def recognise(store: Store, text: str, *, partner: str | None = None,
              limit: int = 50) -> list[Recognised]:
    """Every kind of reference ``text`` matches (in ``KINDS`` order), with their
    transmissions; empty when it names nothing on record."""
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        return []
    bare = text.strip("<>").strip()
    values = {"text": text, "lower": text.lower(), "bare": bare, "angled": f"<{bare}>",
              "partner": partner}
    found: dict[str, dict[str, None]] = {}
    with store.connect() as conn:
        for kind, tid in conn.execute(_statement(partner is not None, limit), values):
            found.setdefault(kind, {})[str(tid)] = None
    return [Recognised(kind, tuple(list(found[kind])[:limit])) for kind in KINDS
            if kind in found]


@functools.cache
def _statement(by_partner: bool, limit: int) -> sa.CompoundSelect[str, str]:
    """The one UNION ALL of every lookup, its values bound by name (``text``, ``lower``,
    ``bare``, ``angled``, ``partner``): built once per shape, since building it (a
    subquery per member) cost more than the index seeks it runs."""
    t, d, i, o, a = (s.transmissions, s.documents, s.interchanges, s.outbound,
                     s.as2_messages)
    text, lower = sa.bindparam("text", type_=sa.String), sa.bindparam("lower", type_=sa.String)
    bare, angled = sa.bindparam("bare", type_=sa.String), sa.bindparam("angled",
                                                                        type_=sa.String)

    def of(table: sa.Table) -> list[sa.ColumnElement[bool]]:
        return [table.c.partner_id == sa.bindparam("partner", type_=sa.String)
                ] if by_partner else []

    queries: list[tuple[str, list[sa.Select[tuple[str]]]]] = [
        (TRANSMISSION_ID, [sa.select(t.c.id).where(t.c.id == text, *of(t))]),
        (DOCUMENT_ID, [sa.select(d.c.transmission_id).where(d.c.id == text, *of(d))]),
        (AS2_MESSAGE_ID, [
            sa.select(a.c.transmission_id).where(a.c.message_id == bare,
                                                 a.c.transmission_id.is_not(None),
                                                 *of(a)).limit(limit),
            sa.select(o.c.transmission_id).where(sa.or_(o.c.remote_id == bare,
                                                        o.c.remote_id == angled),
                                                 o.c.transmission_id.is_not(None),
                                                 *of(o)).limit(limit)]),
        (DOCUMENT_NUMBER, [
            sa.select(d.c.transmission_id)
            .where(sa.func.lower(d.c.business_number) == lower, *of(d))
            .order_by(d.c.created_at.desc()).limit(limit)]),
        (FILE_NAME, [
            sa.select(t.c.id).where(sa.func.lower(t.c.filename) == lower, *of(t))
            .order_by(t.c.received_at.desc()).limit(limit)]),
        (INTERCHANGE_REF, [
            sa.select(i.c.transmission_id).where(i.c.control_ref == text, *of(i))
            .limit(limit),
            sa.select(o.c.transmission_id).where(o.c.control_ref == text,
                                                 o.c.transmission_id.is_not(None),
                                                 *of(o)).limit(limit)]),
    ]
    # One round trip: every lookup a member of one UNION ALL, each bounded by its LIMIT.
    members = [sa.select(sa.literal(kind).label("kind"),
                         q.subquery().c[0].label("transmission_id"))
               for kind, selects in queries for q in selects]
    return sa.union_all(*members)


def partner_on_record(store: Store, partner: str) -> bool:
    """Whether any transmission was received from or sent to ``partner`` (one index seek)."""
    t = s.transmissions
    with store.connect() as conn:
        return conn.execute(sa.select(t.c.id).where(t.c.partner_id == partner).limit(1)
                            ).first() is not None


def _of(table: sa.Table, partner: str | None) -> list[sa.ColumnElement[bool]]:
    return [table.c.partner_id == partner] if partner else []
