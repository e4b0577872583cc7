"""Reading ``gateway.toml`` without pydantic: the file, its ``${NAME}`` references, the
``EDIGW_…`` variables and ``$EDIGW_VAR``, as ``gateway.config.load_settings`` applies them
(it calls these functions before validating the whole with its models), and ``basics``: the
few settings a command that only reads the store needs (``edigw log``, ``find``).

``basics`` takes each value with exactly ``load_settings``'s precedence (an environment
variable, then the file, then the default); when a value it reads is not plainly valid it
asks ``load_settings`` itself, which names the problem as it always does. It checks only
the keys it reads: ``edigw check-config`` (or any command loading the settings) checks the
whole file.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError

DEFAULT_CONFIG = Path("config/gateway.toml")
#: The defaults of the keys ``basics`` reads (``gateway.config``'s models use them too).
STORE_URL = "sqlite:///var/edigw.sqlite3"
STORE_URL_PATTERN = re.compile(r"^(sqlite|postgresql)(\+\w+)?://")
TIMEZONE = "Europe/Paris"
PARTNERS = Path("config/partners")
ARCHIVE = Path("var/archive")
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: The gateway's own keys an ``EDIGW_<SECTION>_<KEY>`` (``EDIGW_<KEY>`` for top-level keys)
#: variable overrides (``gateway.config`` adds every key of ``[http]``). ``EDIGW_STORE_URL``
#: and ``EDIGW_BROKER_URL`` are applied before; ``[[inbox]]`` keys apply to the one inbox.
#: docs/deploy.md lists them all.
ENV_KEYS: tuple[tuple[str | None, str], ...] = (
    (None, "mappings"), (None, "partners"), (None, "secrets_dir"), (None, "certs_dir"),
    ("archive", "path"), ("archive", "fsync"), ("outbound", "path"),
    ("log", "format"), ("log", "level"), ("broker", "queue_type"),
    ("inbox", "path"), ("inbox", "processed"), ("inbox", "failed"),
)


@dataclass(frozen=True, slots=True)
class RawSettings:
    """The settings as read, before validation: ``data`` (file, references and variables
    applied), where they came from, and the keys set by a variable (with its name)."""

    data: dict[str, Any]
    source: str
    from_env: dict[str, str]


def read_raw(path: str | os.PathLike[str] | None, env: Mapping[str, str],
             env_keys: tuple[tuple[str | None, str], ...] = ENV_KEYS) -> RawSettings:
    """The settings of ``path`` (or ``$EDIGW_CONFIG``, or ``config/gateway.toml`` when it
    exists, or none), with the ``EDIGW_…`` variables of ``env_keys`` applied."""
    if path is None:
        path = env.get("EDIGW_CONFIG") or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    data: dict[str, Any] = {}
    source = "<embedded defaults>"
    if path is not None:
        source = str(path)
        data = read_toml(Path(path), env)
    for var, section, key in (("EDIGW_STORE_URL", "store", "url"),
                              ("EDIGW_BROKER_URL", "broker", "url"),
                              ("EDIGW_BROKER_URLS", "broker", "urls")):
        if env.get(var):
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError("must be a table", file=source, key=section, value=data[section])
            data[section].pop("urls" if key == "url" else "url", None)  # the other replaced
            data[section][key] = env[var]
    data["source"] = source
    return RawSettings(data, source, env_overrides(data, env, source, env_keys))


def env_overrides(data: dict[str, Any], env: Mapping[str, str], source: str,
                  keys: tuple[tuple[str | None, str], ...] = ENV_KEYS) -> dict[str, str]:
    """Apply the ``EDIGW_…`` variables of ``keys`` (an empty one is not set) to the raw
    settings; return the keys set, each with its variable (to name it in errors)."""
    applied: dict[str, str] = {}
    for section, key in keys:
        var = "EDIGW_" + (f"{section}_{key}" if section else key).upper()
        value = env.get(var)
        if not value:
            continue
        if section is None:
            data[key] = value
            applied[key] = var
            continue
        table = data.setdefault(section, [{"path": "var/inbox"}] if section == "inbox" else {})
        if section == "inbox":
            if not isinstance(table, list) or len(table) != 1 or not isinstance(table[0], dict):
                raise ConfigError(f"{var} sets the one [[inbox]]: the settings have "
                                  f"{len(table) if isinstance(table, list) else 'no list of'} "
                                  "inboxes", file=source, key="inbox")
            table[0][key] = value
            applied[f"inbox.0.{key}"] = var
            continue
        if not isinstance(table, dict):
            raise ConfigError("must be a table", file=source, key=section, value=table)
        table[key] = value
        applied[f"{section}.{key}"] = var
    return applied


def rebased_path(value: Path, base: Path) -> Path:
    """``value`` moved under ``base`` (``$EDIGW_VAR``) when it is relative and starts with
    ``var/``; else ``value`` itself."""
    if not value.is_absolute() and value.parts[:1] == ("var",):
        return base / value.relative_to("var")
    return value


def rebased_store_url(url: str, base: Path) -> str:
    """A SQLite store's URL with its relative ``var/`` file moved under ``base``."""
    m = re.match(r"^(sqlite(?:\+\w+)?:///)(?!/)(var/.*)$", url)
    return m.group(1) + str(base / Path(m.group(2)).relative_to("var")) if m else url


