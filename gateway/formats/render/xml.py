"""XML renderer (syntax ``xml``): a canonical document made into UBL 2.1 or CII D16B through
a Jinja2 template, then parsed back and validated against its XSD before it leaves.

A mapping is a YAML file under ``mappings/outbound/`` and a template beside it::

    id: ubl-invoice-out
    document: invoice
    syntax: xml
    aliases: [ubl]
    # the XSD key(s) of gateway.formats.xml.schemas; with several, the one whose name
    # (after the colon) is the rendered root element's is used (Invoice / CreditNote)
    schema: [ubl-2.1:Invoice, ubl-2.1:CreditNote]
    template: ubl-invoice-out.xml.j2     # default: <id>.xml.j2 beside the YAML
    params: {customization: "urn:cen.eu:en16931:2017#compliant#..."}   # ``params.NAME``
    codes:                               # code tables, used as ``value | code('status')``
      status: {accepted: AP, rejected: RE, default: CA}

The template sees ``doc`` (the canonical document), ``ctx`` (the ``RenderContext``),
``params`` and these filters:

- ``req``: the value, or ``RenderError`` naming its canonical path (``lines[1].quantity``)
  when it is absent, None or empty. Every value a schema or profile requires goes through
  it; other values are tested with ``{% if line.gtin %}`` (a missing value is falsy and
  renders as nothing, never as ``None``). A name the canonical model does not have
  (``doc.invoice_numbr``) is a ``RenderError`` on the first rendering, not a silent blank.
- ``date`` (ISO ``2025-03-14``; ``date('%Y%m%d')`` for CII format 102) of a date or
  date-time string; ``dec`` (``dec(2)`` rounds half up to two places) of a decimal string;
  ``code('table')`` through the YAML's ``codes`` (``default`` for unknown values, else
  ``RenderError``); ``lower_bool`` for ``true``/``false``.

Autoescape is on: ``<``, ``&`` and quotes in values come out escaped. Every rendering is
parsed with the hardened parser (``gateway.formats.xml.safe``), validated against its XSD
and, for UBL, the shared code lists (``gateway.formats.xml.schemas``); an error there is a
``RenderError`` naming the element and the line of the rendering. The control reference is
not used: ``seal`` returns the bytes as rendered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args

import jinja2
from lxml import etree
from pydantic import BaseModel

from gateway.core.canonical import CANONICAL_MODELS, OUTBOUND_TYPES
from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping.yamlsrc import Lines
from gateway.formats.render import Body, OutboundMapping, RenderContext, RenderError
from gateway.formats.xml import schemas
from gateway.formats.xml.safe import XmlError, parse_xml

# -- canonical values that know their path -------------------------------------------------


class Missing(jinja2.ChainableUndefined):
    """A canonical value the document does not have; knows its path for ``req``."""

    __slots__ = ("_path",)

    def __init__(self, *args: Any, path: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_path",):
            raise AttributeError(name)
        return Missing(path=_join(self._path, name))

    def __getitem__(self, key: Any) -> Any:
        return Missing(path=_join(self._path, key))


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


Model = type[BaseModel]


def _model_of(annotation: Any) -> Model | None:
    """The canonical model inside a field's annotation (``Party | None``,
    ``list[InvoiceLine]``), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _field(model: Model, key: str) -> Model | None:
    """The model of field ``key`` of ``model`` (None: a plain value); RenderError when the
    model has no such field, so that a misspelt name in a template fails on the first
    rendering (the sample test) instead of leaving an element out for ever."""
    info = model.model_fields.get(key)
    if info is None:
        info = next((f for f in model.model_fields.values() if f.alias == key), None)
    if info is None:
        raise RenderError(f"the template asks for {key!r}, which the canonical "
                          f"{model.__name__} does not have")
    return _model_of(info.annotation)


class Node:
    """A dict of the canonical document with its path (``parties.seller``) and, when
    known, its canonical model (whose field names the template must use)."""

    __slots__ = ("data", "model", "path")

    def __init__(self, data: dict[str, Any], path: str, model: Model | None = None) -> None:
        self.data = data
        self.path = path
        self.model = model

    def get(self, key: str) -> Any:
        inner = _field(self.model, key) if self.model is not None else None
        return wrap(self.data.get(key), _join(self.path, key), inner)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __contains__(self, key: str) -> bool:
        return self.data.get(key) not in (None, "", [], {})


class Items:
    """A list of the canonical document with its path (``lines``)."""

    __slots__ = ("data", "model", "path")

    def __init__(self, data: list[Any], path: str, model: Model | None = None) -> None:
        self.data = data
        self.path = path
        self.model = model

    def __iter__(self) -> Iterator[Any]:
        for index, item in enumerate(self.data):
            yield wrap(item, f"{self.path}[{index}]", self.model)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def get(self, index: int) -> Any:
        if -len(self.data) <= index < len(self.data):
            return wrap(self.data[index], f"{self.path}[{index}]", self.model)
        return Missing(path=f"{self.path}[{index}]")


