"""The API's conventions for lists, shared by every router.

- One paging envelope: ``{"total": N, "limit": L, "offset": O, "items": [...]}``
  (``Paged[ItemModel]`` as the response model, ``paged(items, total, limit, offset)`` to
  build it); ``Limit`` and ``Offset`` are the query parameters.
  A short list kept whole in memory (users, tokens, price-list standings) is cut by
  ``page_of(rows, limit, offset)``.
- One name for the partner: ``partner_id`` in bodies, responses and query filters
  (``PartnerFilter``; ``?partner=`` is still read, as the older spelling);
  ``partner_named(row)`` renames a row's ``partner`` key from the layers below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from gateway.web.numbers import Offset

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="rows in this page (1 … 1000)")]


class Paged(BaseModel, Generic[T]):
    """One page of a list: how many rows match in all (``total``), and these."""

    total: int
    limit: int
    offset: int
    items: list[T]


def paged(items: Sequence[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    """The envelope of one page."""
    return {"total": total, "limit": limit, "offset": offset, "items": list(items)}


def page_of(rows: Sequence[Any], limit: int, offset: int) -> dict[str, Any]:
    """The envelope of one page of ``rows`` (a whole list held in memory)."""
    return paged(rows[offset:offset + limit], len(rows), limit, offset)


def partner_named(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``partner`` key as ``partner_id`` (the API's one name)."""
    if "partner" not in row:
        return row
    named = {("partner_id" if k == "partner" else k): v for k, v in row.items()}
    return named


def _partner_filter(
        partner_id: Annotated[str | None, Query(max_length=64,
                                                description="the partner (its id)")] = None,
        partner: Annotated[str | None, Query(max_length=64, include_in_schema=False)] = None
) -> str | None:
    return partner_id if partner_id is not None else partner


#: The partner a list is narrowed to (``?partner_id=``, or the older ``?partner=``).
PartnerFilter = Annotated[str | None, Depends(_partner_filter)]

__all__ = ["Limit", "Offset", "Paged", "PartnerFilter", "page_of", "paged", "partner_named"]
