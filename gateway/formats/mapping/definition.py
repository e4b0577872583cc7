"""Mapping definitions: compile a (merged) YAML document into rules, checking everything.

Loading is strict: an unknown key, an unknown canonical field, a malformed path, a data
element its segment does not have or an unknown type stops with the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.formats.mapping.convert import DATE_FORMATS
from gateway.formats.mapping.frontend import GATEWAY_FIELDS, DefinitionCompiler, Where
from gateway.formats.mapping.modelinfo import is_list, model_of
from gateway.formats.mapping.paths import Condition, PathError, SegmentPath, compile_path

TOP_KEYS = frozenset({"id", "description", "document", "standard", "match", "groups",
                      "fields", "extends"})
MATCH_KEYS = frozenset({"message", "version", "release", "agency", "association"})
GROUP_KEYS = frozenset({"trigger", "contains", "groups"})
FIELD_KEYS = frozenset({"path", "type", "required", "all", "codes", "format"})
GROUP_RULE_KEYS = frozenset({"group", "fields", "each", "required"})


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One canonical field from the first path (of several alternatives) that has a value."""

    name: str
    paths: tuple[SegmentPath, ...]
    type: str = "text"
    required: bool = False
    all: bool = False
    codes: dict[str, str] | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A canonical object (``fields``) or list (``each``) read from segment group instances.

    Its ``fields`` may hold group rules of their own, read from the sub-groups of each
    instance (an item's prices, each PRI group with its own basis quantity and dates).
    """

    name: str
    group: str
    conditions: tuple[Condition, ...]
    fields: tuple[FieldRule | GroupRule, ...]
    each: bool
    required: bool = False


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A segment group: starts at ``trigger``, goes on while segments are in ``contains``.

    ``groups`` are its sub-groups (PRI-CUX-APR-RNG-DTM inside LIN): their segments belong to
    the sub-group's instance, not to this group's own segments.
    """

    name: str
    trigger: str
    contains: frozenset[str]
    groups: dict[str, GroupDef] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Match:
    """Which messages a mapping claims (UNH S009); ``associations`` None means any."""

    message: str
    version: str
    release: str
    agency: str | None
    associations: frozenset[str | None] | None

    @property
    def directory(self) -> str:
        return f"{self.version}{self.release}".upper()

    def describe(self) -> str:
        return f"{self.message} {self.version}:{self.release}:{self.agency or ''}"


@dataclass(slots=True)
class Mapping:
    """A loaded, checked mapping: what it matches, its groups and its rules."""

    id: str
    document: str
    standard: str
    match: Match
    #: False for an overlay that inherits its match: it is chosen by id, never by match.
    auto_match: bool
    groups: dict[str, GroupDef]
    rules: tuple[FieldRule | GroupRule, ...]
    file: str
    extends: str | None = None
    description: str | None = None
    model: type[BaseModel] = field(default=BaseModel, repr=False)
    #: The rules compiled into functions, made by ``apply`` the first time it runs them.
    plan: Any = field(default=None, init=False, repr=False, compare=False)
    #: Mappings of other formats (XML, CSV) have their own classes; see registry.COMPILERS.
    format: str = field(default="edifact", init=False)
    sample_suffix: str = field(default=".edi", init=False)

    def produce(self, sample: Path) -> list[dict[str, Any]]:
        """The canonical JSON documents of the interchange ``sample`` (``samples``)."""
        from gateway.formats.mapping.samples import produce_edifact  # it maps with this class

        return produce_edifact(self, sample)


class _Compiler(DefinitionCompiler):
    """The EDIFACT compiler: segment groups and segment paths (``paths``)."""

    def compile(self) -> Mapping:
        data = self.data
        self.check_keys(data, TOP_KEYS)
        self.require("id", "document", "match", "fields")
        document, model = self.canonical_document()
        match = self.match(data["match"])
        groups = self.groups(data.get("groups") or {})
        fields = self.fields_spec()
        rules: list[FieldRule | GroupRule] = []
        for name, spec in fields.items():
            if spec is None:
                continue
            rules.append(self.rule(model, name, spec, match.directory, groups))
        return Mapping(id=str(data["id"]), document=document,
                       standard=str(data.get("standard") or "UN/EDIFACT"), match=match,
                       auto_match=self.own_match, groups=groups,
                       rules=tuple(rules), file=self.file, extends=data.get("extends"),
                       description=data.get("description"), model=model)

    def match(self, spec: Any) -> Match:
        if not isinstance(spec, dict):
            raise self.fail("'match' is a mapping (message, version, release …)", "match")
        for key in spec:
            if key not in MATCH_KEYS:
                raise self.fail(f"unknown key {key!r} in match", "match", key)
        for key in ("message", "version", "release"):
            if not spec.get(key):
                raise self.fail(f"match needs {key!r}", "match")
        assoc = spec.get("association", "*any*")
        associations: frozenset[str | None] | None
        if assoc == "*any*":
            associations = None
        elif isinstance(assoc, list):
            associations = frozenset(assoc)
        else:
            associations = frozenset([assoc])
        return Match(spec["message"], spec["version"], spec["release"], spec.get("agency"),
                     associations)

    def groups(self, spec: Any, at: tuple[str, ...] = ("groups",),
               outer: tuple[str, ...] = ()) -> dict[str, GroupDef]:
        """Group definitions at ``at``; ``outer`` are the triggers of the enclosing groups."""
        if not isinstance(spec, dict):
            raise self.fail("'groups' is a mapping of name: {trigger, contains[, groups]}",
                            *at)
        result: dict[str, GroupDef] = {}
        triggers: dict[str, str] = {}
        for name, group in spec.items():
            where = (*at, name)
            if not isinstance(group, dict) or "trigger" not in group:
                raise self.fail(f"group {name!r} needs a trigger segment", *where)
            self.check_keys(group, GROUP_KEYS, *where, within=f" in group {name!r}")
            contains = group.get("contains") or []
            if not isinstance(contains, list):
                raise self.fail(f"group {name!r}: 'contains' is a list of segment tags",
                                *where, "contains")
            for tag in [group["trigger"], *contains]:
                if not (isinstance(tag, str) and len(tag) == 3 and tag.isupper()):
                    raise self.fail(f"group {name!r}: {tag!r} is not a segment tag", *where)
            trigger = group["trigger"]
            if trigger in triggers:
                raise self.fail(f"groups {triggers[trigger]!r} and {name!r} both start at "
                                f"{trigger}; the second would never get a segment", *where)
            triggers[trigger] = name
            if trigger in outer:
                # The enclosing group's next trigger would start a sub-instance instead.
                raise self.fail(f"sub-group {name!r}: its trigger {trigger} is already the "
                                "trigger of an enclosing group", *where, "trigger")
            subs: dict[str, GroupDef] = {}
            if group.get("groups") is not None:
                subs = self.groups(group["groups"], (*where, "groups"), (*outer, trigger))
            result[name] = GroupDef(name, trigger, frozenset(contains), subs)
        return result

    def rule(self, model: type[BaseModel], name: str, spec: Any, version: str,
             groups: dict[str, GroupDef]) -> FieldRule | GroupRule:
        at = ("fields", name)
        annotation = self.target(model, name, at)
        if isinstance(spec, dict) and "group" in spec:
            return self.group_rule(name, spec, annotation, version, groups, at)
        return self.field_rule(name, spec, annotation, version, at)

    def target(self, model: type[BaseModel], dotted: str, at: tuple[str, ...]) -> Any:
        current: Any = model
        annotation: Any = None
        for part in dotted.split("."):
            inner = model_of(current) if current is not model else model
            if inner is None or part not in inner.model_fields or (
                    inner is model and part in GATEWAY_FIELDS):
                known = sorted(set(inner.model_fields) - GATEWAY_FIELDS) if inner else []
                raise self.not_a_field(dotted, _model_name(inner), known, *at)
            annotation = inner.model_fields[part].annotation
            current = annotation
        return annotation

    def field_rule(self, name: str, spec: Any, annotation: Any, version: str,
                   at: tuple[str, ...]) -> FieldRule:
        if model_of(annotation) is not None:
            raise self.fail(f"{name!r} is an object; map it from a group with 'group' and "
                            "'fields' (or 'each' for a list)", *at)
        if isinstance(spec, (str, list)):
            spec = {"path": spec}
        if not isinstance(spec, dict):
            raise self.fail(f"rule for {name!r} is a path, a list of paths or a mapping", *at)
        self.check_keys(spec, FIELD_KEYS, *at, within=f" in rule {name!r}")
        raw_paths = spec.get("path")
        if raw_paths is None:
            raise self.fail(f"rule {name!r} has no path", *at)
        if isinstance(raw_paths, str):
            raw_paths = [raw_paths]
        paths = []
        for i, text in enumerate(raw_paths):
            try:
                paths.append(compile_path(text, version))
            except PathError as exc:
                raise self.fail(str(exc), *at, "path", str(i)) from exc
        kind = self.value_type(spec, name, *at)
        fmt = spec.get("format")
        if fmt is not None and fmt not in DATE_FORMATS:
            raise self.fail(f"unknown date format {fmt!r} (2379)", *at, "format")
        codes = self.code_list(spec, name, *at)
        many = bool(spec.get("all")) or is_list(annotation)
        return FieldRule(name, tuple(paths), kind, bool(spec.get("required")), many, codes, fmt)

    def group_rule(self, name: str, spec: dict[str, Any], annotation: Any, version: str,
                   groups: dict[str, GroupDef], at: tuple[str, ...]) -> GroupRule:
        self.check_keys(spec, GROUP_RULE_KEYS, *at, within=f" in group rule {name!r}")
        selector = str(spec["group"])
        group_name, _, conds = selector.partition("[")
        if group_name not in groups:
            raise self.fail(f"rule {name!r}: unknown group {group_name!r} (defined here: "
                            f"{', '.join(sorted(groups)) or 'none'}; a sub-group is mapped "
                            "inside the rule of its enclosing group)", *at, "group")
        conditions: tuple[Condition, ...] = ()
        if conds:
            trigger = groups[group_name].trigger
            try:
                conditions = compile_path(f"{trigger}[{conds[:-1]}]/1",
                                          version).conditions
            except PathError as exc:
                raise self.fail(f"rule {name!r}: group condition {selector!r}: {exc}",
                                *at, "group") from exc
        each = "each" in spec
        if each == ("fields" in spec):
            raise self.fail(f"group rule {name!r} needs either 'fields' (one object) or "
                            "'each' (a list)", *at)
        inner = model_of(annotation)
        if inner is None or each != is_list(annotation):
            shape = "a list; use 'each'" if is_list(annotation) else "not a list; use 'fields'"
            raise self.fail(f"canonical {name!r} is {shape}", *at)
        key = "each" if each else "fields"
        subspecs = spec[key]
        if not isinstance(subspecs, dict):
            raise self.fail(f"'{key}' of {name!r} maps canonical fields to rules", *at, key)
        rules: list[FieldRule | GroupRule] = []
        for sub, subspec in subspecs.items():
            if subspec is None:
                continue
            sub_at = (*at, key, sub)
            if sub not in inner.model_fields:
                raise self.not_a_field(sub, inner.__name__, inner.model_fields, *sub_at)
            annotation = inner.model_fields[sub].annotation
            if isinstance(subspec, dict) and "group" in subspec:
                # A list or object inside the instance, read from its sub-groups only.
                rules.append(self.group_rule(sub, subspec, annotation, version,
                                             groups[group_name].groups, sub_at))
            else:
                rules.append(self.field_rule(sub, subspec, annotation, version, sub_at))
        return GroupRule(name, group_name, conditions, tuple(rules), each,
                         bool(spec.get("required")))


def compile_mapping(data: dict[str, Any], where: Where, file: str, *,
                    own_match: bool = True) -> Mapping:
    """Compile a merged mapping document; MappingDefinitionError names file and line.

    ``own_match`` is False for an overlay that inherits ``match``: it is chosen by id only.
    """
    return _Compiler(data, where, file, own_match).compile()


def _model_name(model: type[BaseModel] | None) -> str:
    return model.__name__ if model else "value"
