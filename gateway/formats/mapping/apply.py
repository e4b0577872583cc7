"""Apply a mapping to one EDIFACT message: a validated canonical document plus warnings."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.core.errors import EdifactSyntaxError, MappingError
from gateway.core.gcpause import gc_paused
from gateway.core.ids import message_id
from gateway.formats.edifact.directory import known_segments
from gateway.formats.edifact.model import Interchange, Message, Segment
from gateway.formats.mapping.convert import (
    ConversionError,
    known_decimals,
    known_glns,
    known_gtins,
    to_date,
    to_decimal,
    to_gln,
    to_gtin,
)
from gateway.formats.mapping.definition import FieldRule, GroupDef, GroupRule, Mapping
from gateway.formats.mapping.paths import SegmentPath


@dataclass(slots=True)
class MappedMessage:
    """One canonical document made from one EDIFACT message, with what was odd about it.

    The reader turns it into the pipeline's ``gateway.core.ports.MappedDocument`` (the one
    document type readers return); this form keeps the message and the mapping used, which
    samples, tests and error reports need."""

    document: BaseModel
    document_type: str
    message: Message
    mapping_id: str
    warnings: list[str] = field(default_factory=list)


_TAG = attrgetter("tag")

#: A scope's segments by tag: the header (outside groups) or one group instance.
Tagged = dict[str, list[Segment]]
#: Who is being mapped, for messages: ``ORDERS message 1``, or for one instance of an
#: ``each`` group (enclosing context, rule name, number, trigger segment): a price of an item
#: nests two deep. Text is made only when an error or a warning needs it.
Context = str | tuple["Context", str, int, Segment]
#: A compiled field rule: (scope, run, context) -> value, or None when there is none.
Getter = Callable[[Tagged, "_Run", Context], Any]


def _context_text(context: Context) -> str:
    if isinstance(context, str):
        return context
    base, name, number, trigger = context
    return f"{_context_text(base)}, {name} {number} (segment {trigger.index} {trigger.tag})"


class _Instance:
    """One instance of a segment group: its trigger segment, its own segments by tag and,
    when its group has sub-groups, their instances by sub-group name."""

    __slots__ = ("trigger", "tagged", "children")

    def __init__(self, trigger: Segment,
                 children: dict[str, list[_Instance]] | None = None) -> None:
        self.trigger = trigger
        self.tagged: Tagged = {trigger.tag: [trigger]}
        self.children = children


def partition(segments: list[Segment], groups: dict[str, GroupDef]
              ) -> tuple[Tagged, dict[str, list[_Instance]]]:
    """Split a message body into the header scope and the instances of each group.

    A group instance starts at its trigger and goes on while segments are in its
    ``contains``; the next trigger of the same group starts a new instance.
    """
    triggers = {g.trigger: g for g in groups.values()}
    header: Tagged = {}
    instances: dict[str, list[_Instance]] = {name: [] for name in groups}
    trigger = ""
    contains: frozenset[str] = frozenset()
    tagged: Tagged | None = None
    for segment in segments:
        tag = segment.tag
        if tagged is not None and tag != trigger and tag in contains:
            same = tagged.get(tag)
            if same is None:
                tagged[tag] = [segment]
            else:
                same.append(segment)
            continue
        group = triggers.get(tag)
        if group is not None:
            instance = _Instance(segment)
            instances[group.name].append(instance)
            trigger, contains, tagged = group.trigger, group.contains, instance.tagged
        else:
            tagged = None
            same = header.get(tag)
            if same is None:
                header[tag] = [segment]
            else:
                same.append(segment)
    return header, instances


class _Levels:
    """A mapping's groups compiled for ``partition_nested``: the top-level groups by trigger,
    each with its sub-groups by trigger, and so on down."""

    __slots__ = ("top", "names")

    def __init__(self, groups: dict[str, GroupDef]) -> None:
        self.top = self._table(groups)
        self.names = tuple(groups)

    @classmethod
    def _table(cls, groups: dict[str, GroupDef]) -> dict[str, _Level]:
        return {g.trigger: _Level(g, cls._table(g.groups)) for g in groups.values()}


class _Level:
    """One group in ``_Levels``: its sub-groups by trigger and the tags it contains."""

    __slots__ = ("group", "subs", "contains", "names")

    def __init__(self, group: GroupDef, subs: dict[str, _Level]) -> None:
        self.group = group
        self.subs = subs
        # The group's own trigger starts a sibling, never joins the current instance.
        self.contains = group.contains - {group.trigger}
        self.names = tuple(group.groups)

    def instance(self, segment: Segment) -> _Instance:
        # Sub-group lists are made when a first sub-instance comes: most items have a PRI
        # group but not the eight others.
        return _Instance(segment, {} if self.names else None)


def partition_nested(segments: list[Segment], levels: _Levels
                     ) -> tuple[Tagged, dict[str, list[_Instance]]]:
    """``partition`` for groups with sub-groups (LIN holding PRI-CUX-APR-RNG-DTM).

    The innermost open instance is asked first: a trigger of one of its sub-groups opens a
    sub-instance, a segment it contains joins it; otherwise it is closed and its enclosing
    instance is asked, and so on out to the top, where a trigger opens a new top-level
    instance and any other segment is a header segment. Each segment lands in exactly one
    scope, so a DTM of a price is not also a DTM of its item.
    """
    top = levels.top
    header: Tagged = {}
    instances: dict[str, list[_Instance]] = {name: [] for name in levels.names}
    stack: list[tuple[_Level, _Instance]] = []
    for segment in segments:
        tag = segment.tag
        depth = len(stack)
        while depth:
            level, instance = stack[depth - 1]
            sub = level.subs.get(tag)
            if sub is not None:
                child = sub.instance(segment)
                children = instance.children
                assert children is not None  # a level with sub-groups makes its dict
                same_group = children.get(sub.group.name)
                if same_group is None:
                    children[sub.group.name] = [child]
                else:
                    same_group.append(child)
                del stack[depth:]
                stack.append((sub, child))
                break
            if tag in level.contains:
                del stack[depth:]
                same = instance.tagged.get(tag)
                if same is None:
                    instance.tagged[tag] = [segment]
                else:
                    same.append(segment)
                break
            depth -= 1
        else:
            stack.clear()
            opened = top.get(tag)
            if opened is not None:
                instance = opened.instance(segment)
                instances[opened.group.name].append(instance)
                stack.append((opened, instance))
            else:
                same = header.get(tag)
                if same is None:
                    header[tag] = [segment]
                else:
                    same.append(segment)
    return header, instances


class _Run:
    """One message being mapped: what conversions need, and the warnings so far."""

    __slots__ = ("interchange", "message", "warnings", "unknown_codes")

    def __init__(self, interchange: Interchange, message: Message) -> None:
        self.interchange = interchange
        self.message = message
        self.warnings: list[str] = []
        #: (rule, code) -> (index of its warning, times seen): an unknown code repeated on
        #: every item of a 100,000-item price list gives one warning with a count.
        self.unknown_codes: dict[tuple[str, str], tuple[int, int]] = {}

    def where(self, segment: Segment | None, element: str | None = None) -> Any:
        return self.message.source.position(segment or self.message.segments[0],
                                            element=element, message_ref=self.message.ref)

    def where_path(self, segment: Segment | None, path: SegmentPath,
                   raw: str | None = None) -> Any:
        """The position of ``path`` in ``segment``, with the element and component
        positions a CONTRL UCD needs: of the place that holds ``raw``, else the first."""
        if segment is None:
            return self.where(None, path.text)
        chosen = path.candidates[0]
        if raw is not None:
            for cand in path.candidates:
                if segment.get(cand.element, cand.component or 0) == raw:
                    chosen = cand
                    break
        return self.message.source.position(
            segment, element=path.text, message_ref=self.message.ref,
            element_pos=chosen.element + 1,
            component_pos=None if chosen.component is None else chosen.component + 1)

    def missing(self, rule: FieldRule, scope: Tagged, context: Context) -> MappingError:
        """The error for a required field that has no value in ``scope``."""
        first = rule.paths[0]
        seen = scope.get(first.tag)
        label = rule.name.rsplit(".", 1)[-1].replace("_", " ")
        return MappingError(
            f"{_context_text(context)} has no {label} ({first.text.replace('/', ' ')})",
            field=rule.name, position=self.where_path(seen[0] if seen else None, first))

    def convert(self, rule: FieldRule, path: SegmentPath, segment: Segment, raw: str,
                context: Context) -> Any:
        value: dt.date | str | None  # a date (or date-time), or a GTIN/GLN
        try:
            if rule.codes is not None:
                if raw in rule.codes:
                    return rule.codes[raw]
                self.unknown_code(rule, raw, context)
                return raw
            if rule.type == "text":
                return raw
            if rule.type == "decimal":
                return to_decimal(raw, self.interchange.decimal_mark)
            if rule.type in ("date", "date_end"):
                fmt = rule.format
                for place in path.format_place:
                    fmt = segment.get(place[0], place[1] or 0) or fmt
                value, warning = to_date(raw, fmt, end=rule.type == "date_end")
            elif rule.type == "gtin":
                value, warning = to_gtin(raw)
            else:  # gln
                value, warning = to_gln(raw)
        except ConversionError as exc:
            raise MappingError(f"{_context_text(context)}: {rule.name}: {exc}", field=rule.name,
                               position=self.where_path(segment, path, raw)) from exc
        if warning:
            self.warnings.append(f"{_context_text(context)}: {rule.name}: {warning} "
                                 f"(segment {segment.index} {segment.tag})")
        return value

    def unknown_code(self, rule: FieldRule, raw: str, context: Context) -> None:
        """Warn that ``raw`` is not in the rule's code list: once per message and code,
        with a count of the repeats."""
        key = (rule.name, raw)
        seen = self.unknown_codes.get(key)
        if seen is None:
            self.unknown_codes[key] = (len(self.warnings), 1)
            self.warnings.append(f"{_context_text(context)}: {rule.name} code {raw!r} is not "
                                 "in the mapping's code list; kept as sent")
            return
        index, count = seen[0], seen[1] + 1
        self.unknown_codes[key] = (index, count)
        first = self.warnings[index].split(" (seen ", 1)[0]
        self.warnings[index] = f"{first} (seen {count} times in this message)"


def _compile_field(rule: FieldRule) -> Getter:
    """The function that reads ``rule`` from a scope: the first value of the first path that
    has one (converted when the rule has a type or codes), or every value with ``all``.

    Specialised by shape because mapping runs it ~100 times per order: plain text from one
    path (most rules), plain text from alternative paths, converted values, and ``all``.
    """
    required = rule.required
    plain = rule.type == "text" and rule.codes is None
    if rule.all:
        return _compile_all(rule, plain)
    fetchers = tuple(path.fetcher() for path in rule.paths)
    if plain:
        if len(fetchers) == 1 and not required:
            return fetchers[0]  # the commonest rule: no call of ours around it

        def text(scope: Tagged, run: _Run, context: Context) -> Any:
            for fetch in fetchers:
                value = fetch(scope)
                if value is not None:
                    return value
            if required:
                raise run.missing(rule, scope, context)
            return None

        return text

    steps = tuple((path.tag, path.picker(), path) for path in rule.paths)

    def converted(scope: Tagged, run: _Run, context: Context) -> Any:
        """The rule in full: each selected segment of each path in turn, converted."""
        for tag, pick, path in steps:
            segments = scope.get(tag)
            if segments:
                for segment in segments:
                    raw = pick(segment)
                    if raw:
                        value = run.convert(rule, path, segment, raw, context)
                        if value is not None:
                            return value
        if required:
            raise run.missing(rule, scope, context)
        return None

    # Decimals, GTINs and GLNs converted before (GTINs and GLNs without a warning) are
    # taken as they are when they are the first value found: what ``converted`` would do.
    if rule.codes is None and rule.type == "decimal":

        # A value seen for the first time is converted here too (the first raw value is
        # the one ``converted`` would convert); only a bad one goes the long way, to be
        # reported with its place.
        def decimal(scope: Tagged, run: _Run, context: Context) -> Any:
            for fetch in fetchers:
                raw = fetch(scope)
                if raw is not None:
                    value = known_decimals.get(raw)
                    if value is not None:
                        return value
                    try:
                        return to_decimal(raw, run.interchange.decimal_mark)
                    except ConversionError:
                        return converted(scope, run, context)
            if required:
                raise run.missing(rule, scope, context)
            return None

        return decimal
    if rule.codes is None and rule.type in ("gtin", "gln"):
        known = known_gtins if rule.type == "gtin" else known_glns
        check = to_gtin if rule.type == "gtin" else to_gln

        def checked(scope: Tagged, run: _Run, context: Context) -> Any:
            for fetch in fetchers:
                raw = fetch(scope)
                if raw is not None:
                    hit = known.get(raw)
                    if hit is None:
                        hit = check(raw)
                    if hit[1] is None:
                        return hit[0]
                    return converted(scope, run, context)  # warns, tries the next value
            if required:
                raise run.missing(rule, scope, context)
            return None

        return checked
    return converted


def _compile_all(rule: FieldRule, plain: bool) -> Getter:
    """``all: true`` (or a list field): every value of the first path that has any."""

    def every(scope: Tagged, run: _Run, context: Context) -> Any:
        results = []
        for path in rule.paths:
            segments = scope.get(path.tag)
            if not segments:
                continue
            for segment in path.select(segments):
                for raw in path.values(segment):
                    value = raw if plain else run.convert(rule, path, segment, raw, context)
                    if value is not None:
                        results.append(value)
            if results:
                return results
        if rule.required:
            raise run.missing(rule, scope, context)
        return None

    return every


def _fields(getters: tuple[tuple[str, Getter], ...], scope: Tagged, run: _Run,
            context: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, get in getters:
        value = get(scope, run, context)
        if value is not None:
            out[name] = value
    return out


class _GroupPlan:
    """A compiled group rule: which instances it reads, the getters of its fields and the
    plans of the lists or objects read from its sub-groups (``nested``)."""

    __slots__ = ("rule", "fields", "nested")

    def __init__(self, rule: GroupRule) -> None:
        self.rule = rule
        # Field names inside a group are fields of the group's canonical object: no dots.
        self.fields = tuple((f.name, _compile_field(f)) for f in rule.fields
                            if isinstance(f, FieldRule))
        self.nested = tuple(_GroupPlan(f) for f in rule.fields if isinstance(f, GroupRule))

    def chosen(self, instances: list[_Instance]) -> list[_Instance]:
        conditions = self.rule.conditions
        if not conditions:
            return instances
        if len(conditions) == 1:
            condition = conditions[0]
            if len(condition.places) == 1 and not condition.negate:
                # The usual ``party[3035=BY]``: one place tested inline, as Condition.holds.
                (element, component), = condition.places
                index = component or 0
                values = condition.values
                chosen = []
                for instance in instances:
                    elements = instance.trigger.elements
                    if element < len(elements):
                        comps = elements[element]
                        if index < len(comps) and comps[index] in values:
                            chosen.append(instance)
                return chosen
            holds = condition.holds
            return [i for i in instances if holds(i.trigger.elements)]
        return [i for i in instances
                if all(c.holds(i.trigger.elements) for c in conditions)]

    def read(self, instances: list[_Instance], run: _Run, context: Context) -> Any:
        rule = self.rule
        chosen = self.chosen(instances)
        if self.nested:
            return self._read_nested(chosen, run, context)
        if rule.each:
            name = rule.name
            return [_fields(self.fields, instance.tagged, run,
                            (context, name, number, instance.trigger))
                    for number, instance in enumerate(chosen, 1)]
        if not chosen:
            return self._none(run, context)
        return _fields(self.fields, chosen[0].tagged, run, context) or None

    def _none(self, run: _Run, context: Context) -> None:
        rule = self.rule
        if rule.required:
            raise MappingError(f"{_context_text(context)} has no "
                               f"{rule.name.replace('_', ' ')} (group {rule.group})",
                               field=rule.name, position=run.where(None))
        return None

    def _read_nested(self, chosen: list[_Instance], run: _Run, context: Context) -> Any:
        rule = self.rule
        if not rule.each:
            if not chosen:
                return self._none(run, context)
            return self._object(chosen[0], run, context) or None
        return [self._object(instance, run, (context, rule.name, number, instance.trigger))
                for number, instance in enumerate(chosen, 1)]

    def _object(self, instance: _Instance, run: _Run, context: Context) -> dict[str, Any]:
        out = _fields(self.fields, instance.tagged, run, context)
        children = instance.children or {}
        for plan in self.nested:
            value = plan.read(children.get(plan.rule.group, []), run, context)
            if value is not None and value != []:
                out[plan.rule.name] = value
        return out


class _Plan:
    """A mapping's rules compiled for ``map_message``, in the mapping's order, and how to
    split a message into groups (``levels`` None: no sub-groups, the flat ``partition``)."""

    __slots__ = ("rules", "levels")

    def __init__(self, mapping: Mapping) -> None:
        nested = any(g.groups for g in mapping.groups.values())
        self.levels = _Levels(mapping.groups) if nested else None
        rules: list[tuple[tuple[str, ...], Getter | None, _GroupPlan | None]] = []
        for rule in mapping.rules:
            parts = tuple(rule.name.split("."))
            if isinstance(rule, GroupRule):
                rules.append((parts, None, _GroupPlan(rule)))
            else:
                rules.append((parts, _compile_field(rule), None))
        self.rules = tuple(rules)


def _plan(mapping: Mapping) -> _Plan:
    plan: _Plan | None = mapping.plan
    if plan is None:
        plan = mapping.plan = _Plan(mapping)
    return plan


def _put(out: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    if len(parts) == 1:
        out[parts[0]] = value
        return
    *parents, last = parts
    for part in parents:
        out = out.setdefault(part, {})
    out[last] = value


def map_message(mapping: Mapping, interchange: Interchange, message: Message, *,
                partner_id: str, filename: str | None = None,
                transmission_id: str | None = None) -> MappedMessage:
    """Map ``message`` of ``interchange`` with ``mapping`` to a validated canonical document.

    Raises MappingError (a required field missing, a bad date or number, a document the
    canonical model rejects) or EdifactSyntaxError (a segment its directory does not have).
    """
    if len(message.segments) < _GC_PAUSE_SEGMENTS or not gc.isenabled():
        return _map(mapping, interchange, message, partner_id, filename, transmission_id)
    # A big message (a price list of 100,000 items) builds millions of small objects, and
    # every full collection on the way walks all of them and the parsed segments: mapping
    # 20,000 items took 146 us per item with the collector on, 55 without. Mapping makes no
    # reference cycles, so the collector is paused for the message and resumed after.
    with gc_paused():
        return _map(mapping, interchange, message, partner_id, filename, transmission_id)


#: Messages with at least this many segments are mapped with the garbage collector paused.
_GC_PAUSE_SEGMENTS = 5000


def _map(mapping: Mapping, interchange: Interchange, message: Message, partner_id: str,
         filename: str | None, transmission_id: str | None) -> MappedMessage:
    directory = message.directory
    known = known_segments(directory)
    if known is not None and not known.issuperset(map(_TAG, message.segments)):
        segment = next(s for s in message.segments if s.tag not in known)
        raise EdifactSyntaxError(
            f"segment {segment.tag} is not a segment of the UN/EDIFACT {directory} "
            f"directory", code="15",
            position=message.source.position(segment, message_ref=message.ref))
    run = _Run(interchange, message)
    plan = _plan(mapping)
    if plan.levels is None:
        header, instances = partition(message.segments[1:-1], mapping.groups)
    else:
        header, instances = partition_nested(message.segments[1:-1], plan.levels)
    context = f"{message.type} message {message.ref}"
    data: dict[str, Any] = {}
    for parts, getter, group in plan.rules:
        if group is not None:
            value = group.read(instances[group.rule.group], run, context)
        else:
            assert getter is not None
            value = getter(header, run, context)
        if value is not None and value != []:
            _put(data, parts, value)
    number = data.get(getattr(mapping.model, "business_field", "business_number"))
    data["partner"] = partner_id
    data["message_id"] = message_id(partner_id, mapping.document, interchange.sender_id,
                                    interchange.control_ref, message.ref,
                                    str(number) if number else None)
    data["source"] = {
        "format": "edifact",
        "standard": mapping.standard if message.association else "UN/EDIFACT",
        "version": directory,
        "association": message.association,
        "mapping": mapping.id,
        "sender_id": interchange.sender_id,
        "sender_qualifier": interchange.sender_qualifier,
        "recipient_id": interchange.recipient_id,
        "interchange_ref": interchange.control_ref,
        "message_ref": message.ref,
        "filename": filename,
        "transmission_id": transmission_id,
    }
    try:
        document = mapping.model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise MappingError(f"{context}: canonical {mapping.document} is not valid: {loc}: "
                           f"{first['msg']} ({exc.error_count()} error(s))", field=loc,
                           position=run.where(None)) from exc
    warnings = [*interchange.warnings, *run.warnings]
    return MappedMessage(document, mapping.document, message, mapping.id, warnings)
