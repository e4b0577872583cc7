"""The default mappings and schemas that ship with the gateway.

In a checkout (and an editable install) they are the top-level ``mappings/`` and
``schemas/`` folders of the repository. A built wheel carries copies of them inside the
package, under ``gateway/_shipped/`` (``setup.py`` copies them at build time), so that an
installed gateway run from an empty folder still has its mappings and XSD schemas.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The shipped folder ``name`` (``mappings`` or ``schemas``): the package's copy when
    installed from a wheel, else the checkout's top-level folder."""
    inside = _HERE / "_shipped" / name
    return inside if inside.is_dir() else _HERE.parent / name
