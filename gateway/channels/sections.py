"""What a channel's settings are made of: the strict model every section of
``gateway.toml`` uses, and secrets given inline or in a file.

A channel contributes its keys of ``gateway.toml`` as a *section*: a model holding only
those keys (``as2 = …``, ``mailboxes = […]``), which ``gateway.config.GatewaySettings``
inherits through ``gateway.channels.registry.ChannelSections``. This module imports nothing
of the gateway, so that ``gateway.config`` can be composed from the channels' sections.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

#: A partner id or a channel name: what file names and URLs may hold.
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: An e-mail address, as far as the settings check it.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"


class StrictModel(BaseModel):
    """A settings model: an unknown key is an error, and values never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def secret_from(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret given inline (usually ``${VAR}`` from the environment) or in a file."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return None
