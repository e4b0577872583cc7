"""``edigw instances``: the ``serve`` instances sharing this store, their last heartbeat and
the leases each holds (the work that runs on one instance at a time)."""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.cli.common import CliContext, open_store, table


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also the instances that stopped.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def instances(obj: CliContext, show_all: bool, as_json: bool) -> None:
    """The instances serving this store: host, PID, version, last heartbeat, alive or dead,
    and the leases each holds (an SFTP poller, a mailbox, the tracker …)."""
    from gateway.core import clock

    store = open_store(obj)
    now = clock.now()
    rows = store.list_instances(stopped=show_all)
    leases = store.list_leases()
    held: dict[str, list[str]] = {}
    for lease in leases:
        if lease.expires_at > now:
            held.setdefault(lease.holder, []).append(lease.name)
    out: list[dict[str, Any]] = [dict(id=i.id, host=i.host, pid=i.pid, version=i.version,
                started_at=i.started_at.isoformat(), heartbeat_at=i.heartbeat_at.isoformat(),
                heartbeat_age_s=round((now - i.heartbeat_at).total_seconds(), 1),
                state="alive" if i.alive(now) else "stopped" if i.stopped_at else "dead",
                leases=sorted(held.get(i.id, []))) for i in rows]
    if as_json:
        click.echo(json.dumps(dict(instances=out, leases=[
            dict(name=lease.name, holder=lease.holder, expires_at=lease.expires_at.isoformat(),
                 expired=lease.expires_at <= now) for lease in leases]), indent=2))
        return
    if not out:
        click.echo("no instance is serving this store")
        return
    click.echo(table(["instance", "host", "pid", "version", "heartbeat", "state", "leases"],
                     [[r["id"], r["host"], str(r["pid"]), r["version"] or "-",
                       f"{r['heartbeat_age_s']:.0f} s ago", r["state"],
                       ", ".join(r["leases"]) or "-"] for r in out]))
    orphans = [lease for lease in leases if lease.expires_at <= now]
    if orphans:
        click.echo(f"{len(orphans)} lease(s) expired, to be taken over: "
                   + ", ".join(f"{lease.name} (was {lease.holder})" for lease in orphans))
