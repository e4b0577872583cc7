"""Apply a CSV mapping to a file: rows grouped into documents, cells converted, each group
mapped on its own so that a bad row fails its document (or only itself) and no other.

Every error names its line and column (``line 17, column "Qty" (3): 'ten' is not a
number``) and carries a ``Position`` with ``line``, ``column`` (1-based field position),
``element`` (the header name) and ``tag`` (the record type, in record-type files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.core.deadline import check
from gateway.core.errors import MappingError, PayloadError, Position
from gateway.core.ids import message_id
from gateway.core.ports import Sender
from gateway.formats.csv.convert import CellError, to_date, to_decimal, to_gs1
from gateway.formats.csv.dialect import Decoded, Row, decode, detect_delimiter, read_rows
from gateway.formats.csv.mapping import (
    Cell,
    CsvMapping,
    EntryListRule,
    FieldRule,
    Rule,
    norm,
)

LABELS = {"order": "order", "price-list": "price list"}


@dataclass(slots=True)
class Table:
    """A file read with a mapping's dialect: its header (if any) and its data rows."""

    rows: list[Row]
    header: list[str] | None
    header_line: int | None
    first_line: str
    delimiter: str
    encoding: str
    warnings: list[str] = field(default_factory=list)
    #: Normalised header name -> 1-based position (the first column of that name).
    columns: dict[str, int] = field(default_factory=dict)


def read_table(mapping: CsvMapping, decoded: Decoded, *, limit: int | None = None) -> Table:
    """The rows of ``decoded`` as ``mapping`` reads them; ``limit`` stops after that many
    records past the skipped ones and the header (to recognise a file by its header)."""
    text = decoded.text
    warnings = [decoded.warning] if decoded.warning else []
    delimiter = mapping.delimiter
    if delimiter == "auto":
        found = detect_delimiter(text, mapping.quote)
        if found is None:
            raise PayloadError("the file is not delimited text: no delimiter among ; , tab | "
                               "splits its rows into columns", position=Position(line=1),
                               stage="parse")
        delimiter = found
    wanted = None if limit is None else mapping.skip_rows + int(mapping.header) + limit
    rows = read_rows(text, delimiter=delimiter, quote=mapping.quote, limit=wanted)
    rows = rows[mapping.skip_rows:]
    header = header_line = None
    columns: dict[str, int] = {}
    if mapping.header:
        if not rows:
            raise MappingError(f"the file has no header row (mapping {mapping.id} expects "
                               "one)", position=Position(line=1))
        head = rows.pop(0)
        header, header_line = [v.strip() for v in head.values], head.line
        for i, name in enumerate(header, 1):
            columns.setdefault(norm(name), i)
    first = next((line for line in text.splitlines() if line.strip()), "")
    return Table(rows, header, header_line, first, delimiter, decoded.encoding, warnings,
                 columns)


def decode_for(mapping: CsvMapping, data: bytes) -> Decoded:
    return decode(data, encoding=mapping.encoding, fallback=mapping.fallback_encoding)


@dataclass(slots=True)
class Group:
    """The rows of one document: its own rows, its lines' rows, and all of them in order."""

    rows: list[Row]
    doc_rows: list[Row]
    lines: list[list[Row]]
    error: MappingError | None = None

    @property
    def span(self) -> str:
        first, last = self.rows[0].line, self.rows[-1].line
        return f"line {first}" if first == last else f"lines {first}-{last}"


@dataclass(slots=True)
class GroupResult:
    """One document made from a group, or why it was not."""

    document: BaseModel | None
    error: MappingError | None
    description: str
    number: str | None
    span: str
    message_id: str
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def map_file(mapping: CsvMapping, data: bytes, *, filename: str | None, partner_id: str,
             transmission_id: str | None) -> list[GroupResult]:
    """Every document of ``data`` (decoded, read and grouped by ``mapping``)."""
    table = read_table(mapping, decode_for(mapping, data))
    return FileMapper(mapping, table, filename=filename).map(
        partner_id=partner_id, transmission_id=transmission_id)


@dataclass(frozen=True, slots=True)
class _Bound:
    """A Cell placed in this file: its position (None: not in this file) and its label."""

    position: int | None
    label: str
    name: str | None


