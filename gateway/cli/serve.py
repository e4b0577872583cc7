"""``edigw serve`` and ``edigw declare``: run the gateway, and set up its broker topology."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CliContext, emit_json, json_option, open_gateway, setup_logs

if TYPE_CHECKING:
    from gateway.app import Gateway


@click.command()
@click.pass_obj
def serve(obj: CliContext) -> None:
    """Watch the inbox folders, process what arrives and publish to RabbitMQ."""
    from gateway.store.lock import InstanceLock

    setup_logs(obj.settings)
    # One gateway per SQLite store: a second one would process every file twice.
    lock = InstanceLock.for_store(obj.settings.store.url)
    if lock is not None:
        lock.acquire()  # InstanceLocked names the first gateway; exit status 1
    gw = open_gateway(obj)
    _log_disabled(obj, gw)
    for inbox in obj.settings.inbox:
        inbox.path.mkdir(parents=True, exist_ok=True)
    click.echo(f"edigw serving; drop files into: {', '.join(str(i.path) for i in obj.settings.inbox)}",
               err=True)
    problem = gw.broker_problem()
    if problem:
        click.echo(f"edigw: {problem}\n"
                   "       documents are kept in the outbox and published once it is reachable "
                   "(set EDIGW_BROKER_URL or [broker] url).", err=True)
    try:
        asyncio.run(gw.serve())
    finally:
        if lock is not None:
            lock.release()


def _log_disabled(obj: CliContext, gw: Gateway) -> None:
    """One warning per mapping or partner that is not in use because its file (or a
    mapping its profile names) did not load; the rest of the gateway runs."""
    import structlog

    from gateway.channels.checks import disabled

    log = structlog.get_logger("edigw.config")
    outbound = gw.intake.mappings if gw.intake is not None else None
    for off in disabled(gw.partners, gw.mappings, outbound):
        log.warning(f"{off.kind.replace(' ', '_')}_disabled", name=off.name, file=off.file, reason=off.reason,
                    hint="edigw check-config lists every problem; profiles are read again "
                         "when they change, mappings when serve starts")


@click.command()
@json_option("One JSON document on stdout: the exchanges and queues declared.")
@click.pass_obj
def declare(obj: CliContext, as_json: bool) -> None:
    """Declare the exchanges and queues on the broker (also done by serve at each connection)."""
    from gateway.app import bus_settings
    from gateway.bus import declare_topology

    settings = bus_settings(obj.settings)
    declare_topology(settings)
    from gateway.bus.topology import test_binding

    names = [name for name, _ in settings.queues] + [q for q, _ in test_binding(settings)]
    declared: dict[str, Any] = dict(exchange=settings.exchange, queue_type=settings.queue_type,
                                    queues=names, broker=str(settings.safe_urls), tracker=None)
    if not as_json:
        click.echo(f"declared exchange {settings.exchange} and {settings.queue_type} queues "
                   + ", ".join(names) + f" on {settings.safe_urls}")
    t = obj.settings.tracker
    if t.enabled:
        from gateway.bus.acks import declare_acks
        from gateway.bus.connect import connect_any
        from gateway.bus.events import declare_events

        connection, _node = connect_any(settings.urls)
        try:
            channel = connection.channel()
            declare_acks(channel, t, settings.queue_type)
            declare_events(channel, t.events_exchange)
        finally:
            connection.close()
        declared["tracker"] = dict(acks_exchange=t.acks_exchange, acks_queue=t.acks_queue,
                                   events_exchange=t.events_exchange)
        if not as_json:
            click.echo(f"declared exchange {t.acks_exchange} with queue {t.acks_queue}, and "
                       f"exchange {t.events_exchange}")
    if as_json:
        emit_json(declared)
