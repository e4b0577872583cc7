"""What differs between two canonical documents with the same business number.

A partner may send a document again under the same number with other content (a corrected
invoice, a changed order). edigw keeps the later one as a CONFLICT and shows an operator
what changed: ``differences`` walks both JSON documents (ids and ``source`` left out, see
``canonical.content_view``) and returns the changed leaves as (path, before, after), in
document order, at most ``limit`` of them, each value shortened to ``MAX_VALUE`` characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: A value longer than this (as JSON text) is cut with an ellipsis.
MAX_VALUE = 120
#: Differences listed at most (the count of all of them is kept).
MAX_DIFFERENCES = 50


@dataclass(frozen=True, slots=True)
class Difference:
    """One changed value: ``path`` like ``totals.payable`` or ``lines[2].quantity``;
    ``before`` or ``after`` is None where the value is absent on that side."""

    path: str
    before: str | None
    after: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"path": self.path, "before": self.before, "after": self.after}

    def __str__(self) -> str:
        return f"{self.path} {self.before or '(none)'} vs {self.after or '(none)'}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The differences listed (at most ``limit``) and how many there are in all."""

    differences: list[Difference]
    total: int

    def summary(self, shown: int = 3) -> str:
        """``totals.payable 32.99 vs 4918.84; … (5 differences)`` for a timeline line."""
        if not self.total:
            return "no difference in content"
        text = "; ".join(str(d) for d in self.differences[:shown])
        more = self.total - min(shown, len(self.differences))
        return text + (f"; … ({self.total} differences)" if more > 0 else "")

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "differences": [d.as_dict() for d in self.differences]}


def compare(before: dict[str, Any], after: dict[str, Any], *,
            limit: int = MAX_DIFFERENCES) -> Comparison:
    """The differences between two canonical documents (parsed JSON), ids and source
    left out."""
    from gateway.core.canonical import content_view  # pydantic models: only when compared

    shown: list[Difference] = []
    total = 0
    for path, old, new in _walk(content_view(before), content_view(after), ""):
        total += 1
        if len(shown) < limit:
            shown.append(Difference(path, _text(old), _text(new)))
    return Comparison(shown, total)


_ABSENT = object()


def _walk(old: Any, new: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from _walk(old.get(key, _ABSENT), new.get(key, _ABSENT),
                             f"{path}.{key}" if path else key)
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            yield from _walk(old[i] if i < len(old) else _ABSENT,
                             new[i] if i < len(new) else _ABSENT, f"{path}[{i}]")
        return
    if old != new:
        yield path, old, new


def _text(value: Any) -> str | None:
    if value is _ABSENT or value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"