class FileMapper:
    """One mapping applied to one table: binds columns once, groups rows, maps each group."""

    def __init__(self, mapping: CsvMapping, table: Table, *, filename: str | None) -> None:
        self.mapping = mapping
        self.table = table
        self.filename = filename
        self.stem = Path(filename).stem if filename else ""
        self.warnings: list[str] = list(table.warnings)
        self._bound: dict[int, _Bound] = {}
        self._folded: dict[int, dict[str, str]] = {}
        self._check_columns()

    # -- columns ----------------------------------------------------------------------------

    def bind(self, cell: Cell) -> _Bound:
        # By identity: a mapping's cells live as long as it does, and hashing a frozen
        # dataclass on every cell of a 100,000-row list costs more than the lookup.
        known = self._bound.get(id(cell))
        if known is not None:
            return known
        if cell.position is not None:
            name = None
            if self.table.header and cell.position <= len(self.table.header):
                name = self.table.header[cell.position - 1] or None
            label = f'column "{name}" ({cell.position})' if name else f"column {cell.position}"
            bound = _Bound(cell.position, label, name)
        else:
            position = next((self.table.columns[norm(n)] for n in cell.names
                             if norm(n) in self.table.columns), None)
            if position is None:
                bound = _Bound(None, f"column {cell.describe()}", None)
            else:
                assert self.table.header is not None
                name = self.table.header[position - 1]
                bound = _Bound(position, f'column "{name}" ({position})', name)
        self._bound[id(cell)] = bound
        return bound

    def folded_codes(self, rule: FieldRule) -> dict[str, str]:
        """The rule's code list with case-folded keys (made once per rule)."""
        folded = self._folded.get(id(rule))
        if folded is None:
            folded = self._folded[id(rule)] = {k.casefold(): v
                                                for k, v in (rule.codes or {}).items()}
        return folded

    def _check_columns(self) -> None:
        """A required field, the group key or the record type whose column the header
        lacks fails the whole file: every document would fail alike."""
        if not self.mapping.header:
            return
        needed: list[tuple[str, Cell]] = []
        records = self.mapping.records
        if records is not None and records.type.names:
            needed.append(("the record type", records.type))
        group_by = self.mapping.group_by
        if group_by is not None:
            needed.append((group_by.name, group_by.cell))
        for rule in _field_rules(self.mapping.rules):
            if rule.required and rule.cell.names:
                needed.append((rule.name, rule.cell))
        for name, cell in needed:
            if self.bind(cell).position is None:
                shown = "; ".join(self.table.header or []) or "(empty)"
                raise MappingError(
                    f"the header (line {self.table.header_line}) has no column for {name} "
                    f"(looked for {cell.describe()}); its columns are: {shown}",
                    field=name, position=Position(line=self.table.header_line))

    # -- grouping ---------------------------------------------------------------------------

    def groups(self) -> list[Group]:
        rows = self.table.rows
        if not rows:
            raise MappingError(f"the file has no data rows (mapping {self.mapping.id})",
                               position=Position(line=self.table.header_line or 1))
        if self.mapping.records is not None:
            return self._by_records(rows)
        key_rule = self.mapping.group_by
        if key_rule is None:
            return [Group(rows, rows[:1], [[r] for r in rows])]
        bound = self.bind(key_rule.cell)
        assert bound.position is not None
        groups: dict[str, Group] = {}
        out: list[Group] = []
        for row in rows:
            key = row.get(bound.position)
            if not key:
                label = key_rule.name.rsplit(".", 1)[-1].replace("_", " ")
                error = MappingError(
                    f"line {row.line}, {bound.label}: no {label}, so the row belongs to no "
                    f"{LABELS[self.mapping.document]}", field=key_rule.name,
                    position=self._position(row, bound))
                out.append(Group([row], [row], [], error))
                continue
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group([], [row], [])
                out.append(group)
            group.rows.append(row)
            group.lines.append([row])
        return out

    def _by_records(self, rows: list[Row]) -> list[Group]:
        records = self.mapping.records
        assert records is not None
        type_at = self.bind(records.type).position
        assert type_at is not None
        out: list[Group] = []
        current: Group | None = None
        line: list[Row] | None = None
        orphans: Group | None = None
        unknown: dict[str, list[int]] = {}
        for row in rows:
            kind = row.get(type_at)
            if kind in records.document:
                current, line, orphans = Group([row], [row], []), None, None
                out.append(current)
            elif kind in records.ignore:
                continue
            elif kind not in records.document_records and kind not in records.line_records:
                unknown.setdefault(kind, []).append(row.line)
                continue
            elif current is None:
                if orphans is None:
                    starters = "/".join(sorted(records.document))
                    orphans = Group([], [row], [], MappingError(
                        f"line {row.line}: record {kind} comes before the first {starters} "
                        "record, so it belongs to no document",
                        position=Position(line=row.line, tag=kind)))
                    out.append(orphans)
                orphans.rows.append(row)
            elif kind in records.line:
                line = [row]
                current.rows.append(row)
                current.lines.append(line)
            elif kind in records.line_records:
                current.rows.append(row)
                if line is None:
                    if current.error is None:
                        starters = "/".join(sorted(records.line))
                        current.error = MappingError(
                            f"line {row.line}: record {kind} comes before any {starters} "
                            "record of its document", position=Position(line=row.line, tag=kind))
                    continue
                line.append(row)
            else:
                current.rows.append(row)
                current.doc_rows.append(row)
        for kind, lines in unknown.items():
            self.warnings.append(
                f"record type {kind!r} is not in mapping {self.mapping.id}; {len(lines)} "
                f"row(s) ignored (first at line {lines[0]}); list it under records.ignore")
        if not out:
            raise MappingError(f"the file has no {'/'.join(sorted(records.document))} record "
                               f"(mapping {self.mapping.id})", position=Position(line=1))
        return out

    # -- mapping ----------------------------------------------------------------------------

    def senders(self) -> list[Sender]:
        """The senders the mapping's ``sender`` fields name, over every group, without
        mapping the documents (a cell that cannot be read names no sender)."""
        found: list[Sender] = []
        for group in self.groups():
            if group.error is not None:
                continue
            run = _Run(self, group)
            for sender in self.mapping.senders:
                rule = self.mapping.rule(sender.field)
                assert rule is not None
                try:
                    value = run.value(rule, group.doc_rows, optional=True)
                except MappingError:
                    continue
                item = Sender(str(value), sender.scheme) if value else None
                if item is not None and item not in found:
                    found.append(item)
        return found

    def map(self, *, partner_id: str, transmission_id: str | None) -> list[GroupResult]:
        return [self.map_group(g, partner_id=partner_id, transmission_id=transmission_id)
                for g in self.groups()]

    def map_group(self, group: Group, *, partner_id: str,
                  transmission_id: str | None) -> GroupResult:
        mapping = self.mapping
        run = _Run(self, group)
        number = run.raw_number()
        label = LABELS[mapping.document]
        description = f"{label} {number} ({group.span})" if number else \
            f"{label} on {group.span}"
        digest = _digest(group.rows)
        fallback_id = message_id(partner_id, mapping.document, number, group.span, digest)
        try:
            if group.error is not None:
                raise group.error
            doc = run.document()
        except MappingError as exc:
            return GroupResult(None, exc, description, number, group.span, fallback_id,
                               warnings=run.warnings)
        senders = []
        for rule in mapping.senders:
            value = _get_path(doc, mapping.rule(rule.field).target)  # type: ignore[union-attr]
            if value:
                senders.append(Sender(str(value), rule.scheme))
        number = str(doc.get(mapping.model.business_field) or number or "")  # type: ignore[attr-defined]
        issue = doc.get("issue_date")
        sender = senders[0] if senders else None
        ident = message_id(partner_id, mapping.document, number,
                           issue.isoformat() if issue is not None else None,
                           sender.id if sender else None, digest)
        doc.update(message_id=ident, partner=partner_id, source=dict(
            format="csv", standard=mapping.standard, version=mapping.version,
            mapping=mapping.id, sender_id=sender.id if sender else None,
            sender_qualifier=sender.qualifier if sender else None, filename=self.filename,
            transmission_id=transmission_id))
        description = f"{label} {number} ({group.span})" if number else description
        try:
            document = mapping.model.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            error = MappingError(f"{group.span}: the {label} does not fit its canonical "
                                 f"schema: {where}: {first['msg']}",
                                 position=Position(line=group.rows[0].line))
            return GroupResult(None, error, description, number, group.span, ident,
                               senders, run.warnings)
        return GroupResult(document, None, description, number, group.span, ident, senders,
                           run.warnings)

    @staticmethod
    def _position(row: Row | None, bound: _Bound | None, tag: str | None = None) -> Position:
        return Position(line=row.line if row else None,
                        column=bound.position if bound else None,
                        element=bound.name if bound else None, tag=tag)


