"""XPath mappings (``format: xml``): a YAML file says where each canonical field is.

One engine for every XML the gateway reads: UBL, CII, Factur-X, Order-X and partners' own
XML. A mapping names the documents it claims (``match``: root element, namespace, optional
customization and profile patterns), the namespace prefixes its paths use, who sent the
document (``senders``) and, under ``fields``, an XPath (or several, tried in order) for each
canonical field, relative to the root or to the node of the enclosing object or list item.
A file that holds several documents (a partner's ``<envelope>`` of ``<message>`` orders) says
so with ``documents``: an XPath from the root selecting the node of each document, to which
``fields`` and ``senders`` are then relative. The file format is described in
``docs/xml-mappings.md``.

Loading is strict, as for EDIFACT mappings: an unknown key, a canonical field the model does
not have, a rule of the wrong shape for its field, an XPath that does not compile or uses an
undeclared prefix stops with the file and line (``MappingDefinitionError``). Every XPath is
compiled once, at load.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import BaseModel, ValidationError

from gateway.core import iso6523
from gateway.core.errors import MappingDefinitionError, MappingError, Position
from gateway.core.ids import message_id
from gateway.core.iso6523_codes import CODES as ICD_CODES
from gateway.core.ports import Sender
from gateway.formats.mapping.convert import (
    DATE_FORMATS,
    ConversionError,
    to_date,
    to_decimal,
    to_gln,
    to_gtin,
)
from gateway.formats.mapping.frontend import GATEWAY_FIELDS, DefinitionCompiler, Where
from gateway.formats.mapping.modelinfo import is_list, model_of

TOP_KEYS = frozenset({"id", "description", "document", "standard", "version", "match",
                      "namespaces", "documents", "senders", "fields", "extends"})
DOCUMENTS_KEYS = frozenset({"each", "when"})
MATCH_KEYS = frozenset({"root", "namespace", "customization", "profile", "when"})
FIELD_KEYS = frozenset({"path", "type", "required", "all", "codes", "format", "default"})
OBJECT_KEYS = frozenset({"at", "fields", "required"})
LIST_KEYS = frozenset({"each", "fields", "required"})
SENDER_KEYS = frozenset({"path", "scheme", "scheme_from", "codes"})
#: Identifier schemes a sender may be named by (``PartnerDirectory.by_identifier``).
SCHEMES = frozenset({"gln", "vat", "siren", "siret", "email", "unb", "iso6523"})
#: Scheme codes documents put in ``@schemeID`` (ISO/IEC 6523 ICD as Peppol's EAS and
#: EN 16931 use them, UN/CEFACT 3055 and TaxScheme ids), to the schemes above. Any other
#: ICD code of the Peppol list (``0192``), a Peppol scheme id (``NO:ORG``) or
#: ``iso6523-actorid-upis`` names an ``iso6523`` sender ``<ICD>:<value>`` (``_icd_sender``).
SCHEME_CODES: dict[str, str] = {
    "0088": "gln", "GLN": "gln",
    "0009": "siret", "SIRET": "siret",
    "0002": "siren", "SIREN": "siren",
    "9957": "vat", "VA": "vat", "VAT": "vat",
    "EM": "email",
}
# ISO 8601 calendar date, with an optional time and zone (xs:date, xs:dateTime).
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                       r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?")
_PROBE = etree.fromstring(b"<probe/>")


@dataclass(frozen=True, slots=True)
class XPathRule:
    """A compiled XPath with the text it came from (for messages)."""

    text: str
    xpath: etree.XPath

    def __call__(self, node: etree._Element) -> Any:
        try:
            return self.xpath(node)
        except etree.XPathError as exc:  # compiled and probed, but this document upsets it
            raise MappingError(f"XPath {self.text!r} failed on this document: {exc}",
                               position=Position(line=node.sourceline,
                                                 element=self.text)) from exc


@dataclass(frozen=True, slots=True)
class XmlField:
    """One canonical value: the first non-empty node of the first path that has one."""

    name: str
    parts: tuple[str, ...]
    paths: tuple[XPathRule, ...]
    type: str = "text"
    required: bool = False
    all: bool = False
    codes: dict[str, str] | None = None
    format: str | None = None
    default: Any = None


@dataclass(frozen=True, slots=True)
class XmlObject:
    """A canonical object (``fields``, at the node ``at``) or list of objects (one per node
    of ``each``), whose rules are relative to that node."""

    name: str
    parts: tuple[str, ...]
    node: XPathRule | None
    rules: tuple[XmlField | XmlObject, ...]
    each: bool
    required: bool = False


@dataclass(frozen=True, slots=True)
class SenderRule:
    """Where the sender's identifiers are, and which scheme each is in."""

    path: XPathRule
    scheme: str | None
    scheme_from: XPathRule | None
    codes: dict[str, str]


