"""What every ``edigw`` command shares: the context carrying the settings, the one-line
failure, the group that turns edigw's errors into it, and opening the gateway or the store.

Heavy modules (SQLAlchemy, pika, the web app, and pydantic through the settings) are
imported inside the functions, so that ``edigw --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gateway.core.errors import ConfigError, EdigwError, MappingDefinitionError

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.config import GatewaySettings
    from gateway.store.db import Store


class CliContext:
    """The ``click`` object of every command: the settings file named by ``--config``,
    loaded on first use (``edigw --help`` and ``schemas write`` never read it)."""

    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._settings: GatewaySettings | None = None

    @property
    def settings(self) -> GatewaySettings:
        """The settings, loaded once."""
        if self._settings is None:
            from gateway.config import load_settings  # pydantic: only for commands that read it

            self._settings = load_settings(self.config_path)
        return self._settings


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


def setup_logs(settings: GatewaySettings, level: str | None = None) -> None:
    """Configure logging as the settings say, at LEVEL when given."""
    from gateway.logs import configure

    configure(settings.log.format, level or settings.log.level)


def open_gateway(obj: CliContext) -> Gateway:
    """The whole gateway (store, archive, pipeline, publisher) on the configured settings."""
    from gateway.app import Gateway

    return Gateway.open(obj.settings)


def open_store(obj: CliContext) -> Store:
    """The configured store alone, migrated to the current revision (Alembic is loaded only
    when the store is not current already)."""
    from gateway.store.db import Store
    from gateway.store.heads import is_current

    store = Store.from_url(obj.settings.store.url, migrate=False)
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
