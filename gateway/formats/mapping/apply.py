"""Apply a mapping to one EDIFACT message: a validated canonical document plus warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.core.errors import EdifactSyntaxError, MappingError
from gateway.core.ids import message_id
from gateway.formats.edifact.directory import is_known_segment
from gateway.formats.edifact.model import Interchange, Message, Segment
from gateway.formats.mapping.convert import ConversionError, to_date, to_decimal, to_gln, to_gtin
from gateway.formats.mapping.definition import FieldRule, GroupDef, GroupRule, Mapping
from gateway.formats.mapping.paths import SegmentPath


@dataclass(slots=True)
class MappedDocument:
    """One canonical document made from one message, with what was odd about it."""

    document: BaseModel
    document_type: str
    message: Message
    mapping_id: str
    warnings: list[str] = field(default_factory=list)


class _Scope:
    """Segments a lookup may see: the header (outside groups) or one group instance."""

    __slots__ = ("segments", "_by_tag")

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self._by_tag: dict[str, list[Segment]] | None = None

    def tagged(self, tag: str) -> list[Segment]:
        if self._by_tag is None:
            by_tag: dict[str, list[Segment]] = {}
            for segment in self.segments:
                by_tag.setdefault(segment.tag, []).append(segment)
            self._by_tag = by_tag
        return self._by_tag.get(tag, [])


def partition(segments: list[Segment], groups: dict[str, GroupDef]
              ) -> tuple[_Scope, dict[str, list[_Scope]]]:
    """Split a message body into the header scope and the instances of each group.

    A group instance starts at its trigger and goes on while segments are in its
    ``contains``; the next trigger of the same group starts a new instance.
    """
    triggers = {g.trigger: g for g in groups.values()}
    header: list[Segment] = []
    instances: dict[str, list[_Scope]] = {name: [] for name in groups}
    current: GroupDef | None = None
    current_segments: list[Segment] = []
    for segment in segments:
        tag = segment.tag
        if current is not None and tag != current.trigger and tag in current.contains:
            current_segments.append(segment)
            continue
        group = triggers.get(tag)
        if group is not None:
            current = group
            current_segments = [segment]
            instances[group.name].append(_Scope(current_segments))
        else:
            current = None
            header.append(segment)
    return _Scope(header), instances


class _Run:
    def __init__(self, mapping: Mapping, interchange: Interchange, message: Message) -> None:
        self.mapping = mapping
        self.interchange = interchange
        self.message = message
        self.warnings: list[str] = []

    def where(self, segment: Segment | None, element: str | None = None) -> Any:
        return self.message.source.position(segment or self.message.segments[0],
                                            element=element, message_ref=self.message.ref)

    def field(self, rule: FieldRule, scope: _Scope, context: str) -> Any:
        results = []
        plain = rule.type == "text" and rule.codes is None
        many = rule.all
        for path in rule.paths:
            tagged = scope.tagged(path.tag)
            if not tagged:
                continue
            for segment in path.select(tagged):
                if not many:
                    raw = path.first(segment)
                    if not raw:
                        continue
                    value = raw if plain else self.convert(rule, path, segment, raw, context)
                    if value is not None:
                        return value
                    continue
                for raw in path.values(segment):
                    value = raw if plain else self.convert(rule, path, segment, raw, context)
                    if value is not None:
                        results.append(value)
            if results:
                break
        if rule.required and not results:
            first = rule.paths[0]
            seen = scope.tagged(first.tag)
            label = rule.name.rsplit(".", 1)[-1].replace("_", " ")
            raise MappingError(
                f"{context} has no {label} ({first.text.replace('/', ' ')})",
                field=rule.name, position=self.where(seen[0] if seen else None, first.text))
        return results if rule.all else None

    def convert(self, rule: FieldRule, path: SegmentPath, segment: Segment, raw: str,
                context: str) -> Any:
        try:
            if rule.codes is not None:
                if raw in rule.codes:
                    return rule.codes[raw]
                self.warnings.append(f"{context}: {rule.name} code {raw!r} is not in the "
                                     "mapping's code list; kept as sent")
                return raw
            if rule.type == "text":
                return raw
            if rule.type == "decimal":
                return to_decimal(raw, self.interchange.decimal_mark)
            if rule.type == "date":
                fmt = rule.format
                for place in path.format_place:
                    fmt = segment.get(place[0], place[1] or 0) or fmt
                value, warning = to_date(raw, fmt)
            elif rule.type == "gtin":
                value, warning = to_gtin(raw)
            else:  # gln
                value, warning = to_gln(raw)
        except ConversionError as exc:
            raise MappingError(f"{context}: {rule.name}: {exc}", field=rule.name,
                               position=self.where(segment, path.text)) from exc
        if warning:
            self.warnings.append(f"{context}: {rule.name}: {warning} "
                                 f"(segment {segment.index} {segment.tag})")
        return value

    def fields(self, rules: tuple[FieldRule, ...], scope: _Scope, context: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rule in rules:
            value = self.field(rule, scope, context)
            if value is not None and value != []:
                _put(out, rule.name, value)
        return out

    def group(self, rule: GroupRule, instances: list[_Scope], context: str) -> Any:
        chosen = [s for s in instances
                  if all(c.holds(s.segments[0].elements) for c in rule.conditions)]
        if rule.each:
            out = []
            for number, scope in enumerate(chosen, 1):
                trigger = scope.segments[0]
                where = f"{context}, {rule.name} {number} (segment {trigger.index} {trigger.tag})"
                out.append(self.fields(rule.fields, scope, where))
            return out
        if not chosen:
            if rule.required:
                raise MappingError(f"{context} has no {rule.name.replace('_', ' ')} "
                                   f"(group {rule.group})", field=rule.name,
                                   position=self.where(None))
            return None
        values = self.fields(rule.fields, chosen[0], context)
        return values or None


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    if "." not in dotted:
        out[dotted] = value
        return
    *parents, last = dotted.split(".")
    for part in parents:
        out = out.setdefault(part, {})
    out[last] = value


def map_message(mapping: Mapping, interchange: Interchange, message: Message, *,
                partner_id: str, filename: str | None = None,
                transmission_id: str | None = None) -> MappedDocument:
    """Map ``message`` of ``interchange`` with ``mapping`` to a validated canonical document.

    Raises MappingError (a required field missing, a bad date or number, a document the
    canonical model rejects) or EdifactSyntaxError (a segment its directory does not have).
    """
    directory = message.directory
    tags = {segment.tag for segment in message.segments}
    if any(not is_known_segment(directory, tag) for tag in tags):
        segment = next(s for s in message.segments if not is_known_segment(directory, s.tag))
        raise EdifactSyntaxError(
            f"segment {segment.tag} is not a segment of the UN/EDIFACT {directory} "
            f"directory", code="15",
            position=message.source.position(segment, message_ref=message.ref))
    run = _Run(mapping, interchange, message)
    header, instances = partition(message.segments[1:-1], mapping.groups)
    context = f"{message.type} message {message.ref}"
    data: dict[str, Any] = {}
    for rule in mapping.rules:
        if isinstance(rule, GroupRule):
            value = run.group(rule, instances[rule.group], context)
        else:
            value = run.field(rule, header, context)
        if value is not None and value != []:
            _put(data, rule.name, value)
    number = data.get("order_number") or data.get("business_number")
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
    return MappedDocument(document, mapping.document, message, mapping.id, warnings)
