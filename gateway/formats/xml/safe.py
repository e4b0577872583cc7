"""Hardened XML parsing: a partner's file is read, never obeyed.

An XML document can ask its parser to do things: fetch a file or a URL (XXE, external DTD),
expand an entity into gigabytes (billion laughs, quadratic blowup) or nest without end.
edigw refuses every document type declaration outright (no business XML needs one: UBL, CII
and Order-X forbid them in practice), then lets libxml2 parse with entity resolution, DTD
loading and network access off, its huge-tree safety limits on, and a size and depth limit of
its own. Every refusal is an ``XmlError`` (a ``PayloadError``, stage ``parse``) naming the
line and column and the reason.

The text is decoded here, not by libxml2, so that the DOCTYPE check sees exactly what the
parser will see: the encoding comes from the byte order mark, else from the XML declaration,
else UTF-8 (XML 1.0 section 4.3.3 and appendix F).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from lxml import etree

from gateway.core.errors import PayloadError, Position

#: Default limits; a gateway may set its own (``ParseLimits``).
MAX_BYTES = 50 * 1024 * 1024
MAX_DEPTH = 64


class XmlError(PayloadError):
    """An XML payload that is refused or cannot be read: not well-formed, hostile, too big,
    in an unknown encoding, or (stage ``validate``) not valid against its schema."""

    stage = "parse"


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """How much a partner's XML may ask of the gateway."""

    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH


DEFAULT_LIMITS = ParseLimits()

# (byte order mark, Python codec); the longest marks first (UTF-32 LE starts like UTF-16 LE).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Without a mark, a UTF-16 document still starts with '<' as two bytes (XML 1.0 appendix F).
_NO_BOM = ((b"<\x00?\x00", "utf-16-le"), (b"\x00<\x00?", "utf-16-be"))
_DECLARATION = re.compile(r"""^<\?xml\s[^>]*?\?>""")
_ENCODING = re.compile(r"""(\sencoding\s*=\s*)(["'])([A-Za-z][A-Za-z0-9._-]*)\2""")
_ASCII_DECL = re.compile(rb"""^<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")
# What may come before the root element: white space, processing instructions, comments.
_PROLOG_ITEM = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)


def _parser() -> etree.XMLParser:
    # resolve_entities=False: an entity reference is never replaced by its declaration's text;
    # load_dtd / no_network: nothing is fetched, from disk or from the network;
    # huge_tree=False keeps libxml2's own limits (10 MB text node, depth 256).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, collect_ids=False,
                           remove_blank_text=False)


def detect_encoding(data: bytes) -> tuple[str, int]:
    """(Python codec, length of the byte order mark) for ``data``.

    A byte order mark wins; otherwise the XML declaration's ``encoding`` (read as ASCII, which
    every encoding it may name agrees with for the declaration itself); otherwise UTF-8.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    for head, codec in _NO_BOM:
        if data.startswith(head):
            return codec, 0
    found = _ASCII_DECL.match(data[:512])
    if found is None:
        return "utf-8", 0
    name = found.group(1).decode("ascii")
    try:
        return codecs.lookup(name).name, 0
    except LookupError:
        raise XmlError(f"the XML declaration names encoding {name!r}, which edigw does not "
                       "know", position=Position(line=1, column=found.start(1) + 1)) from None


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def decode(data: bytes) -> str:
    """The document's text, decoded as its byte order mark or declaration says."""
    codec, skip = detect_encoding(data)
    try:
        return data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        # Where the bad byte is, in lines: decode what comes before it (it decodes).
        before = data[skip:skip + exc.start].decode(codec, errors="replace")
        line, column = _line_column(before, len(before))
        raise XmlError(f"the text is not valid {codec} (byte 0x{data[skip + exc.start]:02x} at "
                       f"offset {skip + exc.start})",
                       position=Position(line=line, column=column)) from exc


def refuse_doctype(text: str) -> None:
    """Raise ``XmlError`` when a document type declaration comes before the root element."""
    pos = 0
    while pos < len(text):
        item = _PROLOG_ITEM.match(text, pos)
        if item is None:
            break
        pos = item.end()
    if text.startswith("<!DOCTYPE", pos):
        line, column = _line_column(text, pos)
        end = text.find("]>", pos)
        has_entities = "<!ENTITY" in text[pos:end if end != -1 else pos + 65536]
        what = ("a DOCTYPE with entity declarations (entity expansion and external "
                "entities are refused: XXE, billion laughs)" if has_entities else
                "a DOCTYPE (document type declarations are refused: no DTD is ever loaded)")
        raise XmlError(f"refused: the document has {what}",
                       position=Position(line=line, column=column, element="DOCTYPE"))


def _without_declared_encoding(text: str) -> str:
    """The text with the declaration's encoding blanked out (same length, so columns stay):
    libxml2 gets UTF-8 and must not decode it a second time as the declaration says."""
    decl = _DECLARATION.match(text)
    if decl is None:
        return text
    found = _ENCODING.search(decl.group(0))
    if found is None:
        return text
    start, end = found.span()
    return text[:start] + " " * (end - start) + text[end:]


def parse_xml(data: bytes, *, limits: ParseLimits = DEFAULT_LIMITS,
              filename: str | None = None) -> etree._ElementTree:
    """Parse a partner's XML safely; ``XmlError`` names line, column and reason.

    Refused: more than ``limits.max_bytes`` bytes, an encoding that does not decode, any
    DOCTYPE (so no DTD, no entity declaration, no external entity), an undeclared entity
    reference, elements nested deeper than ``limits.max_depth``, and anything not
    well-formed.
    """
    if len(data) > limits.max_bytes:
        raise XmlError(f"refused: the document is {len(data)} bytes, more than the limit of "
                       f"{limits.max_bytes} bytes")
    if not data.strip():
        raise XmlError("the document is empty", position=Position(line=1, column=1))
    text = decode(data)
    refuse_doctype(text)
    try:
        utf8 = _without_declared_encoding(text).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (UTF-7 and UTF-16 can carry one)
        line, column = _line_column(text, exc.start)
        raise XmlError("the text holds a character that is not allowed in XML (a lone "
                       "surrogate)", position=Position(line=line, column=column)) from exc
    try:
        root = etree.fromstring(utf8, _parser(), base_url=None)
    except etree.XMLSyntaxError as exc:
        at_line, at_column = exc.position if exc.position else (None, None)
        raise XmlError(f"not well-formed XML: {exc.msg}",
                       position=Position(line=at_line or None,
                                         column=at_column or None)) from exc
    tree = root.getroottree()
    # Belt and braces: libxml2 saw the same text, so this is never expected to fire.
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XmlError("refused: the document has a DOCTYPE", position=Position(line=1))
    _check_depth(root, limits.max_depth)
    return tree


def _check_depth(root: etree._Element, max_depth: int) -> None:
    depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise XmlError(f"refused: elements nest deeper than the limit of {max_depth}",
                               position=Position(line=element.sourceline,
                                                 element=etree.QName(element).localname))
        else:
            depth -= 1
