"""CSV mapping files (``format: csv``): compile a merged YAML document into rules, strictly.

A CSV mapping says how to read the file (delimiter, quoting, encoding, decimal mark, date
formats, header row or positions, rows to skip), how rows make documents (grouped by a
field, or by record types such as ``H``/``D``) and where each canonical field comes from (a
column by its name and aliases, a position, a constant or the file name). Loading stops at
the first unknown key, unknown canonical field, bad type or impossible combination with the
file and line (``MappingDefinitionError``). ``docs/csv-mappings.md`` describes every key.
"""

from __future__ import annotations

import codecs
import datetime as dt
import fnmatch
import json
import re
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.core.canonical import CANONICAL_MODELS, Price
from gateway.formats.csv.convert import TYPES, CellError, to_date, to_decimal, to_gs1
from gateway.formats.mapping.frontend import GATEWAY_FIELDS, DefinitionCompiler, Where
from gateway.formats.mapping.modelinfo import is_list, model_of, union_args

TOP_KEYS = frozenset({
    "id", "description", "document", "standard", "version", "extends", "match", "sender",
    "delimiter", "quote", "encoding", "fallback_encoding", "decimal", "thousands",
    "date_formats", "header", "skip_rows", "group_by", "records", "bad_rows", "fields"})
RULE_KEYS = frozenset({"column", "position", "value", "source", "record", "where", "type",
                       "format", "codes", "invalid", "required", "default"})
MATCH_KEYS = frozenset({"columns", "exact", "filename", "first_line"})
RECORD_KEYS = frozenset({"type", "document", "line", "ignore"})
SENDER_KEYS = frozenset({"field", "scheme"})
#: Identifier schemes a sender column may name (``PartnerDirectory.by_identifier``).
SCHEMES = ("gln", "vat", "siren", "siret", "email", "unb", "iso6523")
#: Canonical documents a CSV mapping makes, and the field that holds one entry per row.
DETAIL = {"order": "lines", "price-list": "items"}
#: Lists of objects inside a row's entry, and the field whose value makes an entry exist: a
#: price without an amount (an empty promotion-price column) is left out, not an error.
ENTRY_LISTS: dict[type[BaseModel], str] = {Price: "amount"}
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
DEFAULT_DATE_FORMATS = ("%Y-%m-%d",)
#: strptime directives a date format may use (``%%`` is a literal percent sign).
_DIRECTIVES = frozenset("dmyYHIMSpfbBaAjzZ%")


def norm(name: str) -> str:
    """A header name as compared: trimmed, inner white space single, case folded."""
    return " ".join(name.replace("\ufeff", "").split()).casefold()


@dataclass(frozen=True, slots=True)
class Cell:
    """Where a value comes from: a column (names and aliases), a position (1-based), a
    constant already converted, or the file's name without extension."""

    names: tuple[str, ...] = ()
    position: int | None = None
    constant: Any = None
    from_filename: bool = False

    @property
    def reads_file(self) -> bool:
        return bool(self.names) or self.position is not None

    def describe(self) -> str:
        if self.names:
            return ", ".join(f'"{n}"' for n in self.names)
        if self.position is not None:
            return f"column {self.position}"
        return "the file name" if self.from_filename else "a constant"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One canonical field from one cell of its scope's rows (the document's or a line's)."""

    name: str                      # as written: ``lines.quantity``
    target: tuple[str, ...]        # inside its scope's object: ``("quantity",)``
    scope: str                     # ``document`` or ``line`` (an order line, a list item)
    cell: Cell
    type: str = "text"
    record: str | None = None
    where: tuple[tuple[Cell, frozenset[str]], ...] = ()
    formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    codes: dict[str, str] | None = None
    invalid: str = "fail"          # a bad GTIN/GLN or unknown code: ``fail`` or ``warn``
    required: bool = False
    default: Any = None
    many: bool = False             # a list of text (``notes``): the value in a list


@dataclass(frozen=True, slots=True)
class EntryListRule:
    """A list of objects inside a line (an item's ``prices``): one entry per listed spec,
    made when its ``key`` field has a value."""

    name: str
    target: tuple[str, ...]
    scope: str
    entries: tuple[tuple[FieldRule, ...], ...]
    key: str


