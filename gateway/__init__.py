"""edigw: an EDI and B2B message-exchange gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    # The version is looked up when asked for: importlib.metadata costs every ``edigw``
    # command tens of milliseconds, and only ``--version``, the API and /readyz need it.
    if name != "__version__":
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("edigw")
    except PackageNotFoundError:  # run from a checkout that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
