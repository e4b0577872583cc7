"""The log's search by file name and status filter (indexes), and failure and quarantine
alerts folded.

Until now the tracker opened one alert per failed or quarantined file (key
``failure:<transmission id>``, ``quarantine:<transmission id>``); it now keeps one per
unknown sender (``quarantine:sender:<sender key>``) and one per partner and stage
(``failure:<partner>:<stage>``). The per-file alerts still open are resolved here, by
``tracker``, with a note saying why, and without an ``edi.events`` message each (287 of them
for one sender would flood the mailer and the bus); the tracker's next check opens the
grouped alerts for the files still failed or quarantined.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NOTE = "folded into one alert per unknown sender or per partner and stage (migration 0013)"


def upgrade() -> None:
    op.create_index("ix_transmissions_filename", "transmissions", ["filename"])
    op.create_index("ix_transmissions_status_received", "transmissions",
                    ["status", "received_at"])
    alerts = sa.table("alerts", sa.column("id", sa.Integer), sa.column("kind", sa.String),
                      sa.column("key", sa.String), sa.column("status", sa.String),
                      sa.column("resolved_at", sa.DateTime(timezone=True)),
                      sa.column("resolved_by", sa.String), sa.column("note", sa.Text))
    conn = op.get_bind()
    rows = conn.execute(sa.select(alerts.c.id, alerts.c.key).where(
        alerts.c.kind.in_(("failure", "quarantine")),
        alerts.c.status.in_(("open", "acknowledged")))).all()
    # A per-file key is "<kind>:<id>"; the per-partner ones ("quarantine:draft:<p>") stay.
    per_file = [r.id for r in rows if r.key.count(":") == 1]
    now = dt.datetime.now(dt.UTC)
    for start in range(0, len(per_file), 500):
        conn.execute(alerts.update().where(alerts.c.id.in_(per_file[start:start + 500]))
                     .values(status="resolved", resolved_at=now, resolved_by="tracker",
                             note=NOTE))


def downgrade() -> None:
    op.drop_index("ix_transmissions_status_received", table_name="transmissions")
    op.drop_index("ix_transmissions_filename", table_name="transmissions")
