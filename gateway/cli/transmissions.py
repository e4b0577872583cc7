"""``edigw log``, ``edigw show`` and ``edigw find``: the transmission log, one transmission
with its timeline and documents, and where a business number went."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CliContext, fail, open_store, parse_when, table
from gateway.core.status import TRANSMISSION_STATUSES, TransmissionStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from gateway.store.db import Store
    from gateway.store.read.transmission import TransmissionHead
    from gateway.store.records import DocumentRow, OutboundRow, TransmissionRow


def paged(what: str, every: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--limit``, ``--offset`` and ``--all`` (as ``everything``) of a paged listing of
    ``what`` (Rows, Documents)."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed((
                click.option("--limit", default=50, show_default=True,
                             type=click.IntRange(1, 100_000), help=f"{what} shown."),
                click.option("--offset", default=0, show_default=True,
                             type=click.IntRange(0),
                             help=f"{what} skipped first (the next page: --offset 50)."),
                click.option("--all", "everything", is_flag=True, help=every))):
            command = option(command)
        return command
    return decorate


@click.command("log")
@click.option("--partner", help="Only this partner's transmissions ('-': of no partner).")
@click.option("--status", help="RECEIVED, PROCESSED, PUBLISHED, PARTIAL, HELD, FAILED, "
                               "QUARANTINED, DUPLICATE; outbound: RENDERED, SENT, DELIVERED.")
@click.option("--direction", type=click.Choice(["in", "out"]),
              help="Only what partners sent (in) or what edigw sent them (out).")
@click.option("--since", help="From this date or date-time ([tracker] timezone unless an "
              "offset is given).")
@click.option("--until", help="Before this date-time, or up to the end of this date.")
@click.option("--search", "-q", "text",
              help="A transmission id, file name, partner or business number (exact).")
@paged("Rows", "Every matching row (read a batch at a time), not one page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print CSV (the console's export columns).")
@click.pass_obj
def log_cmd(obj: CliContext, partner: str | None, status: str | None, direction: str | None,
            since: str | None, until: str | None, text: str | None, limit: int, offset: int,
            everything: bool, as_json: bool, as_csv: bool) -> None:
    """The transmission log, newest first, a page at a time (the footer says how many match):
    order numbers and what the ERP said of each, times in [tracker] timezone."""
    from gateway.core.zone import shown
    from gateway.store.read.transmissions import (
        LogQuery,
        RowFacts,
        transmission_count,
        transmission_page,
        transmission_stream,
    )

    if status and status.upper() not in TRANSMISSION_STATUSES:
        raise click.BadParameter(f"{status!r}; one of {', '.join(TRANSMISSION_STATUSES)}",
                                 param_hint="--status")
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    obj.reads_only()
    store = open_store(obj)
    zone = obj.zone
    query = LogQuery(partner=partner, statuses=(status.upper(),) if status else (),
                     since=parse_when(since, zone), until=parse_when(until, zone, end=True),
                     direction=direction,
                     text=text)
    if as_csv:
        from gateway.store.read.log_export import log_csv

        if everything:
            for chunk in log_csv(store, query, zone):
                click.echo(chunk, nl=False)
            return
        page = transmission_page(store, query, limit=limit, offset=offset)
        for chunk in log_csv(store, query, zone, rows=[(r, page.facts_of(r.id))
                                                       for r in page.rows]):
            click.echo(chunk, nl=False)
        return
    rows: Any
    if everything:
        total = transmission_count(store, query)
        rows = transmission_stream(store, query)
    else:
        page = transmission_page(store, query, limit=limit, offset=offset)
        total = page.total
        rows = [(r, page.facts_of(r.id)) for r in page.rows]

    def as_dict(r: TransmissionRow, facts: RowFacts) -> dict[str, Any]:
        return dict(r.as_dict(), numbers=facts.numbers, erp=facts.erp_state)

    if as_json:
        click.echo("[", nl=False)
        for n, (r, facts) in enumerate(rows):
            click.echo(("," if n else "") + "\n" + json.dumps(as_dict(r, facts), default=str),
                       nl=False)
        click.echo("\n]")
        return
    headers = ["time", "id", "dir", "partner", "channel", "file", "order no.", "format", "docs",
               "status", "erp"]
    count = 0
    batch: list[list[str]] = []

    def flush(first: bool) -> None:
        if batch:
            lines = table(headers, batch).splitlines()
            click.echo("\n".join(lines if first else lines[1:]))
            batch.clear()

    for r, facts in rows:
        batch.append([shown(r.received_at, zone), r.id, r.direction, r.partner_id or "-",
                      r.channel, (r.filename or "-")[:40], facts.number or "-",
                      r.format or "-", str(r.document_count), status_label(r), facts.erp_state])
        count += 1
        if len(batch) == 1000:
            flush(count == 1000)
    flush(count <= 1000)
    click.echo(footer(count, total, 0 if everything else offset))


def footer(count: int, total: int, offset: int) -> str:
    """The last line of ``edigw log``: which rows of how many, and how to see the others."""
    if not total:
        return "no transmission matches"
    if count >= total:
        return f"{total:,} of {total:,}"
    shown = f"{offset + 1:,}–{offset + count:,}" if offset else f"{count:,}"
    return f"{shown} of {total:,} — use --limit/--offset or --all"


def status_label(row: TransmissionRow) -> str:
    """A transmission's status with its stage; PROCESSED says its documents wait in the
    outbox, not yet confirmed by the broker."""
    if row.stage:
        return f"{row.status} ({row.stage})"
    if row.status == TransmissionStatus.PROCESSED and not row.document_count:
        return "PROCESSED (receipt)"  # a partner's CONTRL/APERAK for what we sent
    if row.status == TransmissionStatus.PROCESSED:
        return "PROCESSED (in outbox)"
    if row.status == TransmissionStatus.RENDERED:
        return "RENDERED (to deliver)"
    if row.status == TransmissionStatus.SENT:
        return "SENT (awaiting receipt)"
    return row.status


@click.command()
@click.argument("transmission_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--payloads", is_flag=True, help="Include the canonical documents.")
@paged("Documents", "Every document (read a page at a time), not one page.")
@click.pass_obj
def show(obj: CliContext, transmission_id: str, as_json: bool, payloads: bool, limit: int,
         offset: int, everything: bool) -> None:
    """One transmission: its timeline and its documents, a page at a time (a file of
    20,000 orders is not read whole unless --all)."""
    from gateway.store.read.transmission import transmission_head

    obj.reads_only()
    store = open_store(obj)
    head = transmission_head(store, transmission_id)
    if head is None:
        fail(f"no transmission {transmission_id}", 1)
    total = head.counts.total
    pages = _document_pages(store, head.transmission.id, limit, offset, everything)
    if as_json:
        from gateway.cli.common import emit_json

        emit_json(_as_json(store, head, [d for page in pages for d in page], payloads,
                           0 if everything else offset))
        return
    from gateway.core.zone import local

    _echo_header(obj, head.transmission)
    click.echo("\ntimeline" + f" ({obj.zone.key})")
    for e in head.events:
        at = local(e["at"], obj.zone).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        click.echo(f"  {at}  {e['event']:<20} {e['detail'] or ''}")
    if head.more_events:
        click.echo(f"  … and {head.more_events:,} more events")
    click.echo(f"\ndocuments ({total:,})")
    shown = 0
    for page in pages:
        _echo_documents(obj, store, page, payloads, header=not shown)
        shown += len(page)
    if shown < total:
        first = 1 if everything else offset + 1
        click.echo(f"documents {first:,}–{first + shown - 1:,} of {total:,} — use "
                   "--limit/--offset or --all" if shown else
                   f"no document at offset {offset:,} of {total:,}")
    _echo_interchanges(head.interchanges)
    _echo_transport(head.transport)
    if head.outbound:
        _echo_outbound(obj, head.outbound)


def _document_pages(store: Store, tid: str, limit: int, offset: int, everything: bool
                    ) -> Iterator[list[DocumentRow]]:
    """The documents ``show`` prints: one page, or every page (``everything``), lazily."""
    from gateway.store.read.transmission import documents_page

    if not everything:
        yield documents_page(store, tid, limit=limit, offset=offset)
        return
    at = 0
    while True:
        page = documents_page(store, tid, limit=1000, offset=at)
        if page:
            yield page
        if len(page) < 1000:
            return
        at += len(page)


def _echo_outbound(obj: CliContext, rows: list[OutboundRow]) -> None:
    """What was sent to the partner: each payload's delivery and receipt."""
    click.echo(f"\nsent to the partner ({len(rows)})")
    click.echo(table(["kind", "channel", "file", "control ref", "status", "attempts"],
                     [[o.kind, o.channel, o.filename, o.control_ref or "-", o.status,
                       str(o.attempts)] for o in rows]))
    for o in rows:
        for label, value in (
                ("detail", o.detail), ("last error", o.last_error),
                ("next attempt", o.next_attempt_at and obj.shown(o.next_attempt_at,
                                                                 seconds=True)),
                ("sent at", o.sent_at and obj.shown(o.sent_at, seconds=True)),
                ("remote id", o.remote_id), ("receipt", o.receipt),
                ("delivered at", o.delivered_at and obj.shown(o.delivered_at, seconds=True))):
            if value:
                click.echo(f"  {o.id} {label:<13}{value}")


