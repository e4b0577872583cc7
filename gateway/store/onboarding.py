"""What the go-live checklist and the release of held files ask the store
(``gateway.tracker.onboarding`` holds the rules).

A transmission "in test" is one the pipeline processed while its partner was in test: its
timeline holds the ``test`` event (``core.lifecycle.TEST_EVENT``). A held transmission is
one quarantined because its partner was suspended (``core.lifecycle.SUSPENDED_REASON``)
and not replayed since.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from gateway.core.lifecycle import STAGE, SUSPENDED_REASON, TEST_EVENT
from gateway.core.status import DocumentStatus as D
from gateway.core.status import TransmissionStatus as T
from gateway.store import schema as s
from gateway.store.db import Store

#: A document mapped without error (queued, published, a repeat of one that was).
MAPPED = (D.PENDING, D.PUBLISHED, D.DUPLICATE, D.CONFLICT)


@dataclass(frozen=True, slots=True)
class TestCounts:
    """A partner's documents of one type received while it was in test."""

    doc_type: str
    mapped: int  # mapped without error
    failed: int  # failed or unsupported


def _in_test(conn: sa.Connection, partner_id: str) -> list[str]:
    """The partner's transmissions received while it was in test. Read in two seeks that
    stay small at any volume: the ``test`` events (a partial index of a few rows), then
    those of them that are the partner's (by primary key) — not every transmission of the
    partner probed for a ``test`` event, which a planner without statistics would choose."""
    t, e = s.transmissions, s.transmission_events
    # A literal, not a bound value: SQLite uses a partial index only for the very term.
    tested = list(conn.execute(sa.select(e.c.transmission_id).distinct()
                               .where(e.c.event == sa.literal_column(f"'{TEST_EVENT}'")))
                  .scalars())
    if not tested:
        return []
    return list(conn.execute(sa.select(t.c.id).where(t.c.id.in_(tested))
                             .where(t.c.partner_id == partner_id)).scalars())


def test_documents(store: Store, partner_id: str) -> dict[str, TestCounts]:
    """Per document type, the partner's documents received in test: mapped, failed."""
    d = s.documents
    mapped = sa.func.sum(sa.case((d.c.status.in_(MAPPED), 1), else_=0))
    failed = sa.func.sum(sa.case((d.c.status.in_((D.FAILED, D.UNSUPPORTED)), 1), else_=0))
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.doc_type, mapped, failed)
                            .where(d.c.transmission_id.in_(_in_test(conn, partner_id)))
                            .group_by(d.c.doc_type)).all()
    return {r[0]: TestCounts(r[0], int(r[1] or 0), int(r[2] or 0)) for r in rows}


def test_replies(store: Store, partner_id: str, kind: str) -> dict[str, int]:
    """The replies of ``kind`` (``contrl``) made for the partner's test transmissions, by
    status (PENDING, SENT, DELIVERED, FAILED)."""
    o = s.outbound
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(o.c.status, sa.func.count())
                            .where(o.c.partner_id == partner_id).where(o.c.kind == kind)
                            .where(o.c.transmission_id.in_(_in_test(conn, partner_id)))
                            .group_by(o.c.status)).all()
    return {str(status): int(n) for status, n in rows}


def test_mdns(store: Store, partner_id: str) -> dict[str, int]:
    """The AS2 MDNs of the partner's test transmissions, by state (none, sent, pending,
    failed)."""
    a = s.as2_messages
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.mdn_state, sa.func.count())
                            .where(a.c.partner_id == partner_id)
                            .where(a.c.transmission_id.in_(_in_test(conn, partner_id)))
                            .group_by(a.c.mdn_state)).all()
    return {str(state): int(n) for state, n in rows}


def held_transmissions(store: Store, partner_id: str, limit: int = 10_000) -> list[str]:
    """The partner's transmissions held while it was suspended and not replayed since,
    oldest first."""
    t = s.transmissions
    replay = t.alias("replay")
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.id).where(t.c.partner_id == partner_id)
            .where(t.c.status == T.QUARANTINED).where(t.c.stage == STAGE)
            .where(t.c.reason == SUSPENDED_REASON)
            .where(~sa.exists().where(replay.c.reprocess_of == t.c.id))
            .order_by(t.c.received_at, t.c.id).limit(limit)).all()
    return [r[0] for r in rows]