def read_toml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """A TOML file with its ``${NAME}`` references replaced (``ConfigError`` when unreadable)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    expanded: dict[str, Any] = expand(data, env, str(path), "")
    return expanded


def expand(value: Any, env: Mapping[str, str], file: str, key: str) -> Any:
    """``value`` with every ``${NAME}`` / ``${NAME:-default}`` of its strings replaced."""
    if isinstance(value, dict):
        return {k: expand(v, env, file, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set", file=file, key=key)
        return ENV_REF.sub(sub, value)
    return value


def valid_zone(name: str) -> bool:
    """Whether ``name`` is a time zone ``zoneinfo`` knows."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Basics:
    """The settings a reading command needs, as ``load_settings`` would give them."""

    store_url: str = STORE_URL
    timezone: str = TIMEZONE
    partners: Path = PARTNERS
    archive_path: Path = ARCHIVE
    log_format: str = "console"
    log_level: str = "info"
    source: str = "<embedded defaults>"

    @classmethod
    def of(cls, settings: Any) -> Basics:
        """The basics of loaded ``GatewaySettings``."""
        return cls(store_url=settings.store.url, timezone=settings.tracker.timezone,
                   partners=settings.partners, archive_path=settings.archive.path,
                   log_format=settings.log.format, log_level=settings.log.level,
                   source=settings.source)


class _Unsure(Exception):
    """A value ``basics`` leaves to the full loader."""


def basics(path: str | os.PathLike[str] | None = None,
           env: Mapping[str, str] | None = None) -> Basics:
    """The store URL, ``[tracker] timezone``, the partners' folder, the archive and ``[log]``
    of the settings, without validating the rest of the file."""
    env = os.environ if env is None else env
    raw = read_raw(path, env)
    try:
        found = _basics_of(raw.data)
    except _Unsure:
        from gateway.config import load_settings  # names the problem, or takes the value

        return Basics.of(load_settings(path, env))
    base = env.get("EDIGW_VAR")
    if not base:
        return found
    return Basics(store_url=rebased_store_url(found.store_url, Path(base)),
                  timezone=found.timezone,
                  partners=rebased_path(found.partners, Path(base)),
                  archive_path=rebased_path(found.archive_path, Path(base)),
                  log_format=found.log_format, log_level=found.log_level, source=found.source)


def _basics_of(data: dict[str, Any]) -> Basics:
    def section(name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise _Unsure(name)
        return value

    def text(table: dict[str, Any], key: str, default: str,
             ok: Any = lambda v: True) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not ok(value):
            raise _Unsure(key)
        return value

    store, tracker, archive, log = (section(n) for n in ("store", "tracker", "archive", "log"))
    return Basics(
        store_url=text(store, "url", STORE_URL, lambda v: STORE_URL_PATTERN.match(v)),
        timezone=text(tracker, "timezone", TIMEZONE, valid_zone),
        partners=Path(text(data, "partners", str(PARTNERS))),
        archive_path=Path(text(archive, "path", str(ARCHIVE))),
        log_format=text(log, "format", "console", lambda v: v in LOG_FORMATS),
        log_level=text(log, "level", "info", lambda v: v in LOG_LEVELS),
        source=data["source"])


__all__ = ["ARCHIVE", "DEFAULT_CONFIG", "ENV_KEYS", "PARTNERS", "STORE_URL", "TIMEZONE",
           "Basics", "RawSettings", "basics", "env_overrides", "expand", "read_raw",
           "read_toml", "rebased_path", "rebased_store_url"]
