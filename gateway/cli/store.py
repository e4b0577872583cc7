"""``edigw db upgrade``, ``edigw status`` and ``edigw security``: the store's revision, its
counts by status, and the requests it recorded as refused."""

from __future__ import annotations

import click

from gateway.cli.common import CliContext, emit_json, iso, json_option, open_store, table
from gateway.core.urls import mask_url


@click.group()
def db() -> None:
    """The store."""


@db.command("upgrade")
@json_option("One JSON document on stdout: the revision and the (masked) store URL.")
@click.pass_obj
def db_upgrade(obj: CliContext, as_json: bool) -> None:
    """Apply the store's migrations."""
    from gateway.store.migrate import current

    store = open_store(obj)
    revision = current(store.engine)
    url = mask_url(obj.settings.store.url)
    if as_json:
        emit_json(dict(revision=revision, store=url))
        return
    click.echo(f"store at revision {revision}: {url}")


@click.command()
@json_option("One JSON document on stdout: counts by status, outbox, instances, broker nodes.")
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Counts by status, and the outbox."""
    from gateway.bus.connect import check_nodes
    from gateway.core import clock

    store = open_store(obj)
    counts = dict(sorted(store.counts_by_status().items()))
    outbox = store.outbox_size()
    now = clock.now()
    live = [i for i in store.list_instances() if i.alive(now)]
    nodes = [(url, problem) for url, problem in check_nodes(obj.settings.broker.urls, 3.0)]
    if as_json:
        emit_json(dict(transmissions=counts, outbox=outbox,
                       instances=[dict(id=i.id, host=i.host, pid=i.pid,
                                       heartbeat_at=iso(i.heartbeat_at),
                                       heartbeat_age_s=round(
                                           (now - i.heartbeat_at).total_seconds(), 1))
                                  for i in live],
                       broker=[dict(url=url, reachable=problem is None, problem=problem)
                               for url, problem in nodes]))
        return
    for k, v in counts.items():
        click.echo(f"{k:<12}{v}")
    click.echo(f"{'outbox':<12}{outbox} document(s) not yet confirmed by the broker")
    click.echo(f"{'instances':<12}{len(live)} serving"
               + (": " + ", ".join(f"{i.id} (heartbeat {(now - i.heartbeat_at).total_seconds():.0f} s ago)"
                                  for i in live) if live else "")
               + " (edigw instances shows their leases)")
    for url, problem in nodes:
        click.echo(f"{'broker':<12}{url} "
                   + ("reachable" if problem is None else f"NOT reachable ({problem})"))


@click.command()
@click.option("--limit", default=50, show_default=True)
@json_option("One JSON document on stdout: the events, newest first.")
@click.pass_obj
def security(obj: CliContext, limit: int, as_json: bool) -> None:
    """Refused requests: forged webhook signatures, AS2 messages that did not verify, unknown
    AS2 senders (newest first)."""
    from gateway.store.security import SecurityLog

    events = SecurityLog(open_store(obj)).recent(limit)
    if as_json:
        emit_json([dict(id=e.id, at=iso(e.at), channel=e.channel, kind=e.kind,
                        remote=e.remote, partner=e.partner_id, detail=e.detail)
                   for e in events])
        return
    if not events:
        click.echo("no security events")
        return
    click.echo(table(["at", "channel", "kind", "remote", "partner", "detail"],
                     [[obj.shown(e.at, seconds=True), e.channel, e.kind, e.remote or "-",
                       e.partner_id or "-", (e.detail or "-")[:80]] for e in events]))
