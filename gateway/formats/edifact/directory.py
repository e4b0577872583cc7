"""The segment directory: which data elements a segment holds, per directory version.

Trade segments come from the UN/EDIFACT segment directories (EDSD/TRSD), generated once into
``_directory_data`` by ``_gen_directory``. Service segments are from ISO 9735 (syntax 4, a
superset of syntax 3 for the elements edigw reads). Mapping paths are resolved through this
table when a mapping is loaded, so ``BGM/1004`` finds the document number both where D96A has
it (a simple element) and where D01B has it (component of C106).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.formats.edifact._directory_data import ALL_TAGS, SEGMENTS


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """One element position of a segment: a simple element or a composite with components."""

    code: str
    components: tuple[str, ...] | None = None


#: Service segments (ISO 9735-1:2002 and earlier); the same for every directory version.
_SERVICE: dict[str, tuple[tuple[str, tuple[str, ...] | None], ...]] = {
    "UNB": (
        ("S001", ("0001", "0002", "0080", "0133")),
        ("S002", ("0004", "0007", "0008", "0042")),
        ("S003", ("0010", "0007", "0014", "0046")),
        ("S004", ("0017", "0019")),
        ("0020", None),
        ("S005", ("0022", "0025")),
        ("0026", None),
        ("0029", None),
        ("0031", None),
        ("0032", None),
        ("0035", None),
    ),
    "UNH": (
        ("0062", None),
        ("S009", ("0065", "0052", "0054", "0051", "0057", "0110", "0113")),
        ("0068", None),
        ("S010", ("0070", "0073")),
        ("S016", ("0115", "0116", "0118", "0051")),
        ("S017", ("0121", "0122", "0124", "0051")),
        ("S018", ("0127", "0128", "0130", "0051")),
    ),
    "UNT": (("0074", None), ("0062", None)),
    "UNZ": (("0036", None), ("0020", None)),
    "UNS": (("0081", None),),
}

SERVICE_TAGS = frozenset(_SERVICE) | {"UNA", "UNG", "UNE"}
VERSIONS = tuple(SEGMENTS)

_cache: dict[tuple[str, str], tuple[ElementSpec, ...] | None] = {}


def segment_spec(version: str, tag: str) -> tuple[ElementSpec, ...] | None:
    """The element positions of ``tag`` in ``version`` (``D96A``), or None when not tabled."""
    key = (version, tag)
    if key not in _cache:
        raw = _SERVICE.get(tag) or SEGMENTS.get(version, {}).get(tag)
        _cache[key] = tuple(ElementSpec(c, comps) for c, comps in raw) if raw else None
    return _cache[key]


def is_known_segment(version: str, tag: str) -> bool:
    """True when ``tag`` is a segment of the ``version`` directory (or a service segment)."""
    if tag in SERVICE_TAGS:
        return True
    tags = ALL_TAGS.get(version)
    return tags is None or tag in tags


_known: dict[str, frozenset[str] | None] = {}


def known_segments(version: str) -> frozenset[str] | None:
    """Every tag ``is_known_segment`` accepts for ``version``; None when it accepts any."""
    if version not in _known:
        tags = ALL_TAGS.get(version)
        _known[version] = None if tags is None else tags | SERVICE_TAGS
    return _known[version]


def locate(version: str, tag: str, code: str) -> list[tuple[int, int | None]]:
    """Where data element or composite ``code`` sits in ``tag``: (element, component) indexes.

    Indexes are 0-based; component is None for a simple element or a whole composite. A
    composite that repeats (PIA C212 x5) or a component that repeats (FTX C108 4440 x5) gives
    several places, in order.
    """
    spec = segment_spec(version, tag)
    if spec is None:
        return []
    places: list[tuple[int, int | None]] = []
    for i, element in enumerate(spec):
        if element.code == code:
            places.append((i, None))
        elif element.components:
            places.extend((i, j) for j, c in enumerate(element.components) if c == code)
    return places
