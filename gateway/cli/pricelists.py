"""``edigw price-lists``: per price list and partner, the version sent, the version held
(its copy delivered) and when, and the copies that failed."""

from __future__ import annotations

import datetime as dt

import click

from gateway.cli.common import CliContext, emit_json, json_option, open_store, table


@click.command("price-lists")
@click.option("--list", "list_id", default=None, metavar="NAME", help="Only this price list.")
@json_option("One JSON document on stdout: each price list and partner's standing.")
@click.pass_obj
def price_lists(obj: CliContext, list_id: str | None, as_json: bool) -> None:
    """Which partner holds which version of each price list, and which deliveries failed."""
    from gateway.channels.pricelists import price_list_standings
    from gateway.config import load_partners

    store = open_store(obj)
    try:
        found = price_list_standings(store, load_partners(obj.settings.partners), list_id)
    finally:
        store.close()
    if as_json:
        emit_json([s.as_dict() for s in found])
        return
    if not found:
        click.echo("no price list subscribed to or sent" + (f" ({list_id})" if list_id else ""))
        return

    def when(value: object) -> str:
        return obj.shown(value) if isinstance(value, dt.datetime) else "-"

    rows = []
    for s in found:
        h = s.holding
        state = ("subscribed" if s.subscribed else "unsubscribed") + (
            "" if s.enabled else ", disabled")
        rows.append([
            s.list_id, s.partner_id, s.mode or "-", state,
            (h.sent_number or "-") if h and h.sent_transmission else "-",
            when(h.sent_at) if h and h.sent_transmission else "-",
            (h.held_number or "-") if h and h.held_transmission else "-",
            when(h.held_at) if h and h.held_transmission else "-",
            str(len(s.failures)) if s.failures else "-"])
    click.echo(table(["list", "partner", "mode", "profile", "sent", "sent at", "held",
                      "held since", "failed"], rows))
    failures = [(s, f) for s in found for f in s.failures]
    if failures:
        click.echo("\nfailed deliveries:")
        click.echo(table(["list", "partner", "when", "transmission", "stage", "reason"],
                         [[s.list_id, s.partner_id, when(f.updated_at), f.transmission_id,
                           f.stage or "-", (f.reason or "")[:80]] for s, f in failures]))