def _as_json(store: Store, head: TransmissionHead, documents: list[DocumentRow],
             payloads: bool, offset: int) -> dict[str, Any]:
    """What ``show`` knows of a transmission, for ``--json`` (times ISO 8601 with their
    offset): its documents from ``offset`` (``documents_total`` says how many in all),
    at most 200 events, interchanges and outbound payloads (``more_*`` how many more)."""
    from gateway.cli.common import iso

    out = head.transmission.as_dict()
    out["events"] = [dict(e, at=iso(e["at"])) for e in head.events]
    out["documents"] = [d.as_dict() for d in documents]
    out["documents_total"] = head.counts.total
    out["documents_offset"] = offset
    out["interchanges"] = head.interchanges
    out["outbound"] = [o.as_dict() for o in head.outbound]
    out.update(more_events=head.more_events, more_interchanges=head.more_interchanges,
               more_outbound=head.more_outbound)
    out.update(head.transport)
    if payloads:
        for d, row in zip(out["documents"], documents, strict=True):
            d["payload"] = store.document_payload(row.id)
    return out


def _echo_header(obj: CliContext, t: TransmissionRow) -> None:
    click.echo(f"transmission {t.id}  {t.status}" + (f" at {t.stage}" if t.stage else "")
               + ("  (outbound: a document edigw sends)" if t.direction == "out" else ""))
    for label, value in (("partner", t.partner_id), ("channel", t.channel), ("file", t.filename),
                         ("from", t.channel_ref), ("size", f"{t.size} bytes"), ("sha256", t.sha256),
                         ("format", " ".join(x for x in (t.format, t.standard) if x)),
                         ("received", obj.shown(t.received_at, seconds=True)),
                         ("reason", t.reason),
                         ("duplicate of", t.duplicate_of), ("attempt at", t.reprocess_of),
                         ("asked by", t.requested_by and f"{t.requested_by}: {t.request_reason}"),
                         ("purged", obj.shown(t.purged_at) if t.purged_at else None)):
        if value:
            click.echo(f"  {label:<13}{value}")


