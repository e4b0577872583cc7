"""``edigw explain`` and ``edigw purge``: the tracker's commands for support and operators."""

from __future__ import annotations

import json
import sys
import zoneinfo
from collections.abc import Sequence

import click

from gateway.cli.common import CliContext, fail, open_store, parse_when

#: ``edigw explain``'s exit codes (``gateway.tracker.verdicts``), shown in its --help.
EXPLAIN_EXIT_CODES = """\b
Exit codes (for scripts; --json carries "code", "outcome" and "exit_code" too):
  0  found and fine: accepted by the ERP, delivered, published with no
     acknowledgement expected, a repeat, a receipt
  1  found but failed, quarantined or rejected
  2  usage error, or an unknown partner
  3  not found: never received, not sent
  4  found and still in progress or waiting (the outbox, the ERP's
     acknowledgement, the partner's receipt, a retry, an operator)"""


@click.command(epilog=EXPLAIN_EXIT_CODES)
@click.option("--partner", help="Partner id (an unknown one is an error, exit code 2).")
@click.option("--order", "order", metavar="NUMBER", help="Order number (BGM 1004).")
@click.option("--invoice", metavar="NUMBER", help="Invoice number (received, or sent: "
                                                   "was it delivered?).")
@click.option("--despatch", metavar="NUMBER", help="Despatch advice number we sent.")
@click.option("--price-list", "price_list", metavar="NUMBER",
              help="Price list number (received, or sent).")
@click.option("--order-response", "order_response", metavar="ORDER",
              help="The order response we sent for this order number.")
@click.option("--number", metavar="NUMBER", help="A document number of any type.")
@click.option("--outbound", is_flag=True, help="Ask about a document edigw sends (an "
              "invoice or price list to the partner), not one received.")
@click.option("--interchange", metavar="REF", help="Interchange reference (UNB 0020).")
@click.option("--file", "filename", metavar="NAME", help="File name (or a part of it).")
@click.option("--since", help="Received from this date or date-time (tracker's time zone "
                              "unless an offset is given).")