@dataclass(frozen=True, slots=True)
class XmlMatch:
    """Which documents a mapping claims. ``namespace`` None means no namespace, ``*`` any;
    ``customization`` and ``profile`` are regular expressions searched in the document's
    customization (guideline) id and profile (business process) id."""

    root: str
    namespace: str | None
    customization: re.Pattern[str] | None = None
    profile: re.Pattern[str] | None = None
    #: An XPath that must be true of the document (``when``): partners' own XML often uses
    #: one root element for several kinds of document (a Bots ``<message>`` is an invoice
    #: or a despatch advice), told apart only by what they hold.
    when: Any = None
    when_text: str | None = None

    def matches(self, root: str, namespace: str | None, customization: str | None,
                profile: str | None, document: Any = None) -> bool:
        if root != self.root:
            return False
        if self.namespace != "*" and (namespace or None) != self.namespace:
            return False
        if self.customization is not None and not self.customization.search(customization or ""):
            return False
        if self.profile is not None and not self.profile.search(profile or ""):
            return False
        if self.when is not None:
            # Without the document a content condition cannot hold.
            return document is not None and bool(self.when(document))
        return True

    @property
    def specificity(self) -> int:
        """How narrow the match is: a mapping for one profile wins over a general one."""
        return ((self.namespace != "*") + 2 * (self.customization is not None)
                + 2 * (self.profile is not None) + 2 * (self.when is not None))

    def describe(self) -> str:
        text = f"{self.root} in {self.namespace or '(no namespace)'}"
        if self.customization is not None:
            text += f", customization /{self.customization.pattern}/"
        if self.profile is not None:
            text += f", profile /{self.profile.pattern}/"
        if self.when_text is not None:
            text += f", when {self.when_text}"
        return text


@dataclass(frozen=True, slots=True)
class DocumentsRule:
    """Which nodes of a file are each one document (``documents``).

    ``each`` is evaluated from the root; ``when``, evaluated at each node, tells a document
    of this mapping from a node of another kind (a Bots ``<message>`` whose ``<type>`` is not
    ``orders``), which is skipped as unsupported rather than failed. ``file`` and ``line``
    are where the key is, for a sample in which ``each`` selects nothing.
    """

    each: XPathRule
    when: XPathRule | None
    file: str
    line: int | None


@dataclass(frozen=True, slots=True)
class DocumentNode:
    """One node of a file that is a document, or (``skipped`` says why) is not one."""

    node: etree._Element
    #: 1-based position among the nodes ``documents`` selects, and how many it selects.
    index: int = 1
    count: int = 1
    skipped: str | None = None

    @property
    def label(self) -> str:
        """``message 2 of 3 at line 58``: how an operator finds the node in the file."""
        name = etree.QName(self.node).localname
        return f"{name} {self.index} of {self.count} at line {self.node.sourceline}"


