"""The ``edigw`` command: the click group, with its commands from the modules beside this
one (one module per group of commands, sharing ``gateway.cli.common``).

The group knows each command by name and the module holding it (``COMMANDS``) and imports
that module only when the command runs (or when ``--help`` lists them all): ``edigw log``
loads the log's module, not the web console, the broker client or the AS2 stack. Each command
imports what it needs (SQLAlchemy, pika, the web app) when it runs. A test checks that
importing this package loads none of SQLAlchemy, FastAPI, lxml or pydantic.
"""

from __future__ import annotations

import importlib

import click

from gateway.cli.common import CliContext, EdigwGroup

#: Every command: its name, and the module of ``gateway.cli`` and the attribute holding it.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "declare": ("serve", "declare"),
    "ingest": ("ingest", "ingest"),
    "reprocess": ("ingest", "reprocess"),
    "log": ("transmissions", "log_cmd"),
    "show": ("transmissions", "show"),
    "find": ("transmissions", "find"),
    "partners": ("partners", "partners"),
    "check-config": ("check", "check_config"),
    "mappings": ("mappings", "mappings"),
    "schemas": ("mappings", "schemas"),
    "db": ("store", "db"),
    "status": ("store", "status"),
    "security": ("store", "security"),
    "channels": ("channels", "channels"),
    "alerts": ("alerts", "alerts"),
    "explain": ("tracker", "explain"),
    "purge": ("tracker", "purge"),
    "users": ("users", "users"),
    "tokens": ("users", "tokens"),
    "conflicts": ("conflicts", "conflicts"),
    "instances": ("instances", "instances"),
    "price-lists": ("pricelists", "price_lists"),
    "send": ("send", "send"),
    "forecasts": ("manager", "forecasts"),
}


class LazyGroup(EdigwGroup):
    """``EdigwGroup`` whose commands (``COMMANDS``) are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"gateway.cli.{module}"), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"gateway.cli.{module}.{attr} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup)
@click.version_option(None, "--version", package_name="edigw", prog_name="edigw",
                      message="%(prog)s %(version)s")
@click.option("--config", "-c", envvar="EDIGW_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: config/gateway.toml when present, else embedded defaults).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """edigw: EDI gateway. Partners' files in, canonical documents on RabbitMQ out."""
    ctx.obj = CliContext(config)


__all__ = ["COMMANDS", "main"]
