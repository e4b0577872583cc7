"""Numbers read from URLs (paths and query strings): bounded to what the store can hold.

SQLite and PostgreSQL keep integers in 64 bits; a larger one sent as an id, a limit or an
offset raised ``OverflowError`` deep in the driver (a 500). Every integer the console reads
from a URL goes through here and is answered 422 when out of range:

- FastAPI routes annotate with ``RowId`` (a path id, 1 … 2⁶³−1) or ``Offset`` (0 … 2⁶³−1);
- Starlette pages call ``url_int(text)``, which raises ``BadNumber`` (status 422).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from gateway.core.errors import RequestRefused

#: The largest integer the store holds (a signed 64-bit column).
SQL_INT_MAX = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=SQL_INT_MAX, description="an id (1 … 2⁶³−1)")]
Offset = Annotated[int, Query(ge=0, le=SQL_INT_MAX, description="rows to skip")]


class BadNumber(RequestRefused, ValueError):
    """A number in a URL that is not an integer within its bounds (answered 422)."""

    status = 422


def url_int(text: str, *, lo: int = 0, hi: int = SQL_INT_MAX, name: str = "number") -> int:
    """``text`` as an integer within ``lo`` … ``hi``; ``BadNumber`` otherwise."""
    value = text.strip()
    if not value.lstrip("-").isdigit() or len(value) > 20:
        raise BadNumber(f"{name} {text[:40]!r} is not an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise BadNumber(f"{name} {number} is out of range ({lo} … {hi})")
    return number