def _erp_word(d: DocumentRow) -> str:
    """What the ERP said of one document, in ``log``'s words (``erp_word``): acknowledged,
    rejected, waiting (published, no word yet), not applicable (not published)."""
    from gateway.store.read.transmissions import erp_word

    return erp_word(d.status, d.erp_status)


def _echo_documents(obj: CliContext, store: Store, docs: list[DocumentRow],
                    payloads: bool, *, header: bool = True) -> None:
    if not docs:
        return
    lines = table(["id", "type", "number", "interchange", "message", "status", "erp",
                   "message_id"],
                  [[d.id, d.doc_type, d.business_number or "-", d.interchange_ref or "-",
                    d.message_ref or "-", d.status, _erp_word(d), d.message_id]
                   for d in docs]).splitlines()
    click.echo("\n".join(lines if header else lines[1:]))
    for d in docs:
        if d.conflict_of:
            click.echo(f"  {d.id} {d.status}: the number of document {d.conflict_of} with "
                       f"other content (edigw conflicts show {d.id})")
        if d.reason:
            click.echo(f"  {d.id} {d.status}: {d.reason}")
        if d.erp_status:
            when = f" at {obj.shown(d.erp_at)}" if d.erp_at else ""
            click.echo(f"  {d.id} ERP {d.erp_status}{when}"
                       + (f": {d.erp_reason}" if d.erp_reason else ""))
    if payloads:
        for d in docs:
            click.echo(json.dumps(store.document_payload(d.id), indent=2))