@dataclass(slots=True)
class XmlMapped:
    """A canonical document made from an XML document, with what was odd about it."""

    document: BaseModel
    document_type: str
    mapping_id: str
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class XmlMapping:
    """A loaded, checked ``format: xml`` mapping (the contract of ``registry.COMPILERS``)."""

    id: str
    document: str
    standard: str
    version: str | None
    match: XmlMatch | None
    auto_match: bool
    namespaces: dict[str, str]
    rules: tuple[XmlField | XmlObject, ...]
    senders: tuple[SenderRule, ...]
    file: str
    model: type[BaseModel]
    description: str | None = None
    extends: str | None = None
    #: Several documents in one file: which nodes they are (None: the root is the document).
    documents: DocumentsRule | None = None
    format: str = field(default="xml", init=False)
    sample_suffix: str = field(default=".xml", init=False)

    def document_nodes(self, root: etree._Element) -> list[DocumentNode]:
        """The documents of the file under ``root``, in document order: the root itself
        without ``documents``, else each element ``documents`` selects, those its ``when``
        rejects marked ``skipped``. Empty when ``documents`` selects nothing; MappingError
        when its XPath fails on this file."""
        rule = self.documents
        if rule is None:
            return [DocumentNode(root)]
        found = rule.each(root)
        if not isinstance(found, list):  # compiled as a node-set; guard all the same
            raise MappingError(f"documents {rule.each.text!r} does not select elements",
                               position=Position(line=root.sourceline, element=rule.each.text))
        nodes = [n for n in found if isinstance(n, etree._Element) and isinstance(n.tag, str)]
        out = []
        for index, node in enumerate(nodes, 1):
            out.append(DocumentNode(node, index, len(nodes)))
            if rule.when is not None and not rule.when(node):
                out[-1] = DocumentNode(
                    node, index, len(nodes),
                    f"unsupported {out[-1].label}: not a document mapping {self.id!r} reads "
                    f"(its documents 'when' {rule.when.text!r} is false), skipped")
        return out

    def sender_ids(self, root: etree._Element) -> list[Sender]:
        """Every identifier of the sending party the file gives, in the mapping's order
        (``Sender.qualifier`` is the scheme: gln, vat, siren, siret, email, unb); for a file
        of several documents, those of each document in turn, without repeats."""
        if self.documents is None:
            return self.document_senders(root)
        try:
            nodes = self.document_nodes(root)
        except MappingError:
            return []
        found: list[Sender] = []
        for node in nodes:
            found += [s for s in self.document_senders(node.node) if s not in found]
        return found

    def document_senders(self, node: etree._Element) -> list[Sender]:
        """The sender's identifiers as the document at ``node`` gives them (its own, for
        its ``message_id``): the ``senders`` rules evaluated at that node."""
        found: list[Sender] = []
        for rule in self.senders:
            try:
                values = _values(rule.path(node))
            except MappingError:
                continue  # an identifier the mapping cannot read does not name the sender
            for text, origin in values:
                scheme = rule.scheme
                if scheme is None and rule.scheme_from is not None and origin is not None:
                    try:
                        code = next((t for t, _ in _values(rule.scheme_from(origin))), None)
                    except MappingError:
                        code = None
                    if code is not None:
                        scheme = rule.codes.get(code) or SCHEME_CODES.get(code.upper())
                        if scheme is None:
                            scheme, text = _icd_sender(code.strip(), text)
                        elif scheme == "siren" and len(text) == 14 and text.isdigit():
                            scheme = "siret"  # ICD 0002 holds SIRETs too (Peppol list)
                if scheme is None:
                    continue
                sender = Sender(text, scheme)
                if sender not in found:
                    found.append(sender)
        return found

    def reference(self, root: etree._Element) -> tuple[str | None, str | None]:
        """(business number, ISO issue date) as the document gives them, for naming a
        document that fails: what ``map`` would use for its ``message_id``. Never raises."""
        found: list[str | None] = []
        for name in (getattr(self.model, "business_field", ""), "issue_date"):
            rule = next((r for r in self.rules if isinstance(r, XmlField) and r.name == name),
                        None)
            value, origin = None, None
            if rule is not None:
                for path in rule.paths:
                    try:
                        values = _values(path(root))
                    except MappingError:
                        values = []
                    if values:
                        value, origin = values[0]
                        break
            if value is not None and rule is not None and name == "issue_date":
                try:
                    value = to_xml_date(value, rule.format or _date_format(origin))[0].isoformat()
                except ConversionError:
                    pass
            found.append(value)
        return found[0], found[1]

    def map(self, root: etree._Element, *, partner_id: str, filename: str | None = None,
            transmission_id: str | None = None, sender: Sender | None = None,
            standard: str | None = None, version: str | None = None) -> XmlMapped:
        """Map the document under ``root`` to a validated canonical document.

        ``standard`` and ``version`` are what detection found (``Peppol BIS Billing 3.0``,
        ``2.1``); the mapping's own are used when it found nothing. ``sender`` is the
        identifier the partner was recognised by (else the first the mapping finds).
        With ``documents``, ``root`` is one document's node (``document_nodes``).
        Raises MappingError naming the field and the line.
        """
        run = _Run(self, root)
        data = run.object_fields(self.rules, root, run.context)
        if sender is None:
            senders = self.document_senders(root)
            sender = senders[0] if senders else None
        number = data.get(getattr(self.model, "business_field", ""))
        issued = data.get("issue_date")
        data["partner"] = partner_id
        data["message_id"] = message_id(partner_id, self.document,
                                        sender.id if sender else None,
                                        str(number) if number else None,
                                        issued.isoformat() if issued else None)
        data["source"] = {
            "format": "xml", "standard": standard or self.standard,
            "version": version or self.version or "-", "mapping": self.id,
            "sender_id": sender.id if sender else None,
            "sender_qualifier": sender.qualifier if sender else None,
            "filename": filename, "transmission_id": transmission_id,
        }
        try:
            document = self.model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(str(p) for p in first["loc"])
            raise MappingError(
                f"{run.context}: canonical {self.document} is not valid: {'.'.join(loc)}: "
                f"{first['msg']} ({exc.error_count()} error(s))", field=".".join(loc),
                position=run.position_of(loc)) from exc
        return XmlMapped(document, self.document, self.id, run.warnings)

    def produce(self, sample: Path) -> list[dict[str, Any]]:
        """The canonical JSON of each document of ``sample`` (partner ``sample``), as
        ``edigw mappings test`` compares it: parsed safely and mapped as the reader maps it
        (without the XSD check, which the reader's own tests cover). Nodes ``when`` skips
        are left out; ``documents`` selecting nothing in the sample is a mistake of the
        mapping (MappingDefinitionError with its file and line)."""
        from gateway.formats.xml.detect import detect
        from gateway.formats.xml.safe import parse_xml

        root = parse_xml(sample.read_bytes(), filename=sample.name).getroot()
        kind = detect(root)
        known = kind.kind != "xml"
        nodes = self.document_nodes(root)
        if not nodes and self.documents is not None:
            raise MappingDefinitionError(
                f"documents {self.documents.each.text!r} selects nothing in the sample "
                f"{sample.name} (an XPath from the root {etree.QName(root).localname!r} to "
                "each document's node)", file=self.documents.file, line=self.documents.line)
        out = []
        for node in nodes:
            if node.skipped is not None:
                continue
            mapped = self.map(node.node, partner_id="sample", filename=sample.name,
                              standard=kind.standard if known else None,
                              version=kind.version if known else None)
            out.append(json.loads(mapped.document.to_json_bytes()))  # type: ignore[attr-defined]
        return out


