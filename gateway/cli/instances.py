"""``edigw instances``: the ``serve`` instances sharing this store, their last heartbeat and
the leases each holds (the work that runs on one instance at a time)."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli.common import CliContext, emit_json, iso, json_option, open_store, table


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also the instances that stopped.")
@json_option("One JSON document on stdout: instances and leases.")
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
                started_at=iso(i.started_at), heartbeat_at=iso(i.heartbeat_at),
                heartbeat_age_s=round((now - i.heartbeat_at).total_seconds(), 1),
                state="alive" if i.alive(now) else "stopped" if i.stopped_at else "dead",
                leases=sorted(held.get(i.id, []))) for i in rows]
    if as_json:
        emit_json(dict(instances=out, leases=[
            dict(name=lease.name, holder=lease.holder, expires_at=iso(lease.expires_at),
                 expired=lease.expires_at <= now) for lease in leases]))
        return
    if not out:
        click.echo("no instance is serving this store")
        return
    started = {i.id: obj.shown(i.started_at) for i in rows}
    click.echo(table(["instance", "host", "pid", "version", "started", "heartbeat", "state",
                      "leases"],
                     [[r["id"], r["host"], str(r["pid"]), r["version"] or "-", started[r["id"]],
                       f"{r['heartbeat_age_s']:.0f} s ago", r["state"],
                       ", ".join(r["leases"]) or "-"] for r in out]))
    orphans = [lease for lease in leases if lease.expires_at <= now]
    if orphans:
        click.echo(f"{len(orphans)} lease(s) expired, to be taken over: "
                   + ", ".join(f"{lease.name} (was {lease.holder})" for lease in orphans))
