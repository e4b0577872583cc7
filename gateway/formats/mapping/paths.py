"""EDIFACT paths: ``SEG[cond,...]/ELEMENT[cond]/COMPONENT``, resolved through the directory.

A ref is a data element number (``1004``), a composite (``C212``) or a 1-based position
(``2`` or ``2.1``). A data element number straight after the segment is looked for among
the segment's elements and its composites' components, so ``BGM/1004`` finds the document
number in D96A (element 2) and in D01B (C106, component 1). Conditions compare a ref with
one or more values: ``[7143=EN|SRV]``, ``[3055!=9]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.errors import EdigwError
from gateway.formats.edifact.directory import ElementSpec, is_known_segment, locate, segment_spec
from gateway.formats.edifact.model import Segment

_SEGMENT = re.compile(r"(?P<tag>[A-Z][A-Z0-9]{2})(?:\[(?P<conds>[^\[\]]*)\])?")
_STEP = re.compile(r"(?P<ref>[A-Z]\d{3}|\d{4}|\d{1,2}(?:\.\d{1,2})?)(?:\[(?P<conds>[^\[\]]*)\])?")
_COND = re.compile(r"(?P<ref>[A-Z]\d{3}|\d{4}|\d{1,2}(?:\.\d{1,2})?)(?P<op>!?=)(?P<values>[^,]*)")

Place = tuple[int, int | None]


class PathError(EdigwError, ValueError):
    """A path that is malformed or names an element its segment does not have; the mapping
    loader turns it into a ``MappingDefinitionError`` with the file and line."""


@dataclass(frozen=True, slots=True)
class Condition:
    """Holds when the value at any of ``places`` is (or, negated, is not) one of ``values``."""

    places: tuple[Place, ...]
    values: frozenset[str]
    negate: bool = False

    def holds(self, elements: list[list[str]]) -> bool:
        """Test against a segment's elements (places are element, component)."""
        values = self.values
        count = len(elements)
        for element, component in self.places:
            if element < count:
                comps = elements[element]
                index = component or 0
                if index < len(comps) and comps[index] in values:
                    return not self.negate
        return self.negate

    def holds_in(self, components: list[str]) -> bool:
        """Test against one composite's components (places are 0, component)."""
        values = self.values
        count = len(components)
        for _element, component in self.places:
            index = component or 0
            if index < count and components[index] in values:
                return not self.negate
        return self.negate


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place a value may sit: element index, component index (None: whole element)."""

    element: int
    component: int | None
    join: bool
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentPath:
    """A compiled path: the segment tag, its conditions and where the value sits."""

    text: str
    tag: str
    conditions: tuple[Condition, ...]
    candidates: tuple[Candidate, ...]
    #: Where the date/time format qualifier (2379) sits in this segment, when it has one.
    format_place: tuple[Place, ...] = ()

    def select(self, segments: list[Segment]) -> list[Segment]:
        """The segments (of this path's tag) whose conditions hold."""
        conditions = self.conditions
        if not conditions:
            return segments
        return [s for s in segments if all(c.holds(s.elements) for c in conditions)]

    def first(self, segment: Segment) -> str:
        """The first non-empty value of ``segment`` at this path, or ""."""
        elements = segment.elements
        count = len(elements)
        for cand in self.candidates:
            if cand.element >= count:
                continue
            comps = elements[cand.element]
            if cand.conditions:
                if not all(c.holds_in(comps) for c in cand.conditions):
                    continue
            if cand.join:
                value = " ".join(c.strip() for c in comps if c.strip())
            else:
                index = cand.component or 0
                value = comps[index] if index < len(comps) else ""
            if value:
                return value
        return ""

    def picker(self) -> Callable[[Segment], str]:
        """A function of one segment (of this path's tag) giving ``first(segment)`` when the
        path's conditions hold, else "".

        Mapping calls it for every field of every message, so the usual shapes (one place,
        at most one single-place condition on the segment or on the composite) get a
        function with no loops or calls; any other path falls back to the general methods.
        """
        conditions, candidates = self.conditions, self.candidates
        if len(candidates) == 1 and not candidates[0].join:
            cand = candidates[0]
            element, component = cand.element, cand.component or 0
            if not conditions and not cand.conditions:
                return _pick_at(element, component)
            if len(conditions) == 1 and not cand.conditions and len(conditions[0].places) == 1:
                return _pick_if_segment(conditions[0], element, component)
            if (not conditions and len(cand.conditions) == 1
                    and len(cand.conditions[0].places) == 1):
                return _pick_if_composite(cand.conditions[0], element, component)
        if not conditions and len(candidates) == 1 and candidates[0].join:
            return _pick_joined(candidates[0].element)
        if not conditions and all(not c.join and len(c.conditions) <= 1 and all(
                len(cond.places) == 1 for cond in c.conditions) for c in candidates):
            return _pick_first_of(candidates)
        first = self.first
        if not conditions:
            return first

        def pick(segment: Segment) -> str:
            elements = segment.elements
            for condition in conditions:
                if not condition.holds(elements):
                    return ""
            return first(segment)

        return pick

    def fetcher(self) -> Callable[..., str | None]:
        """A function of a scope (segments by tag) giving the first non-empty value at this
        path, or None: what ``first`` gives for the first selected segment that has one.

        Further arguments are ignored, so that a plain text rule of one path can use it as
        its getter as it is (``apply`` calls getters with the scope, the run, the context).
        The usual shapes read the segments inline, without a call per segment.
        """
        tag, conditions, candidates = self.tag, self.conditions, self.candidates
        if len(candidates) == 1 and not candidates[0].join:
            cand = candidates[0]
            element, component = cand.element, cand.component or 0
            if not conditions and not cand.conditions:
                return _fetch_at(tag, element, component)
            if len(conditions) == 1 and not cand.conditions and len(conditions[0].places) == 1:
                return _fetch_if_segment(tag, conditions[0], element, component)
            if (not conditions and len(cand.conditions) == 1
                    and len(cand.conditions[0].places) == 1):
                return _fetch_if_composite(tag, cand.conditions[0], element, component)
        pick = self.picker()

        def fetch(scope: dict[str, list[Segment]], *_ignored: object) -> str | None:
            segments = scope.get(tag)
            if segments:
                for segment in segments:
                    value = pick(segment)
                    if value:
                        return value
            return None

        return fetch

    def values(self, segment: Segment) -> list[str]:
        """Non-empty values of ``segment`` at this path, in directory order."""
        elements = segment.elements
        count = len(elements)
        found = []
        for cand in self.candidates:
            if cand.element >= count:
                continue
            comps = elements[cand.element]
            if cand.conditions and not all(c.holds_in(comps) for c in cand.conditions):
                continue
            if cand.join:
                value = " ".join(c.strip() for c in comps if c.strip())
            else:
                index = cand.component or 0
                value = comps[index] if index < len(comps) else ""
            if value:
                found.append(value)
        return found


def _fetch_at(tag: str, element: int, component: int) -> Callable[..., str | None]:
    def fetch(scope: dict[str, list[Segment]], *_ignored: object) -> str | None:
        segments = scope.get(tag)
        if segments:
            for segment in segments:
                elements = segment.elements
                if element < len(elements):
                    comps = elements[element]
                    if component < len(comps) and comps[component]:
                        return comps[component]
        return None

    return fetch


def _fetch_if_segment(tag: str, condition: Condition, element: int,
                      component: int) -> Callable[..., str | None]:
    (test_element, test_component), = condition.places
    test_component = test_component or 0
    values, negate = condition.values, condition.negate

    def fetch(scope: dict[str, list[Segment]], *_ignored: object) -> str | None:
        segments = scope.get(tag)
        if segments:
            for segment in segments:
                elements = segment.elements
                count = len(elements)
                found = False
                if test_element < count:
                    comps = elements[test_element]
                    found = test_component < len(comps) and comps[test_component] in values
                if found != negate and element < count:
                    comps = elements[element]
                    if component < len(comps) and comps[component]:
                        return comps[component]
        return None

    return fetch


def _fetch_if_composite(tag: str, condition: Condition, element: int,
                        component: int) -> Callable[..., str | None]:
    (_zero, test_component), = condition.places
    test_component = test_component or 0
    values, negate = condition.values, condition.negate

    def fetch(scope: dict[str, list[Segment]], *_ignored: object) -> str | None:
        segments = scope.get(tag)
        if segments:
            for segment in segments:
                elements = segment.elements
                if element < len(elements):
                    comps = elements[element]
                    count = len(comps)
                    found = test_component < count and comps[test_component] in values
                    if found != negate and component < count and comps[component]:
                        return comps[component]
        return None

    return fetch


def _pick_at(element: int, component: int) -> Callable[[Segment], str]:
    def pick(segment: Segment) -> str:
        elements = segment.elements
        if element < len(elements):
            comps = elements[element]
            if component < len(comps):
                return comps[component]
        return ""

    return pick


def _pick_if_segment(condition: Condition, element: int,
                     component: int) -> Callable[[Segment], str]:
    """``SEG[ref=value]/…``: the condition tests one place of the segment."""
    (test_element, test_component), = condition.places
    test_component = test_component or 0
    values, negate = condition.values, condition.negate

    def pick(segment: Segment) -> str:
        elements = segment.elements
        count = len(elements)
        found = False
        if test_element < count:
            comps = elements[test_element]
            found = test_component < len(comps) and comps[test_component] in values
        if found == negate:  # Condition.holds is ``found != negate``
            return ""
        if element < count:
            comps = elements[element]
            if component < len(comps):
                return comps[component]
        return ""

    return pick


def _pick_if_composite(condition: Condition, element: int,
                       component: int) -> Callable[[Segment], str]:
    """``SEG/COMPOSITE[ref=value]/…``: the condition tests one component of the composite."""
    (_zero, test_component), = condition.places
    test_component = test_component or 0
    values, negate = condition.values, condition.negate

    def pick(segment: Segment) -> str:
        elements = segment.elements
        if element < len(elements):
            comps = elements[element]
            count = len(comps)
            found = test_component < count and comps[test_component] in values
            if found != negate and component < count:
                return comps[component]
        return ""

    return pick


def _pick_joined(element: int) -> Callable[[Segment], str]:
    """A whole composite (``NAD/C080``): its non-empty components joined by spaces."""

    def pick(segment: Segment) -> str:
        elements = segment.elements
        if element < len(elements):
            return " ".join(c.strip() for c in elements[element] if c.strip())
        return ""

    return pick


def _pick_first_of(candidates: tuple[Candidate, ...]) -> Callable[[Segment], str]:
    """Several places (a repeated composite: PIA C212 x5), each with at most one condition on
    one of its components: the first non-empty value, as ``SegmentPath.first``."""
    places: list[tuple[int, int, int | None, frozenset[str], bool]] = []
    for cand in candidates:
        if cand.conditions:
            condition = cand.conditions[0]
            test = condition.places[0][1] or 0
            places.append((cand.element, cand.component or 0, test, condition.values,
                           condition.negate))
        else:
            places.append((cand.element, cand.component or 0, None, frozenset(), False))
    table = tuple(places)

    def pick(segment: Segment) -> str:
        elements = segment.elements
        count = len(elements)
        for element, component, test, values, negate in table:
            if element < count:
                comps = elements[element]
                if test is not None and (test < len(comps) and comps[test] in values) == negate:
                    continue
                if component < len(comps):
                    value = comps[component]
                    if value:
                        return value
        return ""

    return pick


def _get(elements: list[list[str]], place: Place) -> str:
    element, component = place
    if element >= len(elements):
        return ""
    comps = elements[element]
    index = component or 0
    return comps[index] if index < len(comps) else ""


def compile_path(text: str, version: str) -> SegmentPath:
    """Compile ``text`` for directory ``version`` (``D96A``); PathError says what is wrong."""
    if not isinstance(text, str) or not text:
        raise PathError(f"a path is a string like 'BGM/1004', not {text!r}")
    parts = text.split("/")
    head = _SEGMENT.fullmatch(parts[0])
    if not head:
        raise PathError(f"path {text!r}: {parts[0]!r} is not a segment tag (three upper-case "
                        "letters or digits, optionally with [conditions])")
    tag = head.group("tag")
    if not is_known_segment(version, tag):
        raise PathError(f"path {text!r}: {tag} is not a segment of the {version} directory")
    spec = segment_spec(version, tag)
    if len(parts) not in (2, 3):
        raise PathError(f"path {text!r}: expected SEGMENT/ELEMENT or SEGMENT/ELEMENT/COMPONENT")
    conditions = tuple(_conditions(text, head.group("conds"),
                                   lambda r: _places(text, tag, version, spec, r)))
    step = _STEP.fullmatch(parts[1])
    if not step:
        raise PathError(f"path {text!r}: {parts[1]!r} is not a data element number, composite "
                        "or position")
    ref, step_conds = step.group("ref"), step.group("conds")
    if len(parts) == 2:
        if step_conds is not None:
            raise PathError(f"path {text!r}: a condition on {ref} needs a component after it "
                            f"({ref}[...]/COMPONENT)")
        places = _places(text, tag, version, spec, ref)
        candidates = tuple(Candidate(e, c, _is_whole_composite(spec, e, c)) for e, c in places)
    else:
        candidates = _composite_candidates(text, tag, version, spec, ref, step_conds, parts[2])
    format_place: tuple[Place, ...] = ()
    if spec is not None:
        format_place = tuple(locate(version, tag, "2379"))
    return SegmentPath(text, tag, conditions, candidates, format_place)


def _is_whole_composite(spec: tuple[ElementSpec, ...] | None, element: int,
                        component: int | None) -> bool:
    if component is not None:
        return False
    return spec is not None and element < len(spec) and spec[element].components is not None


def _places(text: str, tag: str, version: str, spec: tuple[ElementSpec, ...] | None,
            ref: str) -> list[Place]:
    if ref[0].isdigit() and len(ref) <= 5 and (len(ref) <= 2 or "." in ref):
        element, _, component = ref.partition(".")
        return [(int(element) - 1, int(component) - 1 if component else None)]
    if spec is None:
        raise PathError(f"path {text!r}: edigw's directory does not table {tag}; address its "
                        "elements by position (e.g. 2.1)")
    places = locate(version, tag, ref)
    if not places:
        raise PathError(f"path {text!r}: {tag} has no data element {ref} in {version}")
    return places


def _composite_candidates(text: str, tag: str, version: str,
                          spec: tuple[ElementSpec, ...] | None, ref: str,
                          conds: str | None, component_ref: str) -> tuple[Candidate, ...]:
    if not _STEP.fullmatch(component_ref) or "[" in component_ref:
        raise PathError(f"path {text!r}: {component_ref!r} is not a component number or position")
    if ref[0].isdigit() and len(ref) <= 2:
        elements = [int(ref) - 1]
        components: tuple[str, ...] | None = None
        if spec is not None and elements[0] < len(spec):
            components = spec[elements[0]].components
    else:
        if spec is None:
            raise PathError(f"path {text!r}: edigw's directory does not table {tag}; address "
                            "its elements by position")
        elements = [i for i, e in enumerate(spec) if e.code == ref]
        if not elements:
            raise PathError(f"path {text!r}: {tag} has no composite {ref} in {version}")
        components = spec[elements[0]].components
        if components is None:
            raise PathError(f"path {text!r}: {ref} is a simple data element of {tag}, "
                            "it has no components")

    def inner(r: str) -> list[Place]:
        if r[0].isdigit() and len(r) <= 2:
            return [(0, int(r) - 1)]
        if components is None or r not in components:
            raise PathError(f"path {text!r}: composite {ref} of {tag} has no component {r} "
                            f"in {version}")
        return [(0, j) for j, c in enumerate(components) if c == r]

    conditions = tuple(_conditions(text, conds, inner))
    return tuple(Candidate(e, c, False, conditions)
                 for e in elements for _z, c in inner(component_ref))


def _conditions(text: str, conds: str | None,
                resolve: Callable[[str], list[Place]]) -> list[Condition]:
    if conds is None:
        return []
    result = []
    for part in conds.split(","):
        m = _COND.fullmatch(part.strip())
        if not m:
            raise PathError(f"path {text!r}: condition {part!r} is not REF=VALUE[|VALUE…] "
                            "or REF!=VALUE")
        places = resolve(m.group("ref"))
        values = frozenset(v.strip() for v in m.group("values").split("|"))
        result.append(Condition(tuple(places), values, m.group("op") == "!="))
    return result