Rule = FieldRule | EntryListRule


@dataclass(frozen=True, slots=True)
class Records:
    """Record types in one file: a column says what each row is; document records start a
    document, line records start a line, the other named records join the current one."""

    type: Cell
    document: frozenset[str]
    line: frozenset[str]
    document_records: frozenset[str]   # document starters and records document fields read
    line_records: frozenset[str]       # line starters and records line fields read
    ignore: frozenset[str]


@dataclass(frozen=True, slots=True)
class CsvMatch:
    """How a file is recognised before its partner is known (all given criteria hold)."""

    columns: tuple[tuple[str, ...], ...] = ()
    exact: bool = True
    filename: str | None = None
    first_line: re.Pattern[str] | None = None

    def fits(self, header: list[str] | None, first_line: str, filename: str | None) -> bool:
        if self.filename is not None and not fnmatch.fnmatch(
                Path(filename or "").name.casefold(), self.filename.casefold()):
            return False
        if self.first_line is not None and not self.first_line.fullmatch(first_line.strip()):
            return False
        if self.columns:
            if header is None:
                return False
            have = {norm(h) for h in header if h.strip()}
            found = set()
            for aliases in self.columns:
                hit = next((norm(a) for a in aliases if norm(a) in have), None)
                if hit is None:
                    return False
                found.add(hit)
            if self.exact and have - found:
                return False
        return True


@dataclass(frozen=True, slots=True)
class SenderRule:
    """The document field that names its sender, and the identifier scheme of its value."""

    field: str
    scheme: str


@dataclass(slots=True)
class CsvMapping:
    """A loaded, checked CSV mapping (the object ``registry.COMPILERS`` describes)."""

    id: str
    document: str
    standard: str
    version: str
    file: str
    auto_match: bool
    match: CsvMatch | None
    delimiter: str                 # one character, or ``auto``
    quote: str | None
    encoding: str                  # a codec name, or ``auto``
    fallback_encoding: str
    decimal: str
    thousands: str | None
    header: bool
    skip_rows: int
    group_by: FieldRule | None
    records: Records | None
    bad_rows: str                  # ``fail-document`` or ``skip-row``
    rules: tuple[Rule, ...]
    senders: tuple[SenderRule, ...]
    model: type[BaseModel] = field(repr=False)
    description: str | None = None
    extends: str | None = None
    format: str = field(default="csv", init=False)
    sample_suffix: str = field(default=".csv", init=False)

    @property
    def detail(self) -> str:
        """The canonical list with one entry per line (``lines``, ``items``)."""
        return DETAIL[self.document]

    def rules_of(self, scope: str) -> list[Rule]:
        return [r for r in self.rules if r.scope == scope]

    def rule(self, name: str) -> FieldRule | None:
        found = next((r for r in self.rules if r.name == name), None)
        return found if isinstance(found, FieldRule) else None

    def produce(self, sample: Path) -> list[dict[str, Any]]:
        """The canonical JSON documents of ``sample`` for partner ``sample``; a group that
        fails raises its MappingError (a sample must map cleanly)."""
        from gateway.formats.csv.apply import map_file

        documents = []
        for result in map_file(self, sample.read_bytes(), filename=sample.name,
                               partner_id="sample", transmission_id=None):
            if result.error is not None:
                raise result.error
            assert result.document is not None
            documents.append(json.loads(result.document.to_json_bytes()))  # type: ignore[attr-defined]
        return documents


