"""edigw: an EDI and B2B message-exchange gateway."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("edigw")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