class _Run:
    """One group being mapped: reads its cells and gathers its warnings."""

    def __init__(self, mapper: FileMapper, group: Group) -> None:
        self.mapper = mapper
        self.mapping = mapper.mapping
        self.group = group
        self.warnings: list[str] = []
        self._codes_seen: set[tuple[str, str]] = set()
        records = self.mapping.records
        self.type_at = mapper.bind(records.type).position if records is not None else None

    def raw_number(self) -> str | None:
        """The business number as written (for a failed group's description)."""
        rule = self.mapping.rule(self.mapping.model.business_field)  # type: ignore[attr-defined]
        if rule is None:
            return None
        if rule.cell.constant is not None:
            return str(rule.cell.constant)
        if rule.cell.from_filename:
            return self.mapper.stem or None
        row = self.pick(rule, self.group.doc_rows)
        position = self.mapper.bind(rule.cell).position
        return (row.get(position) or None) if row is not None and position else None

    def document(self) -> dict[str, Any]:
        mapping = self.mapping
        doc: dict[str, Any] = {}
        for rule in mapping.rules_of("document"):
            assert isinstance(rule, FieldRule)  # entry lists are per line (the compiler checks)
            value = self.value(rule, self.group.doc_rows)
            if value is not None:
                _set_path(doc, rule.target, value)
        if mapping.group_by is not None and len(self.group.rows) > 1:
            self.check_same_header()
        lines: list[dict[str, Any]] = []
        first_error: MappingError | None = None
        for rows in self.group.lines:
            check()  # the per-transmission time limit (``gateway.core.deadline``), once a line
            try:
                lines.append(self.line(rows))
            except MappingError as exc:
                if mapping.bad_rows != "skip-row":
                    raise
                first_error = first_error or exc
                self.warnings.append(f"{exc.reason}; row left out (bad_rows: skip-row)")
        if first_error is not None and not lines:
            raise first_error
        doc[mapping.detail] = lines
        return doc

    def line(self, rows: list[Row]) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for rule in self.mapping.rules_of("line"):
            if isinstance(rule, EntryListRule):
                entries = [e for e in (self.entry(spec, rule, rows) for spec in rule.entries)
                           if e is not None]
                if entries:
                    _set_path(item, rule.target, entries)
                continue
            value = self.value(rule, rows)
            if value is not None:
                _set_path(item, rule.target, value)
        return item

    def entry(self, spec: tuple[FieldRule, ...], rule: EntryListRule,
              rows: list[Row]) -> dict[str, Any] | None:
        """One price: made when its key field (the amount) has a value, else left out."""
        key = next(r for r in spec if r.target == (rule.key,))
        if self.value(key, rows, optional=True) is None:
            return None
        entry: dict[str, Any] = {}
        for sub in spec:
            value = self.value(sub, rows)
            if value is not None:
                entry[sub.target[0]] = value
        return entry

    def check_same_header(self) -> None:
        """Warn when a later row of a group disagrees with the first on a header field
        (the first row's value is kept): a sign of two orders sharing a number."""
        first = self.group.rows[0]
        for rule in self.mapping.rules_of("document"):
            if not isinstance(rule, FieldRule) or not rule.cell.reads_file or rule.where:
                continue
            bound = self.mapper.bind(rule.cell)
            if bound.position is None:
                continue
            wanted = first.get(bound.position)
            for row in self.group.rows[1:]:
                text = row.get(bound.position)
                if text != wanted:
                    self.warnings.append(
                        f"line {row.line}, {bound.label}: {text!r} differs from the first row "
                        f"of its {LABELS[self.mapping.document]} (line {first.line}: "
                        f"{wanted!r}); the first is kept")
                    break

    # -- cells ------------------------------------------------------------------------------

    def pick(self, rule: FieldRule, rows: list[Row]) -> Row | None:
        """The first row of ``rows`` of the rule's record type that meets its ``where``."""
        records = self.mapping.records
        wanted: frozenset[str] | None = None
        if records is not None:
            wanted = frozenset([rule.record]) if rule.record else (
                records.document if rule.scope == "document" else records.line)
        for row in rows:
            if wanted is not None and row.get(self.type_at or 1) not in wanted:
                continue
            if rule.where and not all(
                    row.get(self.mapper.bind(cell).position or 0) in values
                    for cell, values in rule.where):
                continue
            return row
        return None

    def value(self, rule: FieldRule, rows: list[Row], *, optional: bool = False) -> Any:
        cell = rule.cell
        if cell.constant is not None:
            return [cell.constant] if rule.many else cell.constant
        row: Row | None = None
        bound: _Bound | None = None
        if cell.from_filename:
            text = self.mapper.stem
        else:
            row = self.pick(rule, rows)
            bound = self.mapper.bind(cell)
            text = row.get(bound.position) if row is not None and bound.position else ""
        if not text:
            if rule.default is not None:
                return [rule.default] if rule.many else rule.default
            if rule.required and not optional:
                raise self.missing(rule, row, bound, rows)
            return None
        value = self.convert(rule, text, row, bound)
        return [value] if rule.many and value is not None else value

    def place(self, row: Row | None, bound: _Bound | None) -> str:
        if row is None:
            return "the file name" if bound is None else self.group.span
        kind = row.get(self.type_at) if self.type_at else None
        record = f", record {kind}" if kind else ""
        return f"line {row.line}{record}, {bound.label if bound else 'the file name'}"

    def missing(self, rule: FieldRule, row: Row | None, bound: _Bound | None,
                rows: list[Row]) -> MappingError:
        if row is None and not rule.cell.from_filename:
            records = self.mapping.records
            what = "row"
            if records is not None:
                kinds = [rule.record] if rule.record else sorted(
                    records.document if rule.scope == "document" else records.line)
                what = f"{'/'.join(k for k in kinds if k)} record"
            cond = "".join(f" with {self.mapper.bind(c).label} = {'/'.join(sorted(v))}"
                           for c, v in rule.where)
            first = rows[0] if rows else self.group.rows[0]
            span = f"line {first.line}" if len(rows) <= 1 else \
                f"lines {rows[0].line}-{rows[-1].line}"
            return MappingError(f"{span}: no {what}{cond} gives {rule.name}", field=rule.name,
                                position=Position(line=first.line, tag=rule.record))
        return MappingError(f"{self.place(row, bound)}: no value for {rule.name}, which is "
                            "required", field=rule.name,
                            position=FileMapper._position(row, bound, self._tag(row)))

    def _tag(self, row: Row | None) -> str | None:
        return row.get(self.type_at) if row is not None and self.type_at else None

    def convert(self, rule: FieldRule, text: str, row: Row | None, bound: _Bound | None) -> Any:
        mapping = self.mapping
        try:
            if rule.type == "decimal":
                return to_decimal(text, decimal_mark=mapping.decimal,
                                  thousands=mapping.thousands)
            if rule.type == "date":
                return to_date(text, rule.formats)
            if rule.type in ("gtin", "gln"):
                return to_gs1(text, rule.type)
        except CellError as exc:
            if rule.invalid == "warn" and rule.type in ("gtin", "gln"):
                self.warnings.append(f"{self.place(row, bound)}: {exc}; {rule.name} left empty")
                return None
            raise MappingError(f"{self.place(row, bound)}: {exc}", field=rule.name,
                               position=FileMapper._position(row, bound, self._tag(row))
                               ) from exc
        if rule.codes is None:
            return text
        if text in rule.codes:
            return rule.codes[text]
        folded = self.mapper.folded_codes(rule).get(text.casefold())
        if folded is not None:  # people write 'KG', 'kg' and 'Kg' alike
            return folded
        if rule.invalid == "fail":
            raise MappingError(
                f"{self.place(row, bound)}: {text!r} is not a code {rule.name} knows "
                f"({', '.join(sorted(rule.codes))})", field=rule.name,
                position=FileMapper._position(row, bound, self._tag(row)))
        if (rule.name, text) not in self._codes_seen:
            self._codes_seen.add((rule.name, text))
            self.warnings.append(f"{self.place(row, bound)}: {rule.name} code {text!r} is not "
                                 "in the mapping's code list; kept as sent")
        return text


def _field_rules(rules: tuple[Rule, ...]) -> list[FieldRule]:
    out: list[FieldRule] = []
    for rule in rules:
        if isinstance(rule, EntryListRule):
            out += [r for entry in rule.entries for r in entry]
        else:
            out.append(rule)
    return out


def _set_path(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = value


def _get_path(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)  # type: ignore[assignment]
    return obj


def _digest(rows: list[Row]) -> str:
    """A short digest of a group's cells: CSV has no control reference, so the content
    tells one sending of a document from a changed one (see docs/csv-mappings.md)."""
    h = hashlib.sha256()
    for row in rows:
        h.update("\x1f".join(row.values).encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]