class _Compiler(DefinitionCompiler):
    """The CSV compiler: columns, positions and record types of delimited rows."""

    # -- top level ------------------------------------------------------------------------

    def compile(self) -> CsvMapping:
        data = self.data
        own_match = self.own_match
        self.check_keys(data, TOP_KEYS, within=" in a CSV mapping")
        self.require("id", "document", "fields")
        document = data["document"]
        if document not in DETAIL:
            raise self.fail(f"document {document!r}: a CSV mapping makes "
                            f"{' or '.join(sorted(DETAIL))}", "document")
        self.model = CANONICAL_MODELS[document]
        self.detail = DETAIL[document]
        self.date_formats = self.formats(data.get("date_formats"), ("date_formats",),
                                         DEFAULT_DATE_FORMATS)
        self.decimal = self.choice("decimal", data.get("decimal", "."), (".", ","))
        thousands = data.get("thousands")
        if thousands is not None and (thousands == self.decimal or thousands not in
                                      (".", ",", " ", "'", "\u00a0", "\u202f")):
            raise self.fail(f"thousands {thousands!r}: one of '.', ',', ' ', \"'\" and not the "
                            "decimal mark", "thousands")
        self.thousands = thousands
        header = data.get("header")
        if header is not None and not isinstance(header, bool):
            raise self.fail("'header' is true (the first row names the columns) or false",
                            "header")
        self.header_declared = header
        records_spec = data.get("records")
        fields = data["fields"]
        if not isinstance(fields, dict):
            raise self.fail("'fields' maps canonical fields to rules", "fields")
        self.record_names: dict[str, set[str]] = {"document": set(), "line": set()}
        self.records_given = records_spec is not None
        rules = [self.rule(name, spec) for name, spec in fields.items() if spec is not None]
        uses_names = any(_cells_named(r) for r in rules)
        has_header = header if header is not None else uses_names
        if uses_names and not has_header:
            raise self.fail("a rule names a column but 'header' is false: use 'position'",
                            "header")
        self.check_required(rules)
        records = self.records(records_spec, has_header) if records_spec is not None else None
        group_by = self.group_by(data.get("group_by"), rules, records)
        match = self.match(data["match"], has_header) if data.get("match") is not None else None
        senders = self.senders(data.get("sender"), rules)
        return CsvMapping(
            id=str(data["id"]), document=document,
            standard=str(data.get("standard") or "CSV"), version=str(data.get("version") or "1"),
            file=self.file, auto_match=own_match and match is not None, match=match,
            delimiter=self.delimiter(data.get("delimiter", "auto")),
            quote=self.quote(data.get("quote", '"')),
            encoding=self.encoding(data.get("encoding", "auto"), "encoding"),
            fallback_encoding=self.encoding(data.get("fallback_encoding", "windows-1252"),
                                            "fallback_encoding"),
            decimal=self.decimal, thousands=thousands, header=has_header,
            skip_rows=self.count("skip_rows", data.get("skip_rows", "0")),
            group_by=group_by, records=records,
            bad_rows=self.choice("bad_rows", data.get("bad_rows", "fail-document"),
                                 ("fail-document", "skip-row")),
            rules=tuple(rules), senders=senders, model=self.model,
            description=data.get("description"), extends=data.get("extends"))

    def choice(self, key: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(f"{key} {value!r}: one of {', '.join(map(repr, allowed))}", key)
        return str(value)

    def count(self, key: str, value: Any) -> int:
        if not (isinstance(value, str) and value.isdigit()):
            raise self.fail(f"{key} {value!r} is not a whole number", key)
        return int(value)

    def delimiter(self, value: Any) -> str:
        value = DELIMITER_NAMES.get(value, value)
        if value != "auto" and not (isinstance(value, str) and len(value) == 1
                                    and value not in "\r\n\"'"):
            raise self.fail(f"delimiter {value!r}: one character (';', ',', tab, '|' …) or "
                            "'auto'", "delimiter")
        return str(value)

    def quote(self, value: Any) -> str | None:
        if value is None or value is False:
            return None
        if not (isinstance(value, str) and len(value) == 1 and value not in "\r\n"):
            raise self.fail(f"quote {value!r}: one character, or null for none", "quote")
        return value

    def encoding(self, value: Any, key: str) -> str:
        if value == "auto" and key == "encoding":
            return "auto"
        try:
            codecs.lookup(str(value))
        except LookupError:
            raise self.fail(f"{key} {value!r} is not an encoding Python knows (utf-8, "
                            "windows-1252, iso-8859-1 …)", key) from None
        name = codecs.lookup(str(value)).name
        if key == "fallback_encoding" and name.startswith("utf"):
            raise self.fail("fallback_encoding is for files that are not UTF-8: a one-byte "
                            "encoding such as windows-1252 or iso-8859-1", key)
        return "utf-8" if name == "utf-8" else str(value)

    def formats(self, value: Any, at: tuple[str, ...], default: tuple[str, ...]
                ) -> tuple[str, ...]:
        if value is None:
            return default
        formats = [value] if isinstance(value, str) else value
        if not isinstance(formats, list) or not formats:
            raise self.fail("date formats are a strftime format or a list of them", *at)
        for fmt in formats:
            if not isinstance(fmt, str) or "%" not in fmt:
                raise self.fail(f"date format {fmt!r} is not a strftime format such as "
                                "'%d.%m.%Y'", *at)
            unknown = sorted(set(re.findall(r"%(.)", fmt)) - _DIRECTIVES)
            if unknown:
                raise self.fail(f"date format {fmt!r}: unknown directive(s) "
                                f"{', '.join('%' + d for d in unknown)}", *at)
        return tuple(formats)

    # -- fields ---------------------------------------------------------------------------

    def rule(self, name: str, spec: Any) -> Rule:
        at = ("fields", name)
        parts = name.split(".")
        scope = "document"
        model: type[BaseModel] = self.model
        if parts[0] == self.detail:
            if len(parts) == 1:
                raise self.fail(f"{name!r} is the list of rows: map its fields "
                                f"({self.detail}.quantity …)", *at)
            scope, parts = "line", parts[1:]
            model = model_of(self.model.model_fields[self.detail].annotation) or model
        annotation: Any = None
        for i, part in enumerate(parts):
            if part not in model.model_fields or (i == 0 and scope == "document"
                                                  and part in GATEWAY_FIELDS):
                known = sorted(set(model.model_fields) - GATEWAY_FIELDS - {self.detail})
                raise self.not_a_field(name, model.__name__, known, *at)
            annotation = model.model_fields[part].annotation
            inner = model_of(annotation)
            if i < len(parts) - 1:
                if inner is None or is_list(annotation):
                    raise self.fail(f"{name!r}: {part!r} holds no fields to map", *at)
                model = inner
        if is_list(annotation) and model_of(annotation) is not None:
            entry = model_of(annotation)
            assert entry is not None
            if entry not in ENTRY_LISTS or scope != "line":
                raise self.fail(f"{name!r} is a list of objects a CSV mapping cannot fill",
                                *at)
            return self.entry_list(name, tuple(parts), spec, entry, at)
        if model_of(annotation) is not None:
            raise self.fail(f"{name!r} is an object: map its fields ({name}.name …)", *at)
        implied = len(parts) == 1 and model.model_fields[parts[0]].is_required()
        return self.field_rule(name, tuple(parts), scope, spec, annotation, at, implied)

    def entry_list(self, name: str, target: tuple[str, ...], spec: Any,
                   entry: type[BaseModel], at: tuple[str, ...]) -> EntryListRule:
        if not isinstance(spec, list) or not spec:
            raise self.fail(f"{name!r} is a list: one mapping of {entry.__name__} fields per "
                            "entry", *at)
        entries = []
        for i, item in enumerate(spec):
            where = (*at, str(i))
            if not isinstance(item, dict):
                raise self.fail(f"{name!r} entry {i + 1} maps {entry.__name__} fields to rules",
                                *where)
            rules = []
            for sub, subspec in item.items():
                if sub not in entry.model_fields:
                    raise self.not_a_field(sub, entry.__name__, entry.model_fields, *where, sub)
                info = entry.model_fields[sub]
                rules.append(self.field_rule(f"{name}.{sub}", (sub,), "line", subspec,
                                             info.annotation, (*where, sub), info.is_required()))
            for required in _required(entry):
                if not any(r.target == (required,) for r in rules):
                    first = (*where, next(iter(item))) if item else where
                    raise self.fail(f"{name!r} entry {i + 1}: the canonical {entry.__name__} "
                                    f"needs {required!r}; map it (a constant will do)", *first)
            entries.append(tuple(rules))
        return EntryListRule(name, target, "line", tuple(entries), ENTRY_LISTS[entry])

    def field_rule(self, name: str, target: tuple[str, ...], scope: str, spec: Any,
                   annotation: Any, at: tuple[str, ...], implied: bool = False) -> FieldRule:
        """A rule for one canonical field; ``implied``: the canonical model requires it, so
        an empty cell fails its row even without ``required: true``."""
        if isinstance(spec, str) or (isinstance(spec, list)
                                     and all(isinstance(s, str) for s in spec)):
            spec = {"column": spec}
        if not isinstance(spec, dict):
            raise self.fail(f"rule for {name!r}: a column name, a list of aliases or a mapping "
                            "(column, position, value …)", *at)
        self.check_keys(spec, RULE_KEYS, *at, within=f" in rule {name!r}")
        kind, many = self.kind(name, target[-1], annotation, spec.get("type"), at)
        formats = self.formats(spec.get("format"), (*at, "format"), self.date_formats)
        if spec.get("format") is not None and kind != "date":
            raise self.fail(f"'format' is for dates; {name!r} is {kind}", *at, "format")
        codes = self.codes(spec.get("codes"), kind, (*at, "codes"))
        invalid = spec.get("invalid", "warn" if codes is not None else "fail")
        if invalid not in ("fail", "warn"):
            raise self.fail(f"invalid {invalid!r}: 'fail' (the row fails) or 'warn' (left "
                            "empty, or a code kept as sent, with a warning)", *at, "invalid")
        required = spec.get("required", False)
        if not isinstance(required, bool):
            raise self.fail("'required' is true or false", *at, "required")
        probe = FieldRule(name, target, scope, Cell(), kind, formats=formats, codes=codes)
        cell = self.cell(spec, name, probe, at)
        default = None
        if spec.get("default") is not None:
            if not cell.reads_file and not cell.from_filename:
                raise self.fail(f"'default' of {name!r} is for a value read from the file",
                                *at, "default")
            default = self.constant(spec["default"], probe, (*at, "default"))
        record = spec.get("record")
        if record is not None:
            if not self.records_given:
                raise self.fail(f"'record' of {name!r} needs 'records' (record types in one "
                                "file)", *at, "record")
            self.record_names[scope].add(str(record))
        where = self.where_conditions(spec.get("where"), name, (*at, "where"))
        return FieldRule(name, target, scope, cell, kind, record=record, where=where,
                         formats=formats, codes=codes, invalid=invalid,
                         required=required or implied,
                         default=default, many=many)

    def kind(self, name: str, last: str, annotation: Any, declared: Any,
             at: tuple[str, ...]) -> tuple[str, bool]:
        """(cell type, value in a list) for a canonical field, checked against ``type``."""
        many = is_list(annotation)
        bases = _bases(typing.get_args(annotation)[0] if many else annotation)
        if Decimal in bases:
            natural, allowed = "decimal", {"decimal"}
        elif bases & {dt.date, dt.datetime}:
            natural, allowed = "date", {"date"}
        elif bases == {str}:
            natural = last if last in ("gtin", "gln") else "text"
            allowed = {"text", "gtin", "gln"}
        else:
            raise self.fail(f"{name!r} cannot be read from a CSV cell", *at)
        if declared is None:
            return natural, many
        if declared not in TYPES:
            raise self.fail(f"unknown type {declared!r} (known: {', '.join(sorted(TYPES))})",
                            *at, "type")
        if declared not in allowed:
            raise self.fail(f"type {declared!r} does not fit the canonical {name!r} "
                            f"({' or '.join(sorted(allowed))})", *at, "type")
        return declared, many

    def codes(self, value: Any, kind: str, at: tuple[str, ...]) -> dict[str, str] | None:
        if value is None:
            return None
        if kind != "text":
            raise self.fail(f"'codes' translate text, not a {kind}", *at)
        if isinstance(value, list):
            value = {str(v): str(v) for v in value}
        if not isinstance(value, dict) or not value:
            raise self.fail("'codes' is a mapping (code as sent: canonical value) or a list of "
                            "allowed codes", *at)
        return {str(k): str(v) for k, v in value.items()}

    def cell(self, spec: dict[str, Any], name: str, probe: FieldRule,
             at: tuple[str, ...]) -> Cell:
        given = [k for k in ("column", "position", "value", "source") if k in spec]
        if len(given) != 1:
            raise self.fail(f"rule {name!r} needs exactly one of column, position, value, "
                            f"source (has {', '.join(given) or 'none'})", *at)
        key = given[0]
        value = spec[key]
        if key == "column":
            return Cell(names=self.names(value, (*at, "column")))
        if key == "position":
            return Cell(position=self.position(value, (*at, "position")))
        if key == "source":
            if value != "filename":
                raise self.fail(f"source {value!r}: only 'filename' (the file's name without "
                                "its extension)", *at, "source")
            return Cell(from_filename=True)
        if value is None:
            raise self.fail(f"'value' of {name!r} is empty", *at, "value")
        return Cell(constant=self.constant(value, probe, (*at, "value")))

    def names(self, value: Any, at: tuple[str, ...]) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n.strip() for n in names)):
            raise self.fail("'column' is a header name or a list of aliases", *at)
        return tuple(names)

    def position(self, value: Any, at: tuple[str, ...]) -> int:
        if not (isinstance(value, str) and value.isdigit() and int(value) >= 1):
            raise self.fail(f"position {value!r}: a column number, 1 for the first", *at)
        return int(value)

    def constant(self, value: Any, probe: FieldRule, at: tuple[str, ...]) -> Any:
        """A constant converted as its field's cells are, in the canonical notation ('.' as
        decimal mark, dates in the mapping's formats)."""
        if not isinstance(value, str):
            raise self.fail(f"constant {value!r} is not text", *at)
        try:
            if probe.type == "decimal":
                return to_decimal(value, decimal_mark=".", thousands=None)
            if probe.type == "date":
                return to_date(value, probe.formats + ("%Y-%m-%d",))
            if probe.type in ("gtin", "gln"):
                return to_gs1(value, probe.type)
        except CellError as exc:
            raise self.fail(f"constant of {probe.name!r}: {exc}", *at) from exc
        if probe.codes is not None:
            return probe.codes.get(value, value)
        return value

    def where_conditions(self, spec: Any, name: str, at: tuple[str, ...]
                         ) -> tuple[tuple[Cell, frozenset[str]], ...]:
        if spec is None:
            return ()
        if not isinstance(spec, dict) or not spec:
            raise self.fail(f"'where' of {name!r} maps a column (name or position) to the "
                            "value or values it must have", *at)
        conditions = []
        for key, wanted in spec.items():
            cell = Cell(position=int(key)) if key.isdigit() and int(key) >= 1 else \
                Cell(names=(key,))
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(isinstance(v, str) for v in values):
                raise self.fail(f"'where' {key!r}: a value or a list of values", *at, key)
            conditions.append((cell, frozenset(v.strip() for v in values)))
        return tuple(conditions)

    def check_required(self, rules: list[Rule]) -> None:
        """Every field the canonical model requires (order number, line quantity) is mapped."""
        line_model = model_of(self.model.model_fields[self.detail].annotation)
        assert line_model is not None
        for scope, model, prefix in (("document", self.model, ""),
                                     ("line", line_model, f"{self.detail}.")):
            for required in _required(model):
                if required in GATEWAY_FIELDS:
                    continue
                if not any(r.scope == scope and r.target[0] == required for r in rules):
                    raise self.fail(f"the canonical {model.__name__} requires "
                                    f"{prefix}{required}: map it", "fields")

    # -- layout ---------------------------------------------------------------------------

    def records(self, spec: Any, has_header: bool) -> Records:
        at = ("records",)
        if not isinstance(spec, dict):
            raise self.fail("'records' is a mapping: type (column of the record type), "
                            "document, line[, ignore]", *at)
        self.check_keys(spec, RECORD_KEYS, *at, within=" in records")
        kind = spec.get("type", "1")
        if isinstance(kind, str) and kind.isdigit():
            cell = Cell(position=self.position(kind, (*at, "type")))
        elif isinstance(kind, str) and has_header:
            cell = Cell(names=(kind,))
        else:
            raise self.fail("records 'type' is the position of the record-type column (or "
                            "its name when the file has a header row)", *at, "type")
        sets = {}
        for key in ("document", "line", "ignore"):
            value = spec.get(key, [] if key == "ignore" else None)
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or (key != "ignore" and not values) or not all(
                    isinstance(v, str) and v.strip() for v in values):
                raise self.fail(f"records {key!r} is a record type or a list of them",
                                *at, key)
            sets[key] = frozenset(v.strip() for v in values)
        if sets["document"] & sets["line"]:
            raise self.fail("a record type cannot start both a document and a line", *at)
        document = sets["document"] | self.record_names["document"]
        line = sets["line"] | self.record_names["line"]
        both = document & line
        if both:
            raise self.fail(f"record type(s) {', '.join(sorted(both))} read by both document "
                            "and line fields: a record belongs to one or the other", "fields")
        return Records(cell, sets["document"], sets["line"], document, line, sets["ignore"])

    def group_by(self, value: Any, rules: list[Rule], records: Records | None
                 ) -> FieldRule | None:
        if value is None:
            return None
        if records is not None:
            raise self.fail("'group_by' and 'records' exclude each other: with record types "
                            "each document record starts a document", "group_by")
        rule = next((r for r in rules if r.name == value), None)
        if not isinstance(rule, FieldRule) or rule.scope != "document" \
                or not rule.cell.reads_file:
            raise self.fail(f"group_by {value!r}: name a document field mapped from a column "
                            "(order_number)", "group_by")
        return rule

    def match(self, spec: Any, has_header: bool) -> CsvMatch:
        at = ("match",)
        if not isinstance(spec, dict) or not spec:
            raise self.fail("'match' is a mapping: columns[, exact], filename, first_line",
                            *at)
        self.check_keys(spec, MATCH_KEYS, *at, within=" in match")
        columns: list[tuple[str, ...]] = []
        if spec.get("columns") is not None:
            if not has_header:
                raise self.fail("match 'columns' needs a header row", *at, "columns")
            raw = spec["columns"]
            if not isinstance(raw, list) or not raw:
                raise self.fail("match 'columns' is a list of header names (a name may be a "
                                "list of aliases)", *at, "columns")
            for i, item in enumerate(raw):
                columns.append(self.names(item, (*at, "columns", str(i))))
        exact = spec.get("exact", True)
        if not isinstance(exact, bool):
            raise self.fail("match 'exact' is true (no other columns) or false", *at, "exact")
        first_line = None
        if spec.get("first_line") is not None:
            try:
                first_line = re.compile(str(spec["first_line"]))
            except re.error as exc:
                raise self.fail(f"match first_line is not a regular expression: {exc}",
                                *at, "first_line") from exc
        filename = spec.get("filename")
        if not (columns or filename or first_line):
            raise self.fail("'match' needs columns, filename or first_line", *at)
        return CsvMatch(tuple(columns), exact, filename, first_line)

    def senders(self, spec: Any, rules: list[Rule]) -> tuple[SenderRule, ...]:
        if spec is None:
            return ()
        items = spec if isinstance(spec, list) else [spec]
        out = []
        for i, item in enumerate(items):
            at = ("sender", str(i)) if isinstance(spec, list) else ("sender",)
            if not isinstance(item, dict) or set(item) != SENDER_KEYS:
                raise self.fail("'sender' is {field: <document field>, scheme: gln | vat | "
                                "siren | siret | email | unb} (or a list of them)", *at)
            rule = next((r for r in rules if r.name == item["field"]), None)
            if not isinstance(rule, FieldRule) or rule.scope != "document":
                raise self.fail(f"sender field {item['field']!r} is not a document field of "
                                "this mapping", *at, "field")
            if item["scheme"] not in SCHEMES:
                raise self.fail(f"sender scheme {item['scheme']!r}: one of "
                                f"{', '.join(SCHEMES)}", *at, "scheme")
            out.append(SenderRule(rule.name, item["scheme"]))
        return tuple(out)


def compile_csv_mapping(data: dict[str, Any], where: Where, file: str, *,
                        own_match: bool = True) -> CsvMapping:
    """Compile a merged CSV mapping document; MappingDefinitionError names file and line.

    ``own_match`` is False for an overlay that inherits ``match``: it is chosen by id only.
    """
    return _Compiler(data, where, file, own_match).compile()


# -- canonical model helpers ----------------------------------------------------------------


def _unannotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _bases(annotation: Any) -> set[Any]:
    return {_unannotated(a) for a in union_args(annotation) if a is not type(None)}






def _required(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


def _cells_named(rule: Rule) -> bool:
    if isinstance(rule, EntryListRule):
        return any(_cells_named(r) for entry in rule.entries for r in entry)
    return bool(rule.cell.names) or any(c.names for c, _ in rule.where)