# -- evaluation ---------------------------------------------------------------------------

def _values(result: Any) -> list[tuple[str, etree._Element | None]]:
    """(text, element it came from) for each non-empty item of an XPath result."""
    if isinstance(result, bool):
        return [("true" if result else "false", None)]
    if isinstance(result, float):
        if result != result:  # NaN: number() of nothing
            return []
        return [(str(int(result)) if result.is_integer() else repr(result), None)]
    if isinstance(result, str):
        text = result.strip()
        origin = result.getparent() if hasattr(result, "getparent") else None
        return [(text, origin)] if text else []
    out = []
    for item in result:
        if isinstance(item, etree._Element):
            if not isinstance(item.tag, str):
                continue  # a comment or processing instruction
            text = "".join(item.itertext()).strip()
            origin = item
        else:
            text = str(item).strip()
            origin = item.getparent() if hasattr(item, "getparent") else None
        if text:
            out.append((text, origin))
    return out


def _date_format(origin: etree._Element | None) -> str | None:
    """The 2379 format a CII date gives in ``@format`` (``udt:DateTimeString format="102"``),
    on the element itself or on its only child."""
    if origin is None:
        return None
    fmt = origin.get("format")
    if fmt is None:
        children = [c for c in origin if isinstance(c.tag, str)]
        if len(children) == 1:
            fmt = children[0].get("format")
    return fmt.strip() if fmt else None


def to_xml_date(text: str, fmt: str | None, *, end: bool = False
                ) -> tuple[dt.date | dt.datetime, str | None]:
    """A date written as ISO 8601 (UBL ``xs:date``), or in 2379 format ``fmt`` (CII)."""
    if fmt:
        return to_date(text, fmt, end=end)
    found = _ISO_DATE.fullmatch(text)
    if found is None:
        raise ConversionError(f"{text!r} is not a date (YYYY-MM-DD)")
    year, month, day, hour, minute, second, _zone = found.groups()
    try:
        if hour is None:
            return dt.date(int(year), int(month), int(day)), None
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                           int(second or 0)), None
    except ValueError as exc:
        raise ConversionError(f"{text!r} is not a date: {exc}") from exc


