"""The ``edigw`` command: the click group, with its commands from the modules beside this
one (one module per group of commands, sharing ``gateway.cli.common``).

The group knows each command by name, the module holding it and its one-line help
(``COMMANDS``), and imports that module only when the command runs: ``edigw --help`` lists
them from the table, ``edigw log`` loads the log's module, not the web console, the broker
client or the AS2 stack. Each command
imports what it needs (SQLAlchemy, pika, the web app) when it runs. A test checks that
importing this package loads none of SQLAlchemy, FastAPI, lxml or pydantic.
"""

from __future__ import annotations

import importlib

import click

from gateway.cli.common import CliContext, EdigwGroup

#: Every command: its name, the module of ``gateway.cli`` and the attribute holding it, and
#: its one-line help as ``edigw --help`` lists it (so listing them imports none of them;
#: ``tests/unit/test_cli_lazy.py`` fails when a line differs from the command's own).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("serve", "serve",
               'Watch the inbox folders, process what arrives and publish to RabbitMQ.'),
    "declare": ("serve", "declare",
               'Declare the exchanges and queues on the broker (also done by serve at each '
               'connection).'),
    "ingest": ("ingest", "ingest",
               'Receive FILES as if dropped into the inbox, process them, publish the documents.'),
    "reprocess": ("ingest", "reprocess",
               'Replay FAILED or QUARANTINED transmissions from the archive, after a fix.'),
    "log": ("transmissions", "log_cmd",
               'The transmission log, newest first, a page at a time (the footer says how many '
               'match): order numbers and what the ERP said of each, times in [tracker] '
               'timezone.'),
    "show": ("transmissions", "show",
               'One transmission: its timeline and its documents, a page at a time (a file'
               ' of 20,000 orders is not read whole unless --all).'),
    "find": ("transmissions", "find",
               'Where is TEXT? A document number, file name, interchange reference, transmission'
               ' or document id, or AS2 Message-ID: what it matched, every match, and the '
               "verdict about it (as the console's search box)."),
    "partners": ("partners", "partners",
               'Partner profiles (config/partners/*.toml).'),
    "check-config": ("check", "check_config",
               'Validate settings, partner profiles and mappings; print a summary or what is '
               'wrong.'),
    "mappings": ("mappings", "mappings",
               'Declarative mappings (mappings/).'),
    "schemas": ("mappings", "schemas",
               'Canonical JSON Schemas (schemas/canonical/).'),
    "db": ("store", "db",
               'The store.'),
    "status": ("store", "status",
               'Counts by status, and the outbox.'),
    "security": ("store", "security",
               'Refused requests: forged webhook signatures, AS2 messages that did not verify, '
               'unknown AS2 senders (newest first).'),
    "channels": ("channels", "channels",
               'Every channel configured, with its health: last success, consecutive failures, '
               'last error (recorded by the running gateway).'),
    "alerts": ("alerts", "alerts",
               "The tracker's alerts (open and acknowledged unless --status says otherwise); see"
               " also 'alerts ack', 'alerts resolve' and 'alerts check'."),
    "explain": ("tracker", "explain",
               'Where is this order? One verdict in plain words (with its code: never-received, '
               'failed, duplicate, in-progress, waiting-erp, acknowledged, rejected, '
               'quarantined, held), the matches it is about, and its evidence.'),
    "purge": ("tracker", "purge",
               "Purge raw payloads older than their partner's retention_days (metadata, "
               'documents and canonical JSON are kept).'),
    "users": ("users", "users",
               "The console's users and their roles (viewer, operator, admin; client: a "
               "partner's own user, who sees only that partner's data in the portal)."),
    "tokens": ("users", "tokens",
               'API tokens for integrations (``Authorization: Bearer edigw_…``).'),
    "conflicts": ("conflicts", "conflicts",
               'Documents held as CONFLICT (same number as one received before, other content); '
               "see also 'conflicts show', 'conflicts release' and 'conflicts reject'."),
    "instances": ("instances", "instances",
               'The instances serving this store: host, PID, version, last heartbeat, alive or '
               'dead, and the leases each holds (an SFTP poller, a mailbox, the tracker …).'),
    "price-lists": ("pricelists", "price_lists",
               'Which partner holds which version of each price list, and which deliveries '
               'failed.'),
    "send": ("send", "send",
               'Send FILE (a canonical JSON document: invoice, order response, despatch advice, '
               'price list) to a partner.'),
    "forecasts": ("manager", "forecasts",
               'Forecasts per partner, month and currency, against actual (the manager page).'),
}


class LazyGroup(EdigwGroup):
    """``EdigwGroup`` whose commands (``COMMANDS``) are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr, _ = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"gateway.cli.{module}"), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"gateway.cli.{module}.{attr} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help as ``click.Group`` lists them, the help read
        from ``COMMANDS`` for a command not loaded yet (``edigw --help`` imports none)."""
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][2])
            if not command.hidden:
                listed.append((name, command))
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in listed])


@click.group(cls=LazyGroup)
@click.version_option(None, "--version", package_name="edigw", prog_name="edigw",
                      message="%(prog)s %(version)s")
@click.option("--config", "-c", envvar="EDIGW_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: config/gateway.toml when present, else embedded defaults).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """edigw: EDI gateway. Partners' files in, canonical documents on RabbitMQ out."""
    ctx.obj = CliContext(config)


__all__ = ["COMMANDS", "LazyGroup", "main"]