def wrap(value: Any, path: str, model: Model | None = None) -> Any:
    """``value`` as the template sees it: a Node, Items, a scalar, or Missing."""
    if value is None or value == "":
        return Missing(path=path)
    if isinstance(value, dict):
        return Node(value, path, model)
    if isinstance(value, list):
        return Items(value, path, model)
    return value


class _Environment(jinja2.Environment):
    """Attribute access on the document goes through ``Node`` / ``Items`` paths."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Node):
            return obj.get(attribute)
        if isinstance(obj, Missing):
            return Missing(path=_join(obj._path, attribute))
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Node) and isinstance(argument, str):
            return obj.get(argument)
        if isinstance(obj, Items) and isinstance(argument, int):
            return obj.get(argument)
        if isinstance(obj, Missing):
            return Missing(path=_join(obj._path, argument))
        return super().getitem(obj, argument)


# -- filters ---------------------------------------------------------------------------------


def _req(value: Any) -> Any:
    if isinstance(value, Missing):
        raise RenderError("a required value is missing", path=value._path or None)
    return value


def _date(value: Any, fmt: str = "%Y-%m-%d") -> str:
    if isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        text = str(value).strip()
        try:
            day = (dt.date.fromisoformat(text) if len(text) == 10
                   else dt.datetime.fromisoformat(text).date())
        except ValueError:
            raise RenderError(f"{text!r} is not an ISO date") from None
    return day.strftime(fmt)


def _dec(value: Any, places: int | None = None) -> str:
    if isinstance(value, jinja2.Undefined):
        return ""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise RenderError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise RenderError(f"{value!r} is not a decimal number")
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(number, "f")
    return "0" if text in ("-0", "+0") else text


def _lower_bool(value: Any) -> str:
    return "true" if value and not isinstance(value, jinja2.Undefined) else "false"


def environment(folder: Path, codes: dict[str, dict[str, str]], file: str) -> jinja2.Environment:
    """The template environment of a mapping whose templates are in ``folder`` (and,
    for a shared template, its parent)."""
    env = _Environment(
        loader=jinja2.FileSystemLoader([str(folder), str(folder.parent)]),
        autoescape=True, undefined=Missing, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True)

    def code(value: Any, table: str) -> str:
        if isinstance(value, jinja2.Undefined):
            return ""
        known = codes.get(table)
        if known is None:
            raise RenderError(f"no code table {table!r} in {file}")
        hit = known.get(str(value), known.get("default"))
        if hit is None:
            raise RenderError(f"{value!r} has no code in table {table!r}")
        return hit

    env.filters.update(req=_req, date=_date, dec=_dec, code=code, lower_bool=_lower_bool)
    return env


# -- the mapping -----------------------------------------------------------------------------


@dataclass(slots=True)
class XmlBody:
    """A validated XML rendering; the control reference is not part of it."""

    data: bytes
    content_type: str = "application/xml"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return self.data


@dataclass(slots=True)
class XmlTemplate:
    """A template, the XSD key(s) its renderings are validated against, its parameters."""

    id: str
    file: str
    template: jinja2.Template
    schema_keys: tuple[str, ...]
    #: the canonical type rendered (``invoice``): its model checks the template's names
    document: str
    params: dict[str, Any] = field(default_factory=dict)

    def render_xml(self, document: dict[str, Any], ctx: RenderContext) -> bytes:
        """The rendering of ``document``, parsed back and valid; RenderError otherwise."""
        try:
            text = self.template.render(doc=wrap(document, "", CANONICAL_MODELS.get(self.document)),
                                        ctx=ctx, params=self.params)
        except RenderError as exc:
            raise RenderError(exc.reason, mapping=self.id, path=exc.path) from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"the template fails: {exc}", mapping=self.id) from exc
        data = text.encode("utf-8")
        self.check(data)
        return data

    def check(self, data: bytes) -> None:
        """Parse ``data`` with the hardened parser and validate it; RenderError naming the
        element and line of the first fault."""
        root = None
        try:
            tree = parse_xml(data)
            root = tree.getroot()
            key = self.schema_for(etree.QName(root).localname)
            if schemas.schema_path(key) is None:
                raise RenderError(f"the schema {key!r} is not installed", mapping=self.id)
            schemas.validate(tree, key)
            if key.startswith("ubl-"):
                schemas.check_code_lists(root)
        except XmlError as exc:
            where = None
            if exc.position is not None:
                element = exc.position.element or "?"
                found = _find(root, element, exc.position.line) if exc.stage == "validate" \
                    else None
                where = f"{_element_path(found) if found is not None else element} " \
                        f"(line {exc.position.line})"
            raise RenderError(f"the rendering is not valid: {exc.reason}", mapping=self.id,
                              path=where) from exc

    def schema_for(self, root: str) -> str:
        for key in self.schema_keys:
            if key.rsplit(":", 1)[-1] == root:
                return key
        return self.schema_keys[0]


def _find(root: etree._Element | None, name: str, line: int | None) -> etree._Element | None:
    """The element named ``name`` (local name) on ``line`` of the rendering."""
    if root is None or line is None:
        return None
    for element in root.iter():
        if (isinstance(element.tag, str) and element.sourceline == line
                and etree.QName(element).localname == name):
            return element
    return None


def _element_path(element: etree._Element) -> str:
    """``Invoice/cac:InvoiceLine[2]/cbc:InvoicedQuantity``: prefixed names, with the
    position among same-named siblings where there are several."""
    steps = []
    node: etree._Element | None = element
    while node is not None:
        qname = etree.QName(node)
        name = f"{node.prefix}:{qname.localname}" if node.prefix else qname.localname
        parent = node.getparent()
        if parent is not None:
            same = [s for s in parent if s.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/".join(reversed(steps))


def load_template(data: dict[str, Any], file: str, lines: Lines, *,
                  default_suffix: str = ".xml.j2") -> XmlTemplate:
    """The template, schema keys, parameters and code tables a mapping YAML declares."""
    ident = str(data["id"])
    folder = Path(file).parent
    schema = data.get("schema")
    keys = (schema,) if isinstance(schema, str) else tuple(schema or ())
    if not keys or not all(isinstance(k, str) for k in keys):
        raise MappingDefinitionError("'schema' names the XSD key (ubl-2.1:Invoice) or a list "
                                     "of them", file=file, line=lines.get(("schema",)))
    unknown = [k for k in keys if schemas.schema_path(k) is None]
    if unknown:
        raise MappingDefinitionError(
            f"unknown schema key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(schemas.known_schemas()))}", file=file,
            line=lines.get(("schema",)))
    codes = data.get("codes") or {}
    if not isinstance(codes, dict) or not all(isinstance(v, dict) for v in codes.values()):
        raise MappingDefinitionError("'codes' maps a table name to {value: code}", file=file,
                                     line=lines.get(("codes",)))
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise MappingDefinitionError("'params' is a mapping", file=file,
                                     line=lines.get(("params",)))
    name = str(data.get("template") or f"{ident}{default_suffix}")
    env = environment(folder, {str(k): {str(a): str(b) for a, b in v.items()}
                               for k, v in codes.items()}, file)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise MappingDefinitionError(f"template {name} not found beside the mapping",
                                     file=file, line=lines.get(("template",), 1)) from None
    except jinja2.TemplateSyntaxError as exc:
        raise MappingDefinitionError(f"template {exc.filename}:{exc.lineno}: {exc.message}",
                                     file=file, line=lines.get(("template",), 1)) from exc
    return XmlTemplate(ident, file, template, keys, document_of(data, file, lines),
                       dict(params))


def aliases_of(data: dict[str, Any], file: str, lines: Lines) -> tuple[str, ...]:
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise MappingDefinitionError("'aliases' is a list of syntax names", file=file,
                                     line=lines.get(("aliases",)))
    return tuple(aliases)


def document_of(data: dict[str, Any], file: str, lines: Lines) -> str:
    document = data.get("document")
    if document not in OUTBOUND_TYPES:
        raise MappingDefinitionError(f"'document' must be one of {', '.join(OUTBOUND_TYPES)}",
                                     file=file, line=lines.get(("document",), 1))
    return str(document)


@dataclass(slots=True)
class XmlMapping:
    """An outbound XML mapping (``OutboundMapping``)."""

    id: str
    document: str
    aliases: tuple[str, ...]
    file: str
    xml: XmlTemplate
    syntax: str = "xml"
    uses_control_ref: bool = False
    suffix: str = ".xml"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> XmlBody:
        return XmlBody(self.xml.render_xml(document, ctx))


def compile_xml_renderer(data: dict[str, Any], file: str, lines: Lines) -> XmlMapping:
    """Compile an outbound XML mapping (see the module docstring)."""
    return XmlMapping(id=str(data["id"]), document=document_of(data, file, lines),
                      aliases=aliases_of(data, file, lines), file=file,
                      xml=load_template(data, file, lines))


def _conforms(mapping: XmlMapping, body: XmlBody) -> tuple[OutboundMapping, Body]:
    """Never called: mypy checks here that the classes keep the render contract."""
    return mapping, body
