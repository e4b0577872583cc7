"""What a canonical field's type annotation says, for the mapping compilers of every format:
the members of a union, whether it is a list, and the pydantic model inside it."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel


def union_args(annotation: Any) -> tuple[Any, ...]:
    """The members of ``X | Y`` (or ``Optional``), else the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) is list for a in union_args(annotation))


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (Party | None, list[OrderLine]), if any."""
    for arg in union_args(annotation):
        if typing.get_origin(arg) is list:
            arg = typing.get_args(arg)[0]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
