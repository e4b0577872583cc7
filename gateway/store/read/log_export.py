"""The transmission log as CSV, for the API (``GET /api/transmissions.csv``), ``edigw log
--csv`` and the console's export link: every row the filters match, streamed a batch at a time
(``transmission_stream``), never capped and never held whole in memory."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from zoneinfo import ZoneInfo

from gateway.core.scope import EVERYTHING, Scope
from gateway.core.zone import local
from gateway.store.db import Store
from gateway.store.read.transmissions import LogQuery, RowFacts, transmission_stream
from gateway.store.records import TransmissionRow

COLUMNS = ("received_at", "id", "direction", "channel", "partner_id", "filename", "format",
           "status", "stage", "documents", "order_numbers", "erp", "reason")
#: Rows written to the response at once.
_BATCH = 500


def log_csv(store: Store, query: LogQuery, zone: ZoneInfo, scope: Scope = EVERYTHING, *,
            rows: Iterable[tuple[TransmissionRow, RowFacts]] | None = None) -> Iterator[str]:
    """The header, then the log's matching rows newest first (or ``rows``, one page read
    already); times in ISO 8601 in ``zone`` (with its offset, so a spreadsheet and a script
    read the same instant), every business number of a row separated by spaces."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    n = 0
    if rows is None:
        rows = transmission_stream(store, query, scope=scope, batch=1000)
    for row, facts in rows:
        writer.writerow([
            local(row.received_at, zone).isoformat(timespec="seconds"), row.id, row.direction,
            row.channel, row.partner_id or "", row.filename or "", row.format or "",
            row.status, row.stage or "", row.document_count, " ".join(facts.numbers),
            facts.erp_state, _cell(row.reason)])
        n += 1
        if n % _BATCH == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _cell(text: str | None) -> str:
    """A reason on one line; a leading = + - @ is quoted so a spreadsheet shows it, not
    runs it (CSV injection, OWASP)."""
    flat = " ".join((text or "").split())
    return "'" + flat if flat[:1] in ("=", "+", "-", "@") else flat