class _Run:
    """One document being mapped: warnings, and where each list item is for errors."""

    def __init__(self, mapping: XmlMapping, root: etree._Element) -> None:
        self.mapping = mapping
        self.root = root
        name = etree.QName(root).localname
        self.context = f"{name} document"
        self.warnings: list[str] = []
        self.unknown_codes: dict[tuple[str, str], int] = {}
        #: canonical location (lines, 3) -> the line of its node, for validation errors.
        self.lines: dict[tuple[str, ...], int | None] = {}

    def position(self, node: etree._Element | None, element: str | None = None) -> Position:
        if node is None:
            node = self.root
        # ``tag`` stays empty: it means an EDIFACT segment. The element is the XPath, or
        # the name of the element the error is about.
        if element is None and isinstance(node.tag, str):
            element = etree.QName(node).localname
        return Position(line=node.sourceline, element=element)

    def position_of(self, loc: tuple[str, ...]) -> Position:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return Position(line=self.lines[loc[:n]], element=".".join(loc))
        return self.position(None, ".".join(loc))

    def object_fields(self, rules: tuple[XmlField | XmlObject, ...], node: etree._Element,
                      context: str, loc: tuple[str, ...] = ()) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for rule in rules:
            if isinstance(rule, XmlField):
                value = self.field(rule, node, context)
            elif rule.each:
                value = self.items(rule, node, context, loc)
            else:
                value = self.object(rule, node, context, loc)
            if value is not None and value != [] and value != {}:
                _put(data, rule.parts, value)
        return data

    def object(self, rule: XmlObject, node: etree._Element, context: str,
               loc: tuple[str, ...]) -> dict[str, Any] | None:
        at = node
        if rule.node is not None:
            found = [n for n in rule.node(node) if isinstance(n, etree._Element)]
            if not found:
                if rule.required:
                    raise MappingError(f"{context} has no {_label(rule.name)} "
                                       f"({rule.node.text})", field=rule.name,
                                       position=self.position(node, rule.node.text))
                return None
            at = found[0]
        value = self.object_fields(rule.rules, at, context, (*loc, *rule.parts))
        if not value and rule.required:
            raise MappingError(f"{context} has no {_label(rule.name)}", field=rule.name,
                               position=self.position(at))
        return value or None

    def items(self, rule: XmlObject, node: etree._Element, context: str,
              loc: tuple[str, ...]) -> list[dict[str, Any]]:
        assert rule.node is not None
        nodes = [n for n in rule.node(node) if isinstance(n, etree._Element)
                 and isinstance(n.tag, str)]
        if not nodes and rule.required:
            raise MappingError(f"{context} has no {_label(rule.name)} ({rule.node.text})",
                               field=rule.name, position=self.position(node, rule.node.text))
        out = []
        for i, item in enumerate(nodes):
            where = (*loc, *rule.parts, str(i))
            self.lines[where] = item.sourceline
            label = f"{context}, {_label(rule.name).removesuffix('s')} {i + 1} " \
                    f"(line {item.sourceline})"
            out.append(self.object_fields(rule.rules, item, label, where))
        return out

    def field(self, rule: XmlField, node: etree._Element, context: str) -> Any:
        if rule.all:
            values = []
            for path in rule.paths:
                for text, origin in _values(path(node)):
                    value = self.convert(rule, text, node if origin is None else origin, path, context)
                    if value is not None:
                        values.append(value)
            if not values and rule.required:
                raise self.missing(rule, node, context)
            return values or None
        for path in rule.paths:
            for text, origin in _values(path(node)):
                return self.convert(rule, text, node if origin is None else origin, path, context)
        if rule.default is not None:
            return rule.default
        if rule.required:
            raise self.missing(rule, node, context)
        return None

    def missing(self, rule: XmlField, node: etree._Element, context: str) -> MappingError:
        paths = " or ".join(p.text for p in rule.paths)
        return MappingError(f"{context} has no {_label(rule.name)} ({paths})", field=rule.name,
                            position=self.position(node, rule.paths[0].text if rule.paths
                                                   else None))

    def convert(self, rule: XmlField, text: str, origin: etree._Element, path: XPathRule,
                context: str) -> Any:
        value: dt.date | str | None  # a date (or date-time), or a GTIN/GLN
        try:
            if rule.codes is not None:
                if text in rule.codes:
                    return rule.codes[text]
                self.unknown_code(rule, text, context)
                return text
            if rule.type == "text":
                return text
            if rule.type == "decimal":
                return to_decimal(text)
            warning = None
            if rule.type in ("date", "date_end"):
                value, warning = to_xml_date(text, rule.format or _date_format(origin),
                                             end=rule.type == "date_end")
            elif rule.type == "gtin":
                value, warning = to_gtin(text)
            else:
                value, warning = to_gln(text)
        except ConversionError as exc:
            raise MappingError(f"{context}: {rule.name}: {exc}", field=rule.name,
                               position=self.position(origin, path.text)) from exc
        if warning:
            self.warnings.append(f"{context}: {rule.name}: {warning} (line {origin.sourceline})")
        return value

    def unknown_code(self, rule: XmlField, raw: str, context: str) -> None:
        key = (rule.name, raw)
        index = self.unknown_codes.get(key)
        if index is None:
            self.unknown_codes[key] = len(self.warnings)
            self.warnings.append(f"{context}: {rule.name} code {raw!r} is not in the "
                                 "mapping's code list; kept as sent")


def _label(name: str) -> str:
    return name.rsplit(".", 1)[-1].replace("_", " ")


