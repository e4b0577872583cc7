"""``edigw alerts``: the tracker's alerts, listed, acknowledged, resolved, or checked for
now."""

from __future__ import annotations

import json
from typing import Literal

import click

from gateway.cli.common import CliContext, fail, open_store, table
from gateway.core.status import AlertState


@click.group(invoke_without_command=True)
@click.option("--status", "status", type=click.Choice(["open", "acknowledged", "resolved", "all"]),
              default=None, help="Default: open and acknowledged.")
@click.option("--partner", default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0),
              help="Alerts skipped first (the next page).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts(ctx: click.Context, status: str | None, partner: str | None, kind: str | None,
           limit: int, offset: int, as_json: bool) -> None:
    """The tracker's alerts (open and acknowledged unless --status says otherwise); see also
    'alerts ack', 'alerts resolve' and 'alerts check'."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.tracker.alerts import AlertBook

    wanted = (None if status == "all" else [status] if status
              else [AlertState.OPEN, AlertState.ACKNOWLEDGED])
    book = AlertBook(open_store(ctx.obj))
    found = book.list(wanted, partner=partner, kind=kind, limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps([a.as_dict() for a in found], indent=2, default=str))
        return
    if not found:
        click.echo("no alerts")
        return
    click.echo(table(["id", "status", "kind", "partner", "opened", "count", "summary"],
                     [[str(a.id), a.status, a.kind, a.partner_id or "-",
                       ctx.obj.shown(a.opened_at),
                       f"{a.detail['files']} files" if a.detail.get("files")
                       else f"{a.occurrences}x", a.summary[:90]] for a in found]))
    total = book.count(wanted, partner=partner, kind=kind)
    if offset or len(found) < total:
        click.echo(f"{offset + 1:,}–{offset + len(found):,} of {total:,} — use "
                   "--limit/--offset")


def _alert_action(obj: CliContext, action: Literal["acknowledge", "resolve"],
                  alert_ids: tuple[int, ...], note: str | None, by: str | None) -> None:
    """Acknowledge or resolve ALERT_IDS as BY (default: the user running the command); exit
    1 when any could not be (the others are done)."""
    import getpass

    from gateway.tracker.alerts import AlertBook

    result = AlertBook(open_store(obj)).act_on_many(alert_ids, by or getpass.getuser(), note,
                                                    action=action)
    for _before, alert in result.done:
        click.echo(f"alert {alert.id} {alert.status}: {alert.summary}")
    if result.refused:
        fail("; ".join(why for _id, why in result.refused), 1)


@alerts.command("ack")
@click.argument("alert_ids", type=int, nargs=-1, required=True)
@click.option("--note", default=None, help="What is being done about it.")
@click.option("--by", default=None, help="Who (default: the user running the command).")
@click.pass_obj
def alerts_ack(obj: CliContext, alert_ids: tuple[int, ...], note: str | None,
               by: str | None) -> None:
    """Acknowledge open alerts: someone is on it (it is not announced again)."""
    _alert_action(obj, "acknowledge", alert_ids, note, by)


@alerts.command("resolve")
@click.argument("alert_ids", type=int, nargs=-1, required=True)
@click.option("--note", default=None)
@click.option("--by", default=None, help="Who (default: the user running the command).")
@click.pass_obj
def alerts_resolve(obj: CliContext, alert_ids: tuple[int, ...], note: str | None,
                   by: str | None) -> None:
    """Resolve alerts by hand (the tracker resolves by itself what clears up)."""
    _alert_action(obj, "resolve", alert_ids, note, by)


@alerts.command("check")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document on stdout: the alerts opened, still open, resolved.")
@click.pass_obj
def alerts_check(obj: CliContext, as_json: bool) -> None:
    """Run the tracker's rules once now (what 'edigw serve' does every [tracker] every s)
    and print what opened and what resolved."""
    from gateway.config import load_partners
    from gateway.tracker.engine import Tracker

    store = open_store(obj)
    as2 = obj.settings.as2
    result = Tracker(obj.settings.tracker, load_partners(obj.settings.partners), store,
                     certificate_warning_days=as2.certificate_warning_days if as2 else 30,
                     stalled_after=obj.settings.processing.stalled_after).check()
    if as_json:
        from gateway.cli.common import emit_json

        emit_json({label: [a.as_dict() for a in items] for label, items in (
            ("opened", result.opened), ("refreshed", result.refreshed),
            ("resolved", result.resolved))})
        return
    for label, items in (("opened", result.opened), ("resolved", result.resolved)):
        for a in items:
            click.echo(f"{label:<9}#{a.id} {a.kind} {a.partner_id or '-'}: {a.summary}")
    click.echo(f"{len(result.opened)} opened, {len(result.refreshed)} still open, "
               f"{len(result.resolved)} resolved")
