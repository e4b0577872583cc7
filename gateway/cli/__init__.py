"""The ``edigw`` command: the click group, with its commands from the modules beside this
one (one module per group of commands, sharing ``gateway.cli.common``).

Each command imports what it needs (SQLAlchemy, pika, the web app) when it runs, so that
``edigw --help`` stays fast.
"""

from __future__ import annotations

import click

from gateway import __version__
from gateway.cli import (
    alerts,
    channels,
    check,
    conflicts,
    ingest,
    instances,
    manager,
    mappings,
    partners,
    pricelists,
    send,
    serve,
    store,
    tracker,
    transmissions,
    users,
)
from gateway.cli.common import CliContext, EdigwGroup


@click.group(cls=EdigwGroup)
@click.version_option(__version__, "--version", prog_name="edigw", message="%(prog)s %(version)s")
@click.option("--config", "-c", envvar="EDIGW_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: config/gateway.toml when present, else embedded defaults).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """edigw: EDI gateway. Partners' files in, canonical documents on RabbitMQ out."""
    ctx.obj = CliContext(config)


for _command in (serve.serve, serve.declare, ingest.ingest, ingest.reprocess,
                 transmissions.log_cmd, transmissions.show, transmissions.find,
                 partners.partners, check.check_config, mappings.mappings, mappings.schemas,
                 store.db, store.status, store.security, channels.channels, alerts.alerts,
                 tracker.explain, tracker.purge, users.users, users.tokens,
                 conflicts.conflicts, instances.instances, pricelists.price_lists,
                 send.send, manager.forecasts):
    main.add_command(_command)

__all__ = ["main"]