def _put(out: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    *parents, last = parts
    for part in parents:
        out = out.setdefault(part, {})
    if isinstance(value, dict) and isinstance(out.get(last), dict):
        out[last].update(value)  # ``payment`` from a group, ``payment.terms`` from elsewhere
    else:
        out[last] = value


# -- loading ------------------------------------------------------------------------------


class _Compiler(DefinitionCompiler):
    """The XML compiler: XPaths, evaluated with the mapping's ``namespaces``."""

    namespaces: dict[str, str]

    def compile(self) -> XmlMapping:
        data = self.data
        self.check_keys(data, TOP_KEYS)
        self.require("id", "document", "fields")
        if self.own_match and not data.get("match"):
            raise self.fail("'match' is required (root element, namespace …)", "match")
        document, model = self.canonical_document()
        self.namespaces = self.namespaces_of(data.get("namespaces") or {})
        match = self.match(data["match"]) if data.get("match") else None
        fields = self.fields_spec()
        rules = self.rules(model, fields, ("fields",), top=True)
        senders = self.senders(data.get("senders") or [])
        documents = (self.documents(data["documents"]) if data.get("documents") is not None
                     else None)
        version = data.get("version")
        return XmlMapping(id=str(data["id"]), document=document,
                          standard=str(data.get("standard") or "XML"),
                          version=str(version) if version is not None else None, match=match,
                          auto_match=self.own_match, namespaces=self.namespaces, rules=rules,
                          senders=senders, file=self.file, model=model,
                          description=data.get("description"), extends=data.get("extends"),
                          documents=documents)

    def documents(self, spec: Any) -> DocumentsRule:
        if isinstance(spec, str):
            spec = {"each": spec}
        if not isinstance(spec, dict):
            raise self.fail("'documents' is an XPath from the root selecting each document's "
                            "node, or {each: <xpath>, when: <xpath>}", "documents")
        self.check_keys(spec, DOCUMENTS_KEYS, "documents", within=" in documents")
        if spec.get("each") is None:
            raise self.fail("documents needs 'each' (an XPath from the root selecting each "
                            "document's node)", "documents")
        each = self.xpath(spec["each"], "documents", "each")
        probe = each.xpath(_PROBE)
        if not isinstance(probe, list):
            raise self.fail(f"documents {each.text!r} gives a {type(probe).__name__}, not "
                            "elements: it must select each document's node", "documents",
                            "each")
        when = None
        if spec.get("when") is not None:
            text = spec["when"]
            if not isinstance(text, str) or not text.strip():
                raise self.fail("documents when: an XPath that is true of a node holding a "
                                "document of this mapping", "documents", "when")
            try:
                compiled = etree.XPath(f"boolean({text})", namespaces=self.namespaces)
                compiled(_PROBE)  # an undeclared prefix is only found when it runs
            except etree.XPathError as exc:
                raise self.fail(f"documents when: not an XPath {text!r}: {exc}", "documents",
                                "when") from exc
            when = XPathRule(text, compiled)
        file, line = self.where.get(("documents",), (self.file, None))
        return DocumentsRule(each, when, file, line)

    def namespaces_of(self, spec: Any) -> dict[str, str]:
        if not isinstance(spec, dict):
            raise self.fail("'namespaces' maps a prefix to a namespace URI", "namespaces")
        for prefix, uri in spec.items():
            if not re.fullmatch(r"[A-Za-z_][\w.-]*", prefix) or not isinstance(uri, str):
                raise self.fail(f"namespace prefix {prefix!r} needs a URI", "namespaces",
                                prefix)
        return dict(spec)

    def match(self, spec: Any) -> XmlMatch:
        if not isinstance(spec, dict):
            raise self.fail("'match' is a mapping (root, namespace, customization, profile, "
                            "when)", "match")
        self.check_keys(spec, MATCH_KEYS, "match", within=" in match")
        if not spec.get("root"):
            raise self.fail("match needs 'root' (the root element's local name)", "match")
        patterns: dict[str, re.Pattern[str] | None] = {}
        for key in ("customization", "profile"):
            text = spec.get(key)
            try:
                patterns[key] = re.compile(str(text)) if text is not None else None
            except re.error as exc:
                raise self.fail(f"match {key}: not a regular expression: {exc}", "match",
                                key) from exc
        when = spec.get("when")
        compiled = None
        if when is not None:
            if not isinstance(when, str) or not when.strip():
                raise self.fail("match when: an XPath that must be true of the document",
                                "match", "when")
            try:
                compiled = etree.XPath(f"boolean({when})", namespaces=self.namespaces)
            except etree.XPathSyntaxError as exc:
                raise self.fail(f"match when: not an XPath: {exc}", "match", "when") from exc
        return XmlMatch(str(spec["root"]), spec.get("namespace"), patterns["customization"],
                        patterns["profile"], compiled, when)

    def xpath(self, text: Any, *at: str) -> XPathRule:
        if not isinstance(text, str) or not text.strip():
            raise self.fail(f"an XPath is a non-empty text, not {text!r}", *at)
        try:
            compiled = etree.XPath(text, namespaces=self.namespaces, smart_strings=True)
            compiled(_PROBE)  # an undeclared prefix is only found when it runs
        except etree.XPathError as exc:
            raise self.fail(f"bad XPath {text!r}: {exc}"
                            + (" (declare its prefixes under 'namespaces')"
                               if "namespace prefix" in str(exc).lower() else ""), *at) from exc
        return XPathRule(text, compiled)

    def target(self, model: type[BaseModel], dotted: str, at: tuple[str, ...],
               top: bool) -> Any:
        current: type[BaseModel] | None = model
        annotation: Any = None
        for i, part in enumerate(dotted.split(".")):
            if current is None:
                raise self.fail(f"{dotted!r}: {'.'.join(dotted.split('.')[:i])} is not an "
                                "object", *at)
            if part not in current.model_fields or (top and i == 0 and part in GATEWAY_FIELDS):
                known = sorted(set(current.model_fields) - (GATEWAY_FIELDS if top else set()))
                raise self.not_a_field(dotted, current.__name__, known, *at)
            annotation = current.model_fields[part].annotation
            current = model_of(annotation) if not is_list(annotation) else None
            if i < len(dotted.split(".")) - 1 and current is None:
                raise self.fail(f"{dotted!r}: {part} is not an object (a list is mapped with "
                                "'each')", *at)
        return annotation

    def rules(self, model: type[BaseModel], specs: dict[str, Any], at: tuple[str, ...], *,
              top: bool = False) -> tuple[XmlField | XmlObject, ...]:
        rules: list[XmlField | XmlObject] = []
        for name, spec in specs.items():
            if spec is None:
                continue  # removed by an overlay
            where = (*at, name)
            annotation = self.target(model, name, where, top)
            if isinstance(spec, dict) and ("fields" in spec or "each" in spec):
                rules.append(self.object_rule(name, spec, annotation, where))
            else:
                rules.append(self.field_rule(name, spec, annotation, where))
        return tuple(rules)

    def object_rule(self, name: str, spec: dict[str, Any], annotation: Any,
                    at: tuple[str, ...]) -> XmlObject:
        each = "each" in spec
        allowed = LIST_KEYS if each else OBJECT_KEYS
        self.check_keys(spec, allowed, *at,
                        within=f" in {'list' if each else 'object'} rule {name!r}")
        inner = model_of(annotation)
        if inner is None:
            raise self.fail(f"canonical {name!r} is a value, not an object: give it a path",
                            *at)
        if each != is_list(annotation):
            shape = ("a list; use 'each: <xpath>' with 'fields'" if is_list(annotation)
                     else "one object; use 'fields' (and 'at: <xpath>')")
            raise self.fail(f"canonical {name!r} is {shape}", *at)
        if not isinstance(spec.get("fields"), dict):
            raise self.fail(f"'fields' of {name!r} maps canonical fields of "
                            f"{inner.__name__} to rules", *at, "fields")
        node = None
        if each:
            node = self.xpath(spec["each"], *at, "each")
        elif spec.get("at") is not None:
            node = self.xpath(spec["at"], *at, "at")
        rules = self.rules(inner, spec["fields"], (*at, "fields"))
        return XmlObject(name, tuple(name.split(".")), node, rules, each,
                         bool(spec.get("required")))

    def field_rule(self, name: str, spec: Any, annotation: Any,
                   at: tuple[str, ...]) -> XmlField:
        if model_of(annotation) is not None:
            shape = "a list: map it with 'each' and 'fields'" if is_list(annotation) else \
                "an object: map it with 'fields' (and 'at')"
            raise self.fail(f"canonical {name!r} is {shape}", *at)
        if isinstance(spec, (str, list)):
            spec = {"path": spec}
        if not isinstance(spec, dict):
            raise self.fail(f"rule for {name!r} is an XPath, a list of XPaths or a mapping",
                            *at)
        self.check_keys(spec, FIELD_KEYS, *at, within=f" in rule {name!r}")
        raw = spec.get("path")
        if raw is None and spec.get("default") is None:
            raise self.fail(f"rule {name!r} has no path (and no default)", *at)
        raw_paths = [] if raw is None else [raw] if isinstance(raw, str) else raw
        if not isinstance(raw_paths, list):
            raise self.fail(f"'path' of {name!r} is an XPath or a list of XPaths", *at, "path")
        paths = tuple(self.xpath(text, *at, "path", str(i)) if isinstance(raw, list)
                      else self.xpath(text, *at, "path") for i, text in enumerate(raw_paths))
        kind = self.value_type(spec, name, *at)
        fmt = spec.get("format")
        if fmt is not None and fmt not in DATE_FORMATS:
            raise self.fail(f"unknown date format {fmt!r} (UNCL 2379: "
                            f"{', '.join(sorted(DATE_FORMATS))})", *at, "format")
        codes = self.code_list(spec, name, *at)
        many = bool(spec.get("all")) or is_list(annotation)
        return XmlField(name, tuple(name.split(".")), paths, kind, bool(spec.get("required")),
                        many, {str(k): v for k, v in codes.items()} if codes else None, fmt,
                        spec.get("default"))

    def senders(self, spec: Any) -> tuple[SenderRule, ...]:
        if not isinstance(spec, list):
            raise self.fail("'senders' is a list of {path, scheme | scheme_from}", "senders")
        out = []
        for i, item in enumerate(spec):
            at = ("senders", str(i))
            if isinstance(item, str):
                item = {"path": item, "scheme_from": "@schemeID"}
            if not isinstance(item, dict) or "path" not in item:
                raise self.fail("a sender rule needs 'path' (the identifier's XPath)", *at)
            self.check_keys(item, SENDER_KEYS, *at, within=" in sender rule")
            scheme = item.get("scheme")
            if scheme is not None and scheme not in SCHEMES:
                raise self.fail(f"unknown identifier scheme {scheme!r} (known: "
                                f"{', '.join(sorted(SCHEMES))})", *at, "scheme")
            if (scheme is None) == (item.get("scheme_from") is None):
                raise self.fail("a sender rule needs either 'scheme' (fixed) or "
                                "'scheme_from' (an XPath to the scheme code)", *at, "path")
            codes = item.get("codes") or {}
            if not isinstance(codes, dict) or any(v not in SCHEMES for v in codes.values()):
                raise self.fail(f"sender 'codes' map a scheme code to one of "
                                f"{', '.join(sorted(SCHEMES))}", *at, "codes")
            out.append(SenderRule(
                self.xpath(item["path"], *at, "path"), scheme,
                self.xpath(item["scheme_from"], *at, "scheme_from")
                if item.get("scheme_from") is not None else None,
                {str(k): v for k, v in codes.items()}))
        return tuple(out)


def _icd_sender(code: str, text: str) -> tuple[str | None, str]:
    """The sender scheme and value of an identifier whose ``@schemeID`` is ``code``, when it
    is an ISO 6523 ICD of the Peppol list, a Peppol scheme id (``NO:ORG``, as older Peppol
    BIS put it) or the Peppol participant scheme (the value then ``0192:987654321``);
    ``(None, text)`` for any other code."""
    if code.lower() == iso6523.PEPPOL_SCHEME:
        return "iso6523", text
    icd = code if code in ICD_CODES else iso6523.BY_SCHEME_ID.get(code.upper())
    if icd is None:
        return None, text
    alias = iso6523.ALIASES.get(icd)
    if alias is not None:
        return alias, text
    return "iso6523", f"{icd}:{text}"


def compile_xml_mapping(data: dict[str, Any], where: Where, file: str, *,
                        own_match: bool = True) -> XmlMapping:
    """Compile a merged ``format: xml`` mapping document; MappingDefinitionError names the
    file and line. ``own_match`` is False for an overlay that inherits ``match``: it is
    chosen by id only (a partner profile naming it)."""
    return _Compiler(data, where, file, own_match).compile()


def find_xml_mapping(mappings: list[XmlMapping], *, root: str, namespace: str | None,
                     customization: str | None, profile: str | None,
                     mapping_id: str | None = None, document: Any = None) -> XmlMapping | None:
    """The mapping for a document: by id when the partner names one (it must be an XML
    mapping for this root), else the most specific auto-matching one; None when none claims
    it. MappingError when the named mapping is wrong or two claim it equally."""
    if mapping_id is not None:
        named = next((m for m in mappings if m.id == mapping_id), None)
        if named is None:
            raise MappingError(f"the partner names XML mapping {mapping_id!r}, which does "
                               f"not exist (XML mappings: "
                               f"{', '.join(sorted(m.id for m in mappings)) or 'none'})")
        if named.match is not None and not named.match.matches(root, namespace,
                                                               customization, profile,
                                                               document):
            raise MappingError(f"mapping {mapping_id!r} is for {named.match.describe()}, not "
                               f"{root} in {namespace or '(no namespace)'}")
        return named
    found = [m for m in mappings if m.auto_match and m.match is not None
             and m.match.matches(root, namespace, customization, profile, document)]
    if not found:
        return None
    best = max(m.match.specificity for m in found)  # type: ignore[union-attr]
    top = [m for m in found if m.match.specificity == best]  # type: ignore[union-attr]
    if len(top) > 1:
        raise MappingError(f"several XML mappings claim {root} in {namespace}: "
                           f"{', '.join(sorted(m.id for m in top))}")
    return top[0]