def _echo_interchanges(interchanges: list[dict[str, Any]]) -> None:
    if not interchanges:
        return
    click.echo(f"\ninterchanges ({len(interchanges)})")
    click.echo(table(["reference", "sender", "recipient", "prepared", "messages", "status"],
                     [[i["control_ref"], i["sender_id"] or "-", i["recipient_id"] or "-",
                       i["prepared"] or "-", str(i["message_count"]), i["status"]]
                      for i in interchanges]))
    for i in interchanges:
        if i["reason"]:
            click.echo(f"  {i['control_ref']}: {i['reason']}")


def _echo_transport(transport: dict[str, Any]) -> None:
    """What each channel recorded of the transmission, as the channel shows it."""
    from gateway.channels.registry import CHANNELS

    for kind in CHANNELS:
        if kind.shown is None or kind.name not in transport:
            continue
        title, fields = kind.shown(transport[kind.name])
        click.echo(f"\n{title}")
        for label, value in fields:
            if value:
                click.echo(f"  {label:<13}{value}")


@click.command()
@click.argument("text", metavar="TEXT")
@click.option("--partner", help="Only this partner's (an unknown one is an error, exit 2).")
@click.option("--json", "as_json", is_flag=True, help="What matched, the matches and the "
              "verdict, as /api/search?q= answers.")
@click.pass_obj
def find(obj: CliContext, text: str, partner: str | None, as_json: bool) -> None:
    """Where is TEXT? A document number, file name, interchange reference, transmission or
    document id, or AS2 Message-ID: what it matched, every match, and the verdict about it
    (as the console's search box). Exit 1 when nothing matches, 2 for an unknown partner."""
    import sys

    from gateway.config import load_partners
    from gateway.core.zone import shown
    from gateway.store.archive import Archive
    from gateway.tracker.search import answer
    from gateway.tracker.verdicts import USAGE_EXIT, NoSuchPartner

    obj.reads_only()
    settings = obj.settings
    try:
        found = answer(open_store(obj), load_partners(settings.partners), settings, text,
                       partner=partner, archive=Archive(settings.archive.path, fsync=False))
    except NoSuchPartner as exc:
        fail(str(exc), USAGE_EXIT)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2, default=str))
        sys.exit(0 if found.kind else 1)
    if not found.kind:
        fail(f"nothing matches {text!r}" + (f" for {partner}" if partner else "")
             + f": {found.explanation.summary}", 1)
    out, zone = found.explanation, obj.zone
    also = "".join(f", also a {k.replace('-', ' ')}" for k in
                   (r.kind for r in found.matched[1:]))
    click.echo(f"{text} is a {found.kind_words}{also}")
    click.echo(table(["received", "partner", "type", "number", "file", "status",
                      "transmission"],
                     [[shown(h.at, zone), h.partner_id or "-", h.doc_type or h.kind,
                       h.business_number or "-", (h.filename or "-")[:40], h.status,
                       h.transmission_id] for h in out.hits]))
    click.echo(f"\nverdict: {out.words} ({out.verdict})\n{out.summary}")
