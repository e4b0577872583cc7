"""The set of mappings under ``mappings/``: loading with ``extends`` overlays, and choosing.

An overlay (``extends: eancom-orders-d96a``) replaces top-level keys and fields of its base;
a field set to ``null`` is removed; a group rule without ``group`` (only ``each`` or
``fields``) is merged into the base rule field by field, nested group rules included. An overlay that does not declare
its own ``match`` is chosen only by id (from the partner profile), never by match.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.errors import MappingDefinitionError, MappingError
from gateway.formats.edifact.model import Message
from gateway.formats.mapping.definition import Mapping, compile_mapping
from gateway.formats.mapping.frontend import Compile, CompiledMapping, Where
from gateway.formats.mapping.yamlsrc import Lines, load_with_lines

#: Compilers of the mapping files of other formats, by their top-level ``format`` key
#: ("module:function"), imported when a mapping of that format is loaded. Without
#: ``format`` a mapping is EDIFACT (``compile_mapping``). Each is a ``frontend.Compile``:
#: ``(data, where, file, own_match)`` in, a ``frontend.CompiledMapping`` out, which also has
#: ``produce(sample: Path) -> list[dict]`` (the canonical JSON documents of its sample, for
#: partner ``sample``); loading errors are MappingDefinitionError.
COMPILERS = {
    "xml": "gateway.formats.xml.mapping:compile_xml_mapping",
    "csv": "gateway.formats.csv.mapping:compile_csv_mapping",
}


def _compiler(fmt: object, file: str, line: int | None) -> Compile:
    if fmt in (None, "edifact"):
        return compile_mapping
    target = COMPILERS.get(fmt) if isinstance(fmt, str) else None
    if target is None:
        raise MappingDefinitionError(
            f"unknown format {fmt!r} (known: edifact, {', '.join(sorted(COMPILERS))})",
            file=file, line=line)
    module, function = target.split(":")
    try:
        compile_: Compile = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise MappingDefinitionError(f"format {fmt!r} is not available: {exc}", file=file,
                                     line=line) from exc
    return compile_


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """A mapping file left out of the set: the error naming its file, line and reason, and
    the id of its mapping when the file got as far as naming one."""

    error: MappingDefinitionError
    mapping_id: str | None = None

    @property
    def file(self) -> str:
        return self.error.file

    @property
    def line(self) -> int | None:
        return self.error.line

    @property
    def reason(self) -> str:
        return self.error.reason

    def __str__(self) -> str:
        return str(self.error)


def _ident(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class _Raw:
    id: str
    data: dict[str, Any]
    lines: Lines
    file: str


class MappingSet:
    """Every mapping found under a folder, by id."""

    def __init__(self, mappings: dict[str, CompiledMapping],
                 problems: list[MappingProblem] | None = None) -> None:
        self.mappings = mappings
        #: The files left out, each with why (``check-config``, ``channels``, the console
        #: and ``serve``'s start report them).
        self.problems: list[MappingProblem] = list(problems or [])
        #: The ids of the mappings left out, and why: a partner naming one is disabled.
        self.broken: dict[str, MappingProblem] = {
            p.mapping_id: p for p in self.problems if p.mapping_id is not None}

    @classmethod
    def load(cls, root: Path, *, strict: bool = False) -> MappingSet:
        """Load and check every ``*.yaml`` mapping under ``root`` (recursively), except
        the outbound mappings of ``root/outbound`` (``gateway.formats.render``).

        A file that cannot be loaded or checked is left out alone and recorded in
        ``problems`` (its file, line and reason; ``broken`` by id when its id is known):
        the others load. With ``strict``, the first problem is raised instead."""
        raws: dict[str, _Raw] = {}
        problems: list[MappingProblem] = []
        for path in sorted(Path(root).rglob("*.yaml")):
            if "outbound" in path.relative_to(root).parts[:1]:
                continue  # outbound mappings: gateway.formats.render
            ident: object = None
            try:
                data, lines = load_with_lines(path)
                ident = data.get("id")
                if not isinstance(ident, str) or not ident:
                    ident = None
                    raise MappingDefinitionError("'id' is required", file=str(path),
                                                 line=lines.get(("id",), 1))
                if ident in raws:
                    raise MappingDefinitionError(f"id {ident!r} is already used by "
                                                 f"{raws[ident].file}", file=str(path),
                                                 line=lines.get(("id",)))
            except MappingDefinitionError as exc:
                # a second file with a taken id does not disable the first one's mapping
                taken = isinstance(ident, str) and ident in raws
                problems.append(MappingProblem(exc, None if taken else _ident(ident)))
                continue
            raws[ident] = _Raw(ident, data, lines, str(path))
        mappings: dict[str, CompiledMapping] = {}
        for ident, raw in raws.items():
            try:
                mappings[ident] = _compile(raw, raws)
            except MappingDefinitionError as exc:
                problems.append(MappingProblem(exc, ident))
        if strict and problems:
            raise problems[0].error
        return cls(mappings, problems)

    def disabled(self) -> dict[str, str]:
        """The ids of the mappings left out, each with its problem (file, line, reason)."""
        return {ident: str(problem) for ident, problem in self.broken.items()}

    def of_format(self, fmt: str) -> list[Any]:
        """The mappings of one format (``edifact``, ``xml``, ``csv``)."""
        return [m for m in self.mappings.values() if getattr(m, "format", "edifact") == fmt]

    def __iter__(self) -> Iterator[CompiledMapping]:
        return iter(self.mappings.values())

    def __len__(self) -> int:
        return len(self.mappings)

    def get(self, mapping_id: str) -> CompiledMapping:
        """The mapping with this id; MappingError when there is none."""
        try:
            return self.mappings[mapping_id]
        except KeyError:
            broken = self.broken.get(mapping_id)
            if broken is not None:
                raise MappingError(f"mapping {mapping_id!r} is disabled: {broken}") from None
            raise MappingError(f"no mapping with id {mapping_id!r} (known: "
                               f"{', '.join(sorted(self.mappings))})") from None

    def find(self, message: Message, *, mapping_id: str | None = None) -> Mapping:
        """The mapping for ``message``: by id when the partner names one, else by match."""
        if mapping_id is not None:
            mapping = self.get(mapping_id)
            if not isinstance(mapping, Mapping):  # partner profiles name mappings by format
                raise MappingError(f"mapping {mapping_id!r} reads {mapping.format}, not "
                                   f"{message.describe()} messages")
            m = mapping.match
            if (m.message, m.directory) != (message.type, message.directory):
                raise MappingError(f"mapping {mapping_id!r} is for {m.describe()}, but message "
                                   f"{message.ref} is {message.describe()}")
            return mapping
        found = [m for m in self.mappings.values()
                 if isinstance(m, Mapping) and m.auto_match and _matches(m, message)]
        if not found:
            raise MappingError(f"no mapping for {message.describe()} (message {message.ref}); "
                               "add one under mappings/ or name one in the partner profile")
        if len(found) > 1:
            raise MappingError(f"several mappings claim {message.describe()}: "
                               f"{', '.join(sorted(m.id for m in found))}")
        return found[0]


def _compile(raw: _Raw, raws: dict[str, _Raw]) -> CompiledMapping:
    """The mapping of ``raw``, merged with its bases. Its error always names ``raw``'s own
    file: a fault found in a key it inherits is the overlay's to fix (or its base's, named
    beside it), and the base loads or fails on its own."""
    try:
        merged, where = _resolve(raw, raws, ())
        data = dict(merged)  # never the base's own dict: it is compiled on its own too
        fmt = data.pop("format", None)
        compile_ = _compiler(fmt, raw.file, raw.lines.get(("format",)))
        return compile_(data, where, raw.file, own_match="match" in raw.data)
    except MappingDefinitionError as exc:
        if exc.file == raw.file:
            raise
        base = f"{exc.file}:{exc.line if exc.line is not None else '?'}"
        raise MappingDefinitionError(
            f"{exc.reason} (in {base}, inherited through 'extends: {raw.data.get('extends')}')",
            file=raw.file, line=raw.lines.get(("extends",))) from exc


def _matches(mapping: Mapping, message: Message) -> bool:
    m = mapping.match
    if (m.message, m.version, m.release) != (message.type, message.version, message.release):
        return False
    if m.agency and m.agency != message.agency:
        return False
    return m.associations is None or message.association in m.associations


def _resolve(raw: _Raw, raws: dict[str, _Raw], seen: tuple[str, ...]) -> tuple[dict[str, Any], Where]:
    own_where: Where = {path: (raw.file, line) for path, line in raw.lines.items()}
    base_id = raw.data.get("extends")
    if base_id is None:
        return raw.data, own_where
    if base_id in seen or base_id == raw.id:
        raise MappingDefinitionError(f"'extends' makes a cycle: {' -> '.join([*seen, raw.id])}",
                                     file=raw.file, line=raw.lines.get(("extends",)))
    if base_id not in raws:
        raise MappingDefinitionError(f"extends unknown mapping {base_id!r}", file=raw.file,
                                     line=raw.lines.get(("extends",)))
    base, where = _resolve(raws[base_id], raws, (*seen, raw.id))
    data = {k: v for k, v in base.items() if k != "extends"}
    where = dict(where)
    for key, value in raw.data.items():
        if key == "fields" and isinstance(value, dict):
            data["fields"] = _merge_fields(dict(base.get("fields") or {}), value)
        elif key == "groups" and isinstance(value, dict):
            data["groups"] = {**(base.get("groups") or {}), **value}
        else:
            data[key] = value
    where.update(own_where)
    return data, where


def _merge_fields(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay``'s rules over ``base``'s: None removes, a group rule without ``group``
    is merged into the base's group rule (at any depth: an item's prices too)."""
    for name, spec in overlay.items():
        old = base.get(name)
        if spec is None:
            base.pop(name, None)
        elif (isinstance(spec, dict) and "group" not in spec and isinstance(old, dict)
              and "group" in old and ({"each", "fields"} & spec.keys())):
            key = "each" if "each" in old else "fields"
            merged = dict(old)
            merged[key] = _merge_fields(dict(old.get(key) or {}), spec.get(key) or {})
            base[name] = merged
        else:
            base[name] = spec
    return base
