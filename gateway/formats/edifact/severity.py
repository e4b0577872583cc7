"""Which message validation errors reject a message, and which only warn (partner policy).

``validate_message`` (``structure.py``) reports every departure from the UN directory. A
partner's profile says how strict to be (``[edifact] validation``):

- ``strict``: every error rejects the message.
- ``mapped`` (the default): errors of the message's structure (missing, misplaced or
  repeated segments and groups) reject it, and so does any error inside a segment the
  mapping reads. An error inside a data element of a segment the mapping never reads
  (a ``DTM+7`` date written ``CCYYMMDDHHMM`` under format 102, a free text one character
  too long) is a warning: the document the ERP gets does not depend on it, and a
  wholesaler would rather take the order than bounce it over a field nobody reads.
- ``off``: structure and content are not checked (the envelope still is).

A segment counts as read when a path of the mapping names its tag and every condition of
that path holds for it (``DTM[2005=137]`` reads ``DTM+137`` only), or when it is the
trigger of a group the mapping reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact.model import Message, Segment

#: Per mapping object: (the mapping, kept so its id is not reused; tag -> condition tuples
#: of the paths reading it, () meaning any segment of that tag).
_READS: dict[int, tuple[Any, dict[str, list[tuple[Any, ...]]]]] = {}


def _rules(rules: Iterable[Any], groups: dict[str, Any], out: dict[str, list[tuple[Any, ...]]]
           ) -> None:
    """Collect what ``rules`` read; ``groups`` are the groups visible at their level (a
    group's sub-groups are local to it, so a name may exist at two levels)."""
    for rule in rules:
        for path in getattr(rule, "paths", ()) or ():
            out.setdefault(path.tag, []).append(tuple(path.conditions))
        group = getattr(rule, "group", None)
        if group is not None:
            definition = groups.get(group)
            if definition is not None:
                out.setdefault(definition.trigger, []).append(tuple(rule.conditions))
            inner = (getattr(definition, "groups", None) or {}) if definition else {}
            _rules(getattr(rule, "fields", ()) or (), inner, out)


def _reads(mapping: Any) -> dict[str, list[tuple[Any, ...]]]:
    cached = _READS.get(id(mapping))
    if cached is not None and cached[0] is mapping:
        return cached[1]
    found: dict[str, list[tuple[Any, ...]]] = {}
    _rules(getattr(mapping, "rules", ()), dict(getattr(mapping, "groups", {}) or {}), found)
    _READS[id(mapping)] = (mapping, found)
    return found


def reads(mapping: Any, segment: Segment) -> bool:
    """Whether ``mapping`` reads anything from ``segment``."""
    for conditions in _reads(mapping).get(segment.tag, ()):
        if all(c.holds(segment.elements) for c in conditions):
            return True
    return False


def sort_errors(errors: list[EdifactSyntaxError], message: Message, mapping: Any | None,
                policy: str) -> tuple[list[EdifactSyntaxError], list[str]]:
    """(errors that reject the message, warnings) under ``policy``."""
    if policy == "strict" or not errors:
        return errors, []
    by_index = {s.index: s for s in message.segments}
    rejecting: list[EdifactSyntaxError] = []
    warnings: list[str] = []
    for error in errors:
        position = error.position
        element_level = position is not None and (position.element_pos is not None
                                                  or position.element is not None)
        segment = by_index.get(position.segment) if position and position.segment else None
        if element_level and segment is not None and (mapping is None
                                                      or not reads(mapping, segment)):
            warnings.append(f"{error} (0085 code {error.code}; not read by the mapping: "
                            "accepted, partner policy validation = mapped)")
        else:
            rejecting.append(error)
    return rejecting, warnings
