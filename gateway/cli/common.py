"""What every ``edigw`` command shares: the context carrying the settings, the one-line
failure, the group that turns edigw's errors into it, opening the gateway or the store, and
the conventions of docs/cli.md: ``--json`` output on stdout, log lines on stderr in the
configured ``[log] format``, times in the gateway's one time zone, progress bars on stderr.

Heavy modules (SQLAlchemy, pika, the web app, rich, and pydantic through the settings)
are imported inside the functions, so that ``edigw --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gateway.core.errors import ConfigError, EdigwError, MappingDefinitionError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from gateway.app import Gateway
    from gateway.config import GatewaySettings
    from gateway.config_file import Basics
    from gateway.store.db import Store


class CliContext:
    """The ``click`` object of every command: the settings file named by ``--config``,
    loaded on first use (``edigw --help`` and ``schemas write`` never read it).

    A command that only reads the store and logs nothing of its own (``log``, ``show``,
    ``find``) says so first (``reads_only``): it then reads only the few settings it needs
    where it can (``basics``, no pydantic) and structlog (with rich) is configured when
    something logs through ``gateway.logs.logger``, not imported before."""

    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._settings: GatewaySettings | None = None
        self._basics: Basics | None = None
        self._reader = False
        #: How this command's log lines were set up: not yet, structlog ``deferred`` to
        #: its first use, or ``configured``.
        self._logs: str | None = None

    def reads_only(self) -> None:
        """The running command only reads (see the class)."""
        self._reader = True

    @property
    def settings(self) -> GatewaySettings:
        """The settings, loaded once; log lines then go to stderr in ``[log] format``, at
        warning or above (``serve`` lowers it to ``[log] level``)."""
        if self._settings is None:
            from gateway.config import load_settings  # pydantic: only for commands that read it

            self._settings = load_settings(self.config_path)
        self._setup_logs(self._settings.log.format, self._settings.log.level)
        return self._settings

    @property
    def basics(self) -> Basics:
        """The store URL, ``[tracker] timezone``, the partners' folder, the archive and
        ``[log]``: for a reader, read by ``gateway.config_file.basics`` (the precedence of
        ``settings``, without its pydantic model, nor the rest of the file checked) unless
        the settings are loaded; else the settings' own."""
        if self._basics is None:
            from gateway.config_file import Basics, basics

            if self._reader and self._settings is None:
                self._basics = basics(self.config_path)
                self._setup_logs(self._basics.log_format, self._basics.log_level)
            else:
                self._basics = Basics.of(self.settings)
        return self._basics

    def _setup_logs(self, fmt: str, level: str) -> None:
        """Log lines on stderr in FMT, at warning or above (or LEVEL when higher); for a
        reader, structlog's part at its first use (``gateway.logs.defer``)."""
        if self._logs == "configured" or (self._logs == "deferred" and self._reader):
            return
        from gateway.logs import configure, defer

        (defer if self._reader else configure)(fmt, _quieter(level, "warning"))
        self._logs = "deferred" if self._reader else "configured"

    @property
    def zone(self) -> ZoneInfo:
        """The gateway's one time zone (``[tracker] timezone``) every time is shown in."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.basics.timezone)

    def shown(self, at: dt.datetime | None, *, seconds: bool = False) -> str:
        """AT as a person reads it in the gateway's zone (``2026-12-07 21:14 CET``; '-'
        for None)."""
        from gateway.core.zone import shown

        return shown(at, self.zone, seconds=seconds) or "-"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``edigw: MESSAGE`` on stderr and exit with CODE (2: configuration, 1: other)."""
    click.echo(f"edigw: {message}", err=True)
    sys.exit(code)


