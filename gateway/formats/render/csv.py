"""CSV renderer (syntax ``csv``): a canonical document as delimited rows, declared column by
column.

A mapping YAML under ``mappings/outbound/``::

    id: csv-pricelist-out
    document: price-list
    syntax: csv
    aliases: [csv]
    rows: items              # one row per element of this list; absent: one row
    delimiter: ";"           # default ","
    quoting: minimal         # minimal | all | none
    decimal: ","             # decimal mark of decimal columns, default "."
    date_format: "%d-%m-%Y"  # strftime of date columns, default ISO
    encoding: iso-8859-1     # default utf-8
    header: true             # the column names as the first row (default)
    line_terminator: "\\r\\n"
    codes: {status: {accepted: A, rejected: R}}
    columns:
      - {name: "GTIN/EAN", path: gtin}                  # relative to the row
      - {name: Number, path: /price_list_number}         # "/": from the document
      - {name: Retail, path: ["prices[specification=RTP].amount",
                              "prices[type=AAE].amount"], type: decimal, required: true}
      - {name: Currency, value: EUR}                     # a constant
      - {name: From, path: valid_from, type: date}
      - {name: Status, path: status, code: status}

A path is dot-separated names, each optionally indexed: ``lines[0]`` (position) or
``prices[type=AAA]`` (the first element whose field has that value). A list of paths takes
the first that has a value. ``type`` is ``text`` (default), ``decimal`` (``places`` to
round half up) or ``date``. A ``required`` column without a value is a ``RenderError``
naming the canonical path (``items[2].prices[type=AAA].amount``); a character the
encoding cannot write is one too.

A partner may override ``delimiter``, ``quoting``, ``decimal``, ``date_format``,
``encoding``, ``header`` and ``line_terminator`` through ``RenderContext.options`` (its
profile's outbound options). The control reference is not used.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping.yamlsrc import Lines
from gateway.formats.render import Body, OutboundMapping, RenderContext, RenderError
from gateway.formats.render.xml import aliases_of, document_of

_QUOTING: dict[str, Literal[0, 1, 2, 3]] = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL, "none": csv.QUOTE_NONE}
_TYPES = ("text", "decimal", "date")
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                      r"(?:\[(?:(?P<index>-?\d+)|(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^\]]*))\])?$")
#: The settings a partner's ``ctx.options`` may override.
OPTIONS = ("delimiter", "quoting", "decimal", "date_format", "encoding", "header",
           "line_terminator")


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    index: int | None = None
    key: str | None = None
    value: str | None = None

    def text(self) -> str:
        if self.index is not None:
            return f"{self.name}[{self.index}]"
        if self.key is not None:
            return f"{self.name}[{self.key}={self.value}]"
        return self.name


@dataclass(frozen=True, slots=True)
class Path:
    """A canonical path, relative to the row or (``absolute``) to the document."""

    segments: tuple[Segment, ...]
    absolute: bool

    @classmethod
    def parse(cls, text: str) -> Path:
        absolute = text.startswith("/")
        parts = text.lstrip("/").split(".")
        segments = []
        for part in parts:
            found = _SEGMENT.match(part)
            if found is None:
                raise ValueError(f"{part!r} is not a path segment (name, name[0] or "
                                 "name[field=value])")
            index = found.group("index")
            segments.append(Segment(found.group("name"),
                                    int(index) if index is not None else None,
                                    found.group("key"), found.group("value")))
        return cls(tuple(segments), absolute)

    def resolve(self, value: Any) -> Any:
        for segment in self.segments:
            if not isinstance(value, dict):
                return None
            value = value.get(segment.name)
            if segment.index is not None or segment.key is not None:
                if not isinstance(value, list):
                    return None
                if segment.index is not None:
                    value = (value[segment.index]
                             if -len(value) <= segment.index < len(value) else None)
                else:
                    value = next((item for item in value if isinstance(item, dict)
                                  and str(item.get(segment.key)) == segment.value), None)
        return None if value in ("", [], {}) else value

    def text(self, row_path: str) -> str:
        inner = ".".join(s.text() for s in self.segments)
        if self.absolute or not row_path:
            return inner
        return f"{row_path}.{inner}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    paths: tuple[Path, ...] = ()
    value: str | None = None
    type: str = "text"
    places: int | None = None
    required: bool = False
    code: str | None = None


@dataclass(slots=True)
class CsvBody:
    data: bytes
    content_type: str = "text/csv"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return self.data


@dataclass(slots=True)
class CsvMapping:
    """An outbound CSV mapping (``OutboundMapping``)."""

    id: str
    document: str
    aliases: tuple[str, ...]
    file: str
    columns: tuple[Column, ...]
    rows: Path | None
    settings: dict[str, Any]
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    syntax: str = "csv"
    uses_control_ref: bool = False
    suffix: str = ".csv"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> CsvBody:
        settings = self.effective(ctx.options)
        out = io.StringIO()
        quoting = _QUOTING[settings["quoting"]]
        writer = csv.writer(out, delimiter=settings["delimiter"], quoting=quoting,
                            lineterminator=settings["line_terminator"],
                            escapechar="\\" if quoting == csv.QUOTE_NONE else None)
        if settings["header"]:
            writer.writerow([c.name for c in self.columns])
        for row_path, row in self._rows(document):
            writer.writerow([self._cell(c, document, row, row_path, settings)
                             for c in self.columns])
        text = out.getvalue()
        try:
            data = text.encode(settings["encoding"])
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            raise RenderError(f"{text[exc.start:exc.end]!r} cannot be written in "
                              f"{settings['encoding']}", mapping=self.id,
                              path=f"line {line} of the rendering") from None
        return CsvBody(data)

    def effective(self, options: dict[str, Any]) -> dict[str, Any]:
        """The mapping's settings with the partner's overrides; RenderError for a bad one."""
        settings = dict(self.settings)
        for key in OPTIONS:
            if key in options and options[key] is not None:
                settings[key] = options[key]
        problem = _check_settings(settings)
        if problem:
            raise RenderError(f"partner option: {problem}", mapping=self.id)
        return settings

    def _rows(self, document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if self.rows is None:
            return [("", document)]
        items = self.rows.resolve(document) or []
        if not isinstance(items, list):
            raise RenderError("the rows path is not a list", mapping=self.id,
                              path=self.rows.text(""))
        base = self.rows.text("")
        return [(f"{base}[{i}]", item) for i, item in enumerate(items)
                if isinstance(item, dict)]

    def _cell(self, column: Column, document: dict[str, Any], row: dict[str, Any],
              row_path: str, settings: dict[str, Any]) -> str:
        if column.value is not None:
            return column.value
        value = None
        for path in column.paths:
            value = path.resolve(document if path.absolute else row)
            if value is not None:
                break
        where = column.paths[0].text(row_path) if column.paths else column.name
        if value is None:
            if column.required:
                raise RenderError(f"a required value is missing (column {column.name!r})",
                                  mapping=self.id, path=where)
            return ""
        if column.code is not None:
            table = self.codes[column.code]
            hit = table.get(str(value), table.get("default"))
            if hit is None:
                raise RenderError(f"{value!r} has no code in table {column.code!r}",
                                  mapping=self.id, path=where)
            return hit
        if column.type == "decimal":
            return _decimal(value, column.places, settings["decimal"], self.id, where)
        if column.type == "date":
            return _date(value, settings["date_format"], self.id, where)
        return str(value)


def _decimal(value: Any, places: int | None, mark: str, mapping: str, where: str) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise RenderError(f"{value!r} is not a decimal number", mapping=mapping,
                          path=where) from None
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return format(number, "f").replace(".", mark)


def _date(value: Any, fmt: str, mapping: str, where: str) -> str:
    text = str(value)
    try:
        day = (dt.date.fromisoformat(text) if len(text) == 10
               else dt.datetime.fromisoformat(text).date())
    except ValueError:
        raise RenderError(f"{text!r} is not an ISO date", mapping=mapping,
                          path=where) from None
    return day.strftime(fmt)


def _check_settings(settings: dict[str, Any]) -> str | None:
    delimiter = settings["delimiter"]
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        return "'delimiter' is one character"
    if settings["quoting"] not in _QUOTING:
        return f"'quoting' is one of {', '.join(_QUOTING)}"
    if not isinstance(settings["decimal"], str) or len(settings["decimal"]) != 1:
        return "'decimal' is one character"
    if not isinstance(settings["date_format"], str) or "%" not in settings["date_format"]:
        return "'date_format' is a strftime format such as %d.%m.%Y"
    try:
        "".encode(str(settings["encoding"]))
    except LookupError:
        return f"unknown encoding {settings['encoding']!r}"
    if not isinstance(settings["header"], bool):
        return "'header' is true or false"
    if settings["line_terminator"] not in ("\n", "\r\n"):
        return "'line_terminator' is \\n or \\r\\n"
    return None


def compile_csv_renderer(data: dict[str, Any], file: str, lines: Lines) -> CsvMapping:
    """Compile an outbound CSV mapping (see the module docstring)."""
    settings: dict[str, Any] = {
        "delimiter": data.get("delimiter", ","), "quoting": data.get("quoting", "minimal"),
        "decimal": data.get("decimal", "."), "date_format": data.get("date_format", "%Y-%m-%d"),
        "encoding": data.get("encoding", "utf-8"), "header": data.get("header", True),
        "line_terminator": str(data.get("line_terminator", "\r\n"))}
    problem = _check_settings(settings)
    if problem:
        raise MappingDefinitionError(problem, file=file, line=lines.get((), 1))
    codes_raw = data.get("codes") or {}
    if not isinstance(codes_raw, dict) or not all(isinstance(v, dict)
                                                  for v in codes_raw.values()):
        raise MappingDefinitionError("'codes' maps a table name to {value: code}", file=file,
                                     line=lines.get(("codes",)))
    codes = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in codes_raw.items()}
    rows = None
    if data.get("rows"):
        try:
            rows = Path.parse(str(data["rows"]))
        except ValueError as exc:
            raise MappingDefinitionError(f"rows: {exc}", file=file,
                                         line=lines.get(("rows",))) from None
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise MappingDefinitionError("'columns' is a list of {name, path}", file=file,
                                     line=lines.get(("columns",), 1))
    columns = [_column(raw, i, codes, file, lines) for i, raw in enumerate(raw_columns)]
    return CsvMapping(id=str(data["id"]), document=document_of(data, file, lines),
                      aliases=aliases_of(data, file, lines), file=file,
                      columns=tuple(columns), rows=rows, settings=settings, codes=codes)


def _column(raw: Any, index: int, codes: dict[str, dict[str, str]], file: str,
            lines: Lines) -> Column:
    line = lines.get(("columns", str(index)))
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise MappingDefinitionError("a column is {name, path} or {name, value}", file=file,
                                     line=line)
    name = raw["name"]
    kind = str(raw.get("type", "text"))
    if kind not in _TYPES:
        raise MappingDefinitionError(f"column {name!r}: 'type' is one of {', '.join(_TYPES)}",
                                     file=file, line=line)
    code = raw.get("code")
    if code is not None and str(code) not in codes:
        raise MappingDefinitionError(f"column {name!r}: no code table {code!r}", file=file,
                                     line=line)
    if "value" in raw:
        return Column(name=name, value="" if raw["value"] is None else str(raw["value"]))
    texts = raw.get("path")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts:
        raise MappingDefinitionError(f"column {name!r} needs a 'path' or a 'value'",
                                     file=file, line=line)
    try:
        paths = tuple(Path.parse(str(t)) for t in texts)
    except ValueError as exc:
        raise MappingDefinitionError(f"column {name!r}: {exc}", file=file,
                                     line=line) from None
    places = raw.get("places")
    return Column(name=name, paths=paths, type=kind,
                  places=int(places) if places is not None else None,
                  required=bool(raw.get("required", False)),
                  code=str(code) if code is not None else None)


def _conforms(mapping: CsvMapping, body: CsvBody) -> tuple[OutboundMapping, Body]:
    """Never called: mypy checks here that the classes keep the render contract."""
    return mapping, body
