"""Structured logs with structlog: console lines for people, JSON lines for collectors,
always on stderr so that a command's own output (``--json`` above all) stays alone on stdout.
Every ``edigw`` command configures them as soon as it reads the settings (``[log] format``).

A command that only reads (``edigw log``, ``find``) ``defer``s structlog's part: importing
structlog (and rich through it) costs more than such a command's own work, and nothing on
its way logs. A module on such a way takes its logger from ``logger``, which configures
structlog first if it was deferred.

``transmission_id`` and ``partner`` are bound with context variables by the pipeline, so
every line written while a transmission is processed carries them.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import Processor

#: The format and level structlog is to be configured with at its first use (``defer``).
_deferred: tuple[str, str] | None = None


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (a test runner swaps it per test;
    a stream captured once would outlive it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(fmt: str = "console", level: str = "info") -> None:
    """Route structlog and the standard library's logging to stderr in one format."""
    import structlog

    global _deferred
    _deferred = None
    lvl = getattr(logging, level.upper())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(lvl)


def defer(fmt: str = "console", level: str = "info") -> None:
    """Configure the standard library's logging now and structlog when ``logger`` is first
    asked for (``configure`` then, with FMT and LEVEL)."""
    global _deferred
    _deferred = (fmt, level)
    _configure_stdlib(getattr(logging, level.upper()))


def logger(name: str) -> Any:
    """Structlog's logger NAME, structlog configured first when ``defer`` said so."""
    import structlog

    if _deferred is not None:
        configure(*_deferred)
    return structlog.get_logger(name)


def _configure_stdlib(lvl: int) -> None:
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
