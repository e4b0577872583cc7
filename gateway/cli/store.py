"""``edigw db upgrade``, ``edigw status`` and ``edigw security``: the store's revision, its
counts by status, and the requests it recorded as refused."""

from __future__ import annotations

import json

import click

from gateway.cli.common import CliContext, open_store, table
from gateway.core.urls import mask_url


@click.group()
def db() -> None:
    """The store."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: CliContext) -> None:
    """Apply the store's migrations."""
    from gateway.store.migrate import current

    store = open_store(obj)
    click.echo(f"store at revision {current(store.engine)}: {mask_url(obj.settings.store.url)}")


@click.command()
@click.pass_obj
def status(obj: CliContext) -> None:
    """Counts by status, and the outbox."""
    store = open_store(obj)
    for k, v in sorted(store.counts_by_status().items()):
        click.echo(f"{k:<12}{v}")
    click.echo(f"{'outbox':<12}{store.outbox_size()} document(s) not yet confirmed by the broker")
    from gateway.core import clock

    now = clock.now()
    live = [i for i in store.list_instances() if i.alive(now)]
    click.echo(f"{'instances':<12}{len(live)} serving"
               + (": " + ", ".join(f"{i.id} (heartbeat {(now - i.heartbeat_at).total_seconds():.0f} s ago)"
                                  for i in live) if live else "")
               + " (edigw instances shows their leases)")
    from gateway.bus.connect import describe_nodes

    for line in describe_nodes(obj.settings.broker.urls, timeout=3.0):
        click.echo(f"{'broker':<12}{line}")


@click.command()
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def security(obj: CliContext, limit: int, as_json: bool) -> None:
    """Refused requests: forged webhook signatures, AS2 messages that did not verify, unknown
    AS2 senders (newest first)."""
    from gateway.store.security import SecurityLog

    events = SecurityLog(open_store(obj)).recent(limit)
    if as_json:
        click.echo(json.dumps([dict(id=e.id, at=e.at.isoformat(), channel=e.channel,
                                    kind=e.kind, remote=e.remote, partner=e.partner_id,
                                    detail=e.detail) for e in events], indent=2))
        return
    if not events:
        click.echo("no security events")
        return
    click.echo(table(["at", "channel", "kind", "remote", "partner", "detail"],
                     [[e.at.isoformat()[:19], e.channel, e.kind, e.remote or "-",
                       e.partner_id or "-", (e.detail or "-")[:80]] for e in events]))