@click.option("--until", help="Received before this date-time, or up to the end of this date.")
@click.option("--json", "as_json", is_flag=True, help="The explanation as JSON.")
@click.pass_obj
def explain(obj: CliContext, partner: str | None, order: str | None, invoice: str | None,
            despatch: str | None, price_list: str | None, order_response: str | None,
            number: str | None, outbound: bool, interchange: str | None,
            filename: str | None, since: str | None, until: str | None,
            as_json: bool) -> None:
    """Where is this order? One verdict in plain words (with its code: never-received,
    failed, duplicate, in-progress, waiting-erp, acknowledged, rejected, quarantined,
    held), the matches it is about, and its evidence.

    For a document edigw sends (an order response, a despatch advice, an invoice or price
    list to the partner): was it delivered? (delivered, sent-awaiting-receipt, retrying,
    in-progress, failed, not-sent). ``--order`` also tells the order response sent."""
    from gateway.config import load_partners
    from gateway.core.zone import shown
    from gateway.store.archive import Archive
    from gateway.tracker.explain import explain as explain_order
    from gateway.tracker.verdicts import USAGE_EXIT, NoSuchPartner

    numbers = [(t, n) for t, n in (("order", order), ("invoice", invoice),
                                    ("despatch-advice", despatch), ("price-list", price_list),
                                    ("order-response", order_response), (None, number)) if n]
    if len(numbers) > 1:
        raise click.UsageError("give one of --order, --invoice, --despatch, --price-list, "
                               "--order-response and --number")
    if not (numbers or interchange or filename or partner):
        raise click.UsageError("say what to look for: --order, --invoice, --despatch, "
                               "--price-list, --order-response, --number, --interchange, "
                               "--file or --partner with dates")
    doc_type, wanted = numbers[0] if numbers else (None, None)
    settings = obj.settings
    zone = zoneinfo.ZoneInfo(settings.tracker.timezone)
    try:
        out = explain_order(open_store(obj), load_partners(settings.partners), settings,
                            partner=partner, number=wanted, doc_type=doc_type,
                            interchange_ref=interchange, filename=filename,
                            since=parse_when(since, zone), until=parse_when(until, zone, end=True),
                            archive=Archive(settings.archive.path, fsync=False),
                            direction="out" if outbound else None)
    except NoSuchPartner as exc:
        fail(str(exc), USAGE_EXIT)
    if as_json:
        click.echo(json.dumps(out.as_dict(), indent=2, default=str))
        sys.exit(out.exit_code)
    click.echo(f"verdict: {out.words} ({out.verdict})")
    click.echo(out.summary)
    if out.hits:
        click.echo(f"\nmatches ({len(out.hits)})")
        for h in out.hits[:10]:
            click.echo(f"  {shown(h.at, zone, seconds=False)}  {h.partner_id or '-'}  "
                       f"{h.doc_type or h.kind}  {h.business_number or h.filename or ''}  "
                       f"{h.status}  [{h.transmission_id}]")
        if len(out.hits) > 10:
            click.echo(f"  and {len(out.hits) - 10} more")
    if out.evidence:
        click.echo("\nevidence")
        width = max(len(f.kind) for f in out.evidence)
        for f in out.evidence:
            at = shown(f.at, zone, seconds=False, abbreviation=False).ljust(16)
            ref = f"  [{f.ref}]" if f.ref else ""
            click.echo(f"  {at}  {f.kind:<{width}}  {f.text}{ref}")
    sys.exit(out.exit_code)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be purged.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document on stdout: retention, totals and each payload.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def purge(obj: CliContext, dry_run: bool, as_json: bool, quiet: bool) -> None:
    """Purge raw payloads older than their partner's retention_days (metadata, documents
    and canonical JSON are kept). On a terminal, a progress bar on stderr counts the
    transmissions and bytes done."""
    from gateway.cli.common import draws_progress, progress
    from gateway.config import load_partners
    from gateway.store.archive import Archive
    from gateway.tracker.retention import Purged
    from gateway.tracker.retention import purge as purge_payloads

    settings = obj.settings
    with progress(draws_progress(as_json=as_json, quiet=quiet)) as bar:
        task = bar.task("purging" if not dry_run else "looking", total=None)
        done = [0, 0]

        def batch(purged: Sequence[Purged]) -> None:
            done[0] += len(purged)
            done[1] += sum(p.size for p in purged if p.deleted)
            bar.advance(task, len(purged))
            bar.describe(task, f"{done[0]} transmission(s), {done[1]} bytes "
                               + ("to free" if dry_run else "freed"))

        result = purge_payloads(open_store(obj), Archive(settings.archive.path,
                                                         fsync=settings.archive.fsync),
                                settings, load_partners(settings.partners), dry_run=dry_run,
                                on_batch=batch)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    if not result.retention:
        click.echo("no retention configured ([tracker.defaults] or a partner's [tracker] "
                   "retention_days): every payload is kept")
        return
    click.echo("retention: " + ", ".join(f"{k or 'others'} {v} day(s)"
                                         for k, v in result.retention.items()))
    verb = "would purge" if dry_run else "purged"
    for p in result.purged:
        kept = (" (file kept: shared with " + p.shared_with + ")") if p.shared_with else ""
        click.echo(f"{verb} {p.transmission_id}  {p.partner_id or '-'}  "
                   f"received {obj.shown(p.received_at)}  {p.size} bytes{kept}")
    click.echo(f"{len(result.purged)} transmission(s) {'to purge' if dry_run else 'purged'}, "
               f"{result.files_deleted} file(s) "
               f"{'to delete' if dry_run else 'deleted'}, {result.bytes_freed} bytes "
               f"{'to free' if dry_run else 'freed'}")