class EdigwGroup(click.Group):
    """Turns edigw's own errors into one clear line and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, MappingDefinitionError) as exc:
            fail(str(exc))
        except EdigwError as exc:
            fail(str(exc), 1)


_LEVELS = ("debug", "info", "warning", "error")


def _quieter(a: str, b: str) -> str:
    """The more severe of two level names."""
    return max(a, b, key=_LEVELS.index)


def setup_logs(settings: GatewaySettings, level: str | None = None) -> None:
    """Configure logging as the settings say (stderr, ``[log] format``), at LEVEL when given."""
    from gateway.logs import configure

    configure(settings.log.format, level or settings.log.level)


def iso(at: dt.datetime | None) -> str | None:
    """AT for ``--json``: ISO 8601 with its offset (UTC for a naive time, as the store keeps
    them), None for None."""
    if at is None:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).isoformat()


def emit_json(value: Any, *, lines: bool = False) -> None:
    """VALUE on stdout as one JSON document (or, with LINES, one JSON line per item); times
    as ISO 8601 with offset."""
    def default(o: Any) -> Any:
        if isinstance(o, dt.datetime):
            return iso(o)
        return str(o)

    if lines:
        for item in value:
            click.echo(json.dumps(item, default=default))
        return
    click.echo(json.dumps(value, indent=2, default=default))


def json_option(help_text: str = "Machine-readable output on stdout (one JSON document).",
                ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--json`` flag every reporting command has, as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def draws_progress(*, as_json: bool = False, quiet: bool = False) -> bool:
    """Progress bars are drawn only on a terminal's stderr, never with --json or --quiet."""
    return not (as_json or quiet) and sys.stderr.isatty()


class Progress:
    """Tasks on a ``rich`` progress bar on stderr, or nothing when not drawn (same calls)."""

    def __init__(self, bar: Any | None) -> None:
        self._bar = bar

    @property
    def drawn(self) -> bool:
        """Whether anything is drawn."""
        return self._bar is not None

    def task(self, description: str, total: float | None) -> Any:
        """A new task (its id); None when nothing is drawn."""
        return None if self._bar is None else self._bar.add_task(description, total=total)

    def advance(self, task: Any, by: float = 1, **fields: Any) -> None:
        """Move TASK on by BY, with new FIELDS shown in its description."""
        if self._bar is not None and task is not None:
            self._bar.update(task, advance=by, **fields)

    def describe(self, task: Any, description: str) -> None:
        if self._bar is not None and task is not None:
            self._bar.update(task, description=description)


@contextmanager
def progress(draw: bool, *, bytes_done: bool = False) -> Iterator[Progress]:
    """A progress display on stderr while the block runs (none when DRAW is false); with
    BYTES_DONE, the completed and total amounts are shown as sizes."""
    if not draw:
        yield Progress(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    amount = DownloadColumn() if bytes_done else MofNCompleteColumn()
    with RichProgress(TextColumn("{task.description}"), BarColumn(), amount,
                      TimeElapsedColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=False) as bar:
        yield Progress(bar)


def open_gateway(obj: CliContext) -> Gateway:
    """The whole gateway (store, archive, pipeline, publisher) on the configured settings."""
    from gateway.app import Gateway

    return Gateway.open(obj.settings)


def open_store(obj: CliContext) -> Store:
    """The configured store alone, migrated to the current revision (Alembic is loaded only
    when the store is not current already). A reader's needs no pydantic
    (``CliContext.basics``)."""
    from gateway.store.db import Store
    from gateway.store.heads import is_current

    store = Store.from_url(obj.basics.store_url, migrate=False)
    if not is_current(store.engine):
        from gateway.store.migrate import upgrade

        upgrade(store.engine)
    return store


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns as wide as their widest cell, two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def parse_when(value: str | None, zone: ZoneInfo, *, end: bool = False) -> dt.datetime | None:
    """A date or date-time given on the command line; without an offset, in the gateway's
    time zone (``[tracker] timezone``). A bare date as an end (``--until``) means the end of
    that day."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO date-time)"
                                 ) from None
    if end and len(value.strip()) == 10:
        when += dt.timedelta(days=1)
    return when if when.tzinfo else when.replace(tzinfo=zone)

