"""EDIFACT (EANCOM) rendering: a canonical document made into one UNB..UNZ interchange.

An outbound EDIFACT mapping is a YAML file under ``mappings/outbound/``::

    id: eancom-invoic-d96a
    document: invoice                  # canonical type rendered
    syntax: edifact
    aliases: [edifact]                 # names --format answers to
    message: {type: INVOIC, version: D, release: 96A, agency: UN, association: EAN008}
    interchange: {charset: UNOC, version: "3", una: true, newline: true}   # all optional
    codes:                             # named code tables: canonical value -> code
      function: {original: "9", replace: "5", cancel: "1"}
    segments:
      - "BGM+{invoice_type|default 380}+{invoice_number|required}+{function|codes function}"
      - "DTM+137:{issue_date|date 102}:102"
      - with: parties.seller           # scope: paths below are read in parties.seller
        segments: ["NAD+SU+{gln}::9++{name}", "RFF+VA:{vat_id}"]
      - each: lines                    # loop: once per item, paths read in the item
        segments:
          - "LIN+{line_id,#}++{gtin}:EN"
          - "QTY+47:{quantity|required|decimal}:{unit}"
      - {segment: "UNS+S", when: lines}

Templates. A segment is written as it appears in the file: ``+`` separates elements, ``:``
components; ``{...}`` is a value read from the document, everything else is a constant
(escaped on output like any value). A reference is ``{path,alternative,...|filter arg|...}``:

- paths are dotted field names read in the current scope (``invoice_number``,
  ``parties.buyer.gln``, ``totals.payable``); ``doc.x`` reads the root document from inside
  a loop, ``ctx.options.x`` a per-partner option of the ``RenderContext``, ``#`` the 1-based
  position of the current loop item and ``.`` the item itself (a list of texts). The first
  alternative that has a value (not null, not "") is taken.
- filters, applied in order: ``required`` (absent: RenderError naming the canonical path,
  e.g. ``lines[3].quantity``, items counted from 0), ``default TEXT`` (absent: TEXT, written
  as is), ``codes NAME`` (through the code table NAME; a value not in the table is written
  as sent, as the inbound mappings keep unknown codes), ``date 102|203|204`` (ISO date or
  date-time to CCYYMMDD, CCYYMMDDHHMM, CCYYMMDDHHMMSS; two references in one component make
  a 718 period: ``{valid_from|date 102}{valid_to|date 102}``), ``decimal`` (a number, as
  given, '.' as mark), ``decimals N`` (rounded half-up to N places), ``abs``, ``plus N``
  (integers), ``count`` (items of a list, 0 when absent), ``split N`` (a text cut into
  components of at most N characters, e.g. FTX C108: the reference must then be the whole
  component), ``upper``. A number beyond 35 digits (``1E999999999``) is refused, never
  written out.

Omission. A component whose references are absent is empty; a composite whose references
are all absent is empty as a whole (its constants too: ``{gln}::9`` disappears with the GLN);
a segment with references whose elements are all empty is not written (unless it says
``keep: true``). ``when: PATH,PATH`` on a segment, ``with`` block, loop or plain block
(``{when: …, segments: […]}``) writes it only when one of the paths has a value.
Empty trailing components and elements are dropped.

The envelope is the renderer's (``interchange``: ``charset`` UNOC, syntax ``version`` 3 or 4,
``una`` true, ``newline`` true: a line break after each segment, for people reading the
file): UNA, UNB (``UNOC:3``,
sender and recipient with their qualifiers from the context, date and time of ``ctx.now``,
the control reference put in by ``seal``, 0031 "1" when ``ctx.ack_requested``, 0035 "1" when
``ctx.test``), UNH (reference 1, the ``message`` identifier), the segments, UNT (count) and
UNZ. Values are escaped with the release character ``?`` before ``? + : '`` (and ``*``, the
repetition separator, under syntax 4).

Every rendering is read back before it is sealed: the interchange is read with edigw's own
EDIFACT reader (envelope) and the message checked by ``structure.validate_message`` against
its directory (with the EANCOM rules for an ``EAN`` association); any error is a RenderError
naming the mapping, the segment, the canonical item it came from and the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway.core.errors import MappingDefinitionError, PayloadError
from gateway.core.gcpause import gc_paused
from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.charset import SYNTAX_CODECS
from gateway.formats.mapping.yamlsrc import Lines
from gateway.formats.render import Body, OutboundMapping, RenderContext, RenderError
from gateway.formats.render.stream import StreamedBody, StreamingMapping

__all__ = ["EdifactBody", "EdifactFileBody", "EdifactRenderer", "compile_edifact_renderer", "escape"]

#: Placeholder control reference the rendering is validated with (replaced by ``seal``).
_CHECK_REF = "0"
_TAG = re.compile(r"[A-Z][A-Z0-9]{2}")
_PATH = re.compile(r"#|\.|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_DATE_FORMATS = {"102": "%Y%m%d", "203": "%Y%m%d%H%M", "204": "%Y%m%d%H%M%S"}
_ABSENT = None
_MAX_DIGITS = 35
#: Segments encoded and written at a time by ``render_stream``.
_BATCH = 4096
#: Bytes of a spooled body read at a time when it is sealed.
_BLOCK = 1 << 20


def escape(text: str, syntax_version: str = "3") -> str:
    """``text`` with the release character before every service character (``? + : '``,
    and ``*`` under syntax 4)."""
    if "?" in text:
        text = text.replace("?", "??")
    for char in ("+", ":", "'") if syntax_version < "4" else ("+", ":", "'", "*"):
        if char in text:
            text = text.replace(char, "?" + char)
    return text


# -- values ----------------------------------------------------------------------------------

class _Fail(Exception):
    """A value cannot be rendered: turned into a RenderError naming the path."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        raise _Fail(f"a true/false value ({value}) is not a text")
    if isinstance(value, str | int | float | Decimal):
        return str(value)
    raise _Fail(f"expected a value, found {type(value).__name__}")


def _number(value: Any) -> Decimal:
    try:
        number = Decimal(_scalar(value).strip().lstrip("+"))
    except InvalidOperation:
        raise _Fail(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise _Fail(f"{value!r} is not a finite number")
    # EDIFACT numbers hold at most 35 digits: a larger exponent (1E999999999) would make a
    # giant text when written out.
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or not -_MAX_DIGITS <= exponent <= _MAX_DIGITS or \
            number.adjusted() > _MAX_DIGITS:
        raise _Fail(f"{value!r} does not fit in an EDIFACT number (35 digits)")
    return number


def _plain(number: Decimal) -> str:
    text = format(number, "f")
    return "0" if text in ("-0", "-0.0") else text


def _date(value: Any, fmt: str) -> str:
    text = _scalar(value).strip()
    try:
        if len(text) == 10:
            moment: dt.date = dt.date.fromisoformat(text)
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Fail(f"{text!r} is not an ISO date or date-time") from None
    return moment.strftime(_DATE_FORMATS[fmt])


Filter = Callable[[Any], Any]


def _filter(name: str, arg: str | None, codes: dict[str, dict[str, str]], where: str,
            file: str, line: int | None) -> Filter:
    def need(kind: str) -> str:
        if arg is None:
            raise MappingDefinitionError(f"{where}: filter {name!r} needs {kind}", file=file,
                                         line=line)
        return arg

    if name == "codes":
        table = codes.get(need("a code table name"))
        if table is None:
            raise MappingDefinitionError(f"{where}: no code table {arg!r} under 'codes'",
                                         file=file, line=line)
        return lambda v: table.get(_scalar(v), _scalar(v))
    if name == "date":
        fmt = need("a format (102, 203, 204)")
        if fmt not in _DATE_FORMATS:
            raise MappingDefinitionError(f"{where}: date format {fmt!r} is not one of "
                                         f"{', '.join(_DATE_FORMATS)}", file=file, line=line)
        return lambda v: _date(v, fmt)
    if name == "decimal":
        return lambda v: _plain(_number(v))
    if name in ("decimals", "plus", "split"):
        text = need("a number")
        if not text.isdigit():
            raise MappingDefinitionError(f"{where}: {name} takes a whole number, not {text!r}",
                                         file=file, line=line)
        n = int(text)
        if name == "decimals" and n > _MAX_DIGITS:
            raise MappingDefinitionError(f"{where}: at most {_MAX_DIGITS} decimals", file=file,
                                         line=line)
        if name == "decimals":
            step = Decimal(1).scaleb(-n)

            def rounded(value: Any) -> str:
                try:
                    return _plain(_number(value).quantize(step, rounding=ROUND_HALF_UP))
                except InvalidOperation:
                    raise _Fail(f"{value!r} has too many digits for {n} decimals") from None
            return rounded
        if name == "plus":
            return lambda v: str(int(_number(v)) + n)
        if n < 1:
            raise MappingDefinitionError(f"{where}: split takes at least 1", file=file,
                                         line=line)
        return lambda v: [_scalar(v)[i:i + n] for i in range(0, len(_scalar(v)), n)] or [""]
    if name == "abs":
        return lambda v: _plain(abs(_number(v)))
    if name == "upper":
        return lambda v: _scalar(v).upper()
    if name == "count":
        return lambda v: str(len(v)) if isinstance(v, list) else _fail_count(v)
    raise MappingDefinitionError(f"{where}: unknown filter {name!r} (known: required, default, "
                                 "codes, date, decimal, decimals, abs, plus, count, split, "
                                 "upper)", file=file, line=line)


def _fail_count(value: Any) -> str:
    raise _Fail(f"count needs a list, found {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class _Ref:
    """``{path,alt|filter|...}``: a value read from the document."""

    text: str
    paths: tuple[tuple[str, ...], ...]
    required: bool
    default: str | None
    counts: bool
    splits: bool
    filters: tuple[Filter, ...]

    def value(self, scope: _Scope) -> Any:
        """The rendered value (str, or list of str for ``split``), or None when absent."""
        raw: Any = _ABSENT
        for path in self.paths:
            raw = scope.lookup(path)
            if raw is not _ABSENT and raw != "" and raw != []:
                break
            raw = _ABSENT
        if raw is _ABSENT:
            if self.counts:
                return "0"
            if self.default is not None:
                return self.default
            if self.required:
                raise RenderError(f"required value missing ({{{self.text}}})",
                                  path=scope.name(self.paths[0]))
            return _ABSENT
        try:
            for step in self.filters:
                raw = step(raw)
            if isinstance(raw, list):
                return [_scalar(v) for v in raw]
            return _scalar(raw)
        except _Fail as exc:
            raise RenderError(f"cannot render {{{self.text}}}: {exc}",
                              path=scope.name(self.paths[0])) from None


def _parse_ref(text: str, codes: dict[str, dict[str, str]], where: str, file: str,
               line: int | None) -> _Ref:
    head, *rest = [part.strip() for part in text.split("|")]
    paths = []
    for alt in head.split(","):
        alt = alt.strip()
        if not _PATH.fullmatch(alt):
            raise MappingDefinitionError(f"{where}: bad path {alt!r} in {{{text}}}", file=file,
                                         line=line)
        paths.append(tuple(alt.split(".")) if alt not in ("#", ".") else (alt,))
    required = counts = False
    default = None
    filters = []
    for part in rest:
        name, _, arg = part.partition(" ")
        arg = arg.strip()
        if name == "required":
            required = True
        elif name == "default":
            default = arg
        elif name == "count":
            counts = True
            filters.append(_filter(name, None, codes, where, file, line))
        else:
            filters.append(_filter(name, arg or None, codes, where, file, line))
    splits = any(part.split(" ")[0] == "split" for part in rest)
    return _Ref(text, tuple(paths), required, default, counts, splits, tuple(filters))


# -- scopes ----------------------------------------------------------------------------------

class _Scope:
    """Where paths are read: the current object, its canonical path, the loop position."""

    __slots__ = ("item", "path", "index", "root", "ctx")

    def __init__(self, item: Any, path: str, index: int, root: Any, ctx: RenderContext) -> None:
        self.item = item
        self.path = path
        self.index = index
        self.root = root
        self.ctx = ctx

    def lookup(self, path: tuple[str, ...]) -> Any:
        first = path[0]
        if first == "#":
            return str(self.index) if self.index else _ABSENT
        if first == ".":
            return self.item
        value: Any = self.item
        if first == "doc" and len(path) > 1:
            value, path = self.root, path[1:]
        elif first == "ctx" and len(path) > 1:
            value, path = {"options": self.ctx.options, "partner_id": self.ctx.partner_id}, \
                path[1:]
        for key in path:
            if not isinstance(value, dict):
                return _ABSENT
            value = value.get(key)
            if value is None:
                return _ABSENT
        return value

    def name(self, path: tuple[str, ...]) -> str:
        text = ".".join(path)
        if path[0] in ("doc", "ctx"):
            return ".".join(path[1:]) if path[0] == "doc" else text
        if path[0] in ("#", "."):
            return self.path or "(document)"
        return f"{self.path}.{text}" if self.path else text

    def enter(self, item: Any, path: str, index: int) -> _Scope:
        return _Scope(item, path, index, self.root, self.ctx)


# -- templates -------------------------------------------------------------------------------

Piece = str | _Ref
Component = str | _Ref | tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class _Template:
    """One segment: ``TAG+el:comp+el``, with ``{refs}``."""

    tag: str
    elements: tuple[tuple[Component, ...], ...]
    has_refs: bool
    when: tuple[tuple[str, ...], ...] | None
    version: str
    keep: bool = False

    def render(self, scope: _Scope) -> str | None:
        if self.when is not None and not _any(scope, self.when):
            return None
        out: list[str] = []
        written = False
        for element in self.elements:
            text, filled = self._element(element, scope)
            out.append(text)
            if filled:
                written = True
        if self.has_refs and not written and not self.keep:
            return None
        while out and out[-1] == "":
            out.pop()
        return "+".join([self.tag, *out])

    def _element(self, element: tuple[Component, ...], scope: _Scope) -> tuple[str, bool]:
        # Constants were escaped when compiled; a component is a constant (str), one
        # reference (_Ref) or pieces of both (tuple).
        parts: list[str] = []
        refs = filled = False
        version = self.version
        for component in element:
            if isinstance(component, str):
                parts.append(component)
                continue
            refs = True
            if isinstance(component, _Ref):
                value = component.value(scope)
                if value is _ABSENT:
                    parts.append("")
                    continue
                filled = True
                parts.append(":".join(escape(v, version) for v in value)
                             if isinstance(value, list) else escape(value, version))
                continue
            text: list[str] = []
            for piece in component:
                if isinstance(piece, str):
                    text.append(piece)
                    continue
                value = piece.value(scope)
                if value is _ABSENT:
                    text = []
                    break
                text.append(escape(value, version))
            if text:
                filled = True
            parts.append("".join(text))
        if refs and not filled:
            return "", False
        while parts and parts[-1] == "":
            parts.pop()
        return ":".join(parts), filled


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _any(scope: _Scope, paths: tuple[tuple[str, ...], ...]) -> bool:
    return any(not _empty(scope.lookup(path)) for path in paths)


def _when(text: object, where: str, file: str, line: int | None
          ) -> tuple[tuple[str, ...], ...] | None:
    """``when: a,b.c``: written when any of the paths has a value."""
    if text is None:
        return None
    alts = str(text).split(",") if isinstance(text, str) else []
    if not alts or not all(_PATH.fullmatch(a.strip()) for a in alts):
        raise MappingDefinitionError(f"{where}: bad 'when' path(s) {text!r}", file=file,
                                     line=line)
    return tuple(tuple(a.strip().split(".")) for a in alts)


def _split_template(text: str) -> list[list[list[str]]]:
    """Elements of components of raw pieces, braces kept whole."""
    elements: list[list[list[str]]] = [[[]]]
    buf = ""
    depth = 0
    for char in text:
        if depth:
            buf += char
            if char == "}":
                depth = 0
                elements[-1][-1].append(buf)
                buf = ""
            continue
        if char == "{":
            if buf:
                elements[-1][-1].append(buf)
            buf, depth = char, 1
        elif char in "+:":
            if buf:
                elements[-1][-1].append(buf)
                buf = ""
            if char == "+":
                elements.append([[]])
            else:
                elements[-1].append([])
        else:
            buf += char
    if depth:
        raise ValueError("unclosed '{'")
    if buf:
        elements[-1][-1].append(buf)
    return elements


def _compile_template(text: str, when: object, codes: dict[str, dict[str, str]],
                      version: str, where: str, file: str, line: int | None,
                      keep: bool = False) -> _Template:
    try:
        raw = _split_template(text)
    except ValueError as exc:
        raise MappingDefinitionError(f"{where}: {exc} in {text!r}", file=file,
                                     line=line) from None
    tag = "".join(raw[0][0]) if len(raw[0]) == 1 else ""
    if not _TAG.fullmatch(tag):
        raise MappingDefinitionError(f"{where}: a segment starts with its tag (3 letters), "
                                     f"not {text!r}", file=file, line=line)
    if tag in ("UNA", "UNB", "UNH", "UNT", "UNZ", "UNG", "UNE"):
        raise MappingDefinitionError(f"{where}: {tag} is written by the renderer", file=file,
                                     line=line)
    elements = []
    has_refs = False
    for raw_element in raw[1:]:
        components = []
        for raw_component in raw_element:
            pieces: list[Piece] = []
            for piece in raw_component:
                if piece.startswith("{"):
                    pieces.append(_parse_ref(piece[1:-1], codes, where, file, line))
                    has_refs = True
                else:
                    pieces.append(escape(piece, version))
            if len(pieces) > 1 and any(isinstance(p, _Ref) and p.splits for p in pieces):
                raise MappingDefinitionError(f"{where}: a 'split' reference must be the "
                                             "whole component", file=file, line=line)
            component: Component
            if not any(isinstance(p, _Ref) for p in pieces):
                component = "".join(p for p in pieces if isinstance(p, str))
            elif len(pieces) == 1:
                component = pieces[0]
            else:
                component = tuple(pieces)
            components.append(component)
        elements.append(tuple(components))
    return _Template(tag, tuple(elements), has_refs, _when(when, where, file, line), version,
                     keep)


# -- blocks ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Block:
    """A list of segments, possibly looped (``each``) or scoped (``with``)."""

    items: tuple[_Template | _Block, ...]
    each: tuple[str, ...] | None = None
    within: tuple[str, ...] | None = None
    when: tuple[tuple[str, ...], ...] | None = None

    def render(self, scope: _Scope) -> Iterator[tuple[str, str]]:
        """(segment text, canonical path of its scope) for every segment written."""
        if self.when is not None and not _any(scope, self.when):
            return
        if self.each is not None:
            values = scope.lookup(self.each)
            if _empty(values):
                return
            name = scope.name(self.each)
            if not isinstance(values, list):
                raise RenderError("expected a list", path=name)
            for i, item in enumerate(values):
                yield from self._inner(scope.enter(item, f"{name}[{i}]", i + 1))
            return
        if self.within is not None:
            value = scope.lookup(self.within)
            if _empty(value):
                return
            yield from self._inner(scope.enter(value, scope.name(self.within), scope.index))
            return
        yield from self._inner(scope)

    def _inner(self, scope: _Scope) -> Iterator[tuple[str, str]]:
        for item in self.items:
            if isinstance(item, _Block):
                yield from item.render(scope)
            else:
                text = item.render(scope)
                if text is not None:
                    yield text, scope.path


def _compile_block(entries: object, codes: dict[str, dict[str, str]], version: str,
                   key: tuple[str, ...], file: str, lines: Lines) -> tuple[_Template | _Block, ...]:
    line = lines.get(key)
    if not isinstance(entries, list) or not entries:
        raise MappingDefinitionError(f"'{'.'.join(key)}' must be a non-empty list of segments",
                                     file=file, line=line)
    out: list[_Template | _Block] = []
    for i, entry in enumerate(entries):
        where = f"{'.'.join(key)}[{i}]"
        here = (*key, str(i))
        at = lines.get((*here, "segment")) or lines.get((*here, "each")) or \
            lines.get((*here, "with")) or line
        if isinstance(entry, str):
            out.append(_compile_template(entry, None, codes, version, where, file, line))
            continue
        if not isinstance(entry, dict):
            raise MappingDefinitionError(f"{where}: a segment template or a block, not "
                                         f"{entry!r}", file=file, line=line)
        unknown = set(entry) - {"segment", "when", "keep", "each", "with", "segments"}
        if unknown:
            raise MappingDefinitionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                                         file=file, line=at)
        when = entry.get("when")
        if "segment" in entry:
            if {"each", "with", "segments"} & set(entry):
                raise MappingDefinitionError(f"{where}: 'segment' stands alone (with 'when')",
                                             file=file, line=at)
            out.append(_compile_template(str(entry["segment"]), when, codes, version, where,
                                         file, at, keep=entry.get("keep") is True))
            continue
        each, within = entry.get("each"), entry.get("with")
        for name, value in (("each", each), ("with", within)):
            if value is not None and (not isinstance(value, str) or not _PATH.fullmatch(value)):
                raise MappingDefinitionError(f"{where}: bad '{name}' path {value!r}", file=file,
                                             line=at)
        if each is not None and within is not None:
            raise MappingDefinitionError(f"{where}: 'each' or 'with', not both", file=file,
                                         line=at)
        items = _compile_block(entry.get("segments"), codes, version, (*here, "segments"),
                               file, lines)
        out.append(_Block(items, tuple(each.split(".")) if each else None,
                          tuple(within.split(".")) if within else None,
                          _when(when, where, file, at)))
    return tuple(out)


# -- the mapping and its body ----------------------------------------------------------------

def _ends(head: str, tail: str, ref_text: str, codec: str, version: str, newline: str,
          message_count: int) -> tuple[bytes, bytes]:
    """UNA+UNB and UNZ with the control reference in."""
    ref = escape(str(ref_text), version)
    unb = f"{head}{ref}{tail}".encode(codec, errors="xmlcharrefreplace")
    unz = f"UNZ+{message_count}+{ref}'{newline}".encode(codec, errors="xmlcharrefreplace")
    return unb, unz


@dataclass(slots=True)
class EdifactBody:
    """A validated interchange waiting for its control reference."""

    head: str          # UNA (when written) and UNB up to its 0020
    tail: str          # the rest of UNB after 0020, with the terminator
    body: bytes        # UNH..UNT, encoded
    codec: str
    version: str
    newline: str
    message_count: int = 1
    content_type: str = "application/EDIFACT"

    def seal(self, control_ref: str) -> bytes:
        """The interchange with ``control_ref`` in UNB and UNZ 0020. Never fails (a
        reference the charset cannot hold is written as XML character references)."""
        unb, unz = _ends(self.head, self.tail, control_ref, self.codec, self.version,
                         self.newline, self.message_count)
        return b"".join((unb, self.body, unz))


@dataclass(slots=True)
class EdifactFileBody:
    """A validated interchange whose UNH..UNT waits in a spool file (``render_stream``):
    sealed block by block, never held in memory (``StreamedBody``)."""

    head: str
    tail: str
    path: Path         # the spooled UNH..UNT, encoded
    size: int
    codec: str
    version: str
    newline: str
    message_count: int = 1
    content_type: str = "application/EDIFACT"

    def blocks(self, control_ref: str) -> Iterator[bytes]:
        """The sealed interchange, block by block."""
        unb, unz = _ends(self.head, self.tail, control_ref, self.codec, self.version,
                         self.newline, self.message_count)
        yield unb
        with open(self.path, "rb") as spooled:
            while block := spooled.read(_BLOCK):
                yield block
        yield unz

    def seal_to(self, control_ref: str, write: Callable[[bytes], object]) -> int:
        """Write the interchange with ``control_ref`` in; returns the bytes written."""
        written = 0
        for block in self.blocks(control_ref):
            write(block)
            written += len(block)
        return written

    def seal(self, control_ref: str) -> bytes:
        """``EdifactBody.seal``: the whole interchange in memory (small documents, tests)."""
        return b"".join(self.blocks(control_ref))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class EdifactRenderer:
    """A compiled outbound EDIFACT mapping (``OutboundMapping``)."""

    id: str
    document: str
    file: str
    message: tuple[str, str, str, str, str | None]
    segments: tuple[_Template | _Block, ...]
    charset: str = "UNOC"
    version: str = "3"
    una: bool = True
    newline: bool = True
    aliases: tuple[str, ...] = ()
    description: str = ""
    syntax: str = "edifact"
    uses_control_ref: bool = True
    suffix: str = ".edi"
    codec: str = field(init=False)

    def __post_init__(self) -> None:
        self.codec = SYNTAX_CODECS[self.charset]

    def render(self, document: dict[str, Any], ctx: RenderContext) -> EdifactBody:
        """Render and validate ``document``; RenderError when it cannot be."""
        try:
            with gc_paused():  # many small objects, no cycles (see gateway.core.gcpause)
                return self._render(document, ctx)
        except RenderError as exc:
            if exc.mapping is None:
                raise RenderError(exc.reason, mapping=self.id, path=exc.path) from None
            raise

    def _render(self, document: dict[str, Any], ctx: RenderContext) -> EdifactBody:
        nl = "\n" if self.newline else ""
        texts: list[str] = []
        paths: list[str] = []
        for text, path in self._segments(document, ctx):
            texts.append(text)
            paths.append(path)
        texts.append(f"UNT+{len(texts) + 1}+1")
        paths.append("")
        body_text = f"'{nl}".join(texts) + f"'{nl}"
        try:
            body = body_text.encode(self.codec)
        except UnicodeEncodeError as exc:
            index = body_text.count("'", 0, exc.start)
            raise RenderError(f"{texts[index][:3]}: {body_text[exc.start]!r} cannot be written "
                              f"in {self.charset}", path=paths[index] or None) from None
        head, tail = self._envelope(ctx)
        sealed = EdifactBody(head, tail, body, self.codec, self.version, nl)
        self._validate(sealed.seal(_CHECK_REF), texts, paths)
        return sealed

    def _segments(self, document: dict[str, Any], ctx: RenderContext
                  ) -> Iterator[tuple[str, str]]:
        """UNH and the mapping's segments (not UNT), each with the canonical path of the
        scope it was written in."""
        if not isinstance(document, dict):
            raise RenderError("the document is not a JSON object")
        if not ctx.sender_id or not ctx.recipient_id:
            raise RenderError("the context names no sender or no recipient (UNB S002/S003)")
        kind, version, release, agency, association = self.message
        ident = ":".join(x for x in (kind, version, release, agency, association) if x)
        yield f"UNH+1+{ident}", ""
        scope = _Scope(document, "", 0, document, ctx)
        for item in self.segments:
            if isinstance(item, _Block):
                yield from item.render(scope)
            else:
                single = item.render(scope)
                if single is not None:
                    yield single, ""

    def _envelope(self, ctx: RenderContext) -> tuple[str, str]:
        """UNA and UNB up to its 0020, and the rest of UNB after it."""
        nl = "\n" if self.newline else ""
        v = self.version

        def sender(ident: str, qualifier: str | None) -> str:
            return escape(ident, v) + (f":{escape(qualifier, v)}" if qualifier else "")

        now = ctx.now
        una = f"UNA:+.? '{nl}" if v < "4" else f"UNA:+.?*'{nl}"
        date = now.strftime("%y%m%d" if v < "4" else "%Y%m%d")
        head = (f"{una if self.una else ''}UNB+{self.charset}:{v}+"
                f"{sender(ctx.sender_id, ctx.sender_qualifier)}+"
                f"{sender(ctx.recipient_id, ctx.recipient_qualifier)}+{date}:"
                f"{now.strftime('%H%M')}+")
        extra = ["", "", "", "1" if ctx.ack_requested else "", "", "1" if ctx.test else ""]
        while extra and not extra[-1]:
            extra.pop()
        tail = "".join("+" + x for x in extra) + f"'{nl}"
        return head, tail

    def render_stream(self, document: dict[str, Any], ctx: RenderContext, *,
                      spool: Path | None = None) -> EdifactFileBody:
        """``render`` for a document too large to hold (its long list a ``StreamedList``):
        the body is written to a file under ``spool`` as it is rendered, then read back with
        edigw's streaming reader (envelope, UNT count) and checked segment by segment
        against its directory (``structure.MessageCheck``: the same checks as ``render``).
        RenderError when it cannot be; the file is then removed."""
        try:
            with gc_paused():
                return self._render_stream(document, ctx, spool)
        except RenderError as exc:
            if exc.mapping is None:
                raise RenderError(exc.reason, mapping=self.id, path=exc.path) from None
            raise

    def _render_stream(self, document: dict[str, Any], ctx: RenderContext,
                       spool: Path | None) -> EdifactFileBody:
        nl = "\n" if self.newline else ""
        end = f"'{nl}"
        fd, name = tempfile.mkstemp(prefix=".render-", suffix=self.suffix, dir=spool)
        path = Path(name)
        done = False
        try:
            size = count = 0
            with os.fdopen(fd, "wb") as out:
                texts: list[str] = []
                paths: list[str] = []

                def flush() -> int:
                    text = end.join(texts) + end
                    try:
                        data = text.encode(self.codec)
                    except UnicodeEncodeError as exc:
                        index = text.count("'", 0, exc.start)
                        raise RenderError(f"{texts[index][:3]}: {text[exc.start]!r} cannot be "
                                          f"written in {self.charset}",
                                          path=paths[index] or None) from None
                    out.write(data)
                    texts.clear()
                    paths.clear()
                    return len(data)

                for text, where in self._segments(document, ctx):
                    texts.append(text)
                    paths.append(where)
                    count += 1
                    if len(texts) >= _BATCH:
                        size += flush()
                texts.append(f"UNT+{count + 1}+1")
                paths.append("")
                size += flush()
            head, tail = self._envelope(ctx)
            body = EdifactFileBody(head, tail, path, size, self.codec, self.version, nl)
            self._validate_stream(body, document, ctx)
            done = True
            return body
        finally:
            if not done:
                path.unlink(missing_ok=True)

    def _validate_stream(self, body: EdifactFileBody, document: dict[str, Any],
                         ctx: RenderContext) -> None:
        from gateway.formats.edifact.stream import InterchangeRead, read_stream
        from gateway.formats.edifact.structure import MessageCheck

        # What validate_message infers from the UNA/UNB ``render`` writes.
        repetition = "*" if self.version >= "4" else ""
        check: MessageCheck | None = None
        last = 0
        try:
            for event in read_stream(body.blocks(_CHECK_REF),
                                     filename=f"{self.id}{self.suffix}"):
                if isinstance(event, InterchangeRead):
                    if event.interchange.error is not None:
                        raise self._stream_fail(event.interchange.error, document, ctx)
                    continue
                message = event.message
                if message.error is not None:
                    raise self._stream_fail(message.error, document, ctx)
                if check is None:
                    check = MessageCheck(message, decimal_mark=".", repetition=repetition,
                                         limit=1)
                # A slice repeats the message's header and ends with a stand-in UNT: each
                # segment is checked once, in file order.
                for segment in message.segments:
                    if segment.index > last:
                        check.feed(segment)
                        last = segment.index
                if event.final:
                    errors = check.finish()
                    check = None
                    if errors:
                        raise self._stream_fail(errors[0], document, ctx)
        except PayloadError as exc:
            raise self._stream_fail(exc, document, ctx) from None

    def _stream_fail(self, error: PayloadError, document: dict[str, Any],
                     ctx: RenderContext) -> RenderError:
        """The RenderError ``_validate`` would give: the segment's text and canonical path
        are found by rendering again up to it (errors are rare, memory is not)."""
        offset = 1 + (1 if self.una else 0)
        pos = error.position
        index = pos.segment - offset - 1 if pos and pos.segment else -1
        shown = item = ""
        if index >= 0:
            n = -1
            for n, (text, where) in enumerate(self._segments(document, ctx)):
                if n == index:
                    shown, item = text, where
                    break
            else:
                if index == n + 1:
                    shown = f"UNT+{n + 2}+1"
        return self._error(error, index, shown, item)

    def _error(self, error: PayloadError, index: int, shown: str, item: str) -> RenderError:
        pos = error.position
        tag = pos.tag if pos and pos.tag else "?"
        element = f" {pos.element}" if pos and pos.element else ""
        return RenderError(f"rendering breaks its directory: {tag}{element}: {error.reason}"
                           f" in segment {index + 1} {shown[:60]!r}",
                           mapping=self.id, path=item or f"{tag}{element}")

    def _validate(self, data: bytes, texts: list[str], paths: list[str]) -> None:
        from gateway.formats.edifact.structure import validate_message

        offset = 1 + (1 if self.una else 0)  # file index of UNH: UNA and UNB come first

        def fail(error: PayloadError) -> RenderError:
            pos = error.position
            index = pos.segment - offset - 1 if pos and pos.segment else -1
            item = paths[index] if 0 <= index < len(paths) else ""
            shown = texts[index] if 0 <= index < len(texts) else ""
            return self._error(error, index, shown, item)

        try:
            interchanges = read_interchanges(data, filename=f"{self.id}{self.suffix}")
        except PayloadError as exc:
            raise fail(exc) from None
        for interchange in interchanges:
            if interchange.error is not None:
                raise fail(interchange.error)
            for message in interchange.messages:
                if message.error is not None:
                    raise fail(message.error)
                errors = validate_message(message, decimal_mark=".")
                if errors:
                    raise fail(errors[0])


# -- compiling -------------------------------------------------------------------------------

_KEYS = {"id", "description", "document", "syntax", "aliases", "message", "interchange",
         "codes", "segments"}


def compile_edifact_renderer(data: dict[str, Any], file: str, lines: Lines) -> EdifactRenderer:
    """Compile an outbound EDIFACT mapping (the YAML described in the module docstring)."""
    from gateway.core.canonical import OUTBOUND_TYPES

    def bad(reason: str, *key: str) -> MappingDefinitionError:
        return MappingDefinitionError(reason, file=file, line=lines.get(key, lines.get(())))

    unknown = set(data) - _KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))} (known: "
                  f"{', '.join(sorted(_KEYS))})")
    document = data.get("document")
    if document not in OUTBOUND_TYPES:
        raise bad(f"'document' must be one of {', '.join(OUTBOUND_TYPES)}, not {document!r}",
                  "document")
    message = data.get("message")
    if not isinstance(message, dict):
        raise bad("'message' must give type, version, release, agency (and association)",
                  "message")
    parts = []
    for key in ("type", "version", "release", "agency", "association"):
        value = message.get(key)
        if value is None and key != "association":
            raise bad(f"'message.{key}' is required", "message")
        if value is not None and not re.fullmatch(r"[A-Z0-9]{1,6}", str(value)):
            raise bad(f"'message.{key}' {value!r} is not an EDIFACT code", "message", key)
        parts.append(None if value is None else str(value))
    env = data.get("interchange") or {}
    if not isinstance(env, dict) or set(env) - {"charset", "version", "una", "newline"}:
        raise bad("'interchange' takes charset, version, una, newline", "interchange")
    charset = str(env.get("charset", "UNOC"))
    if charset not in SYNTAX_CODECS:
        raise bad(f"charset {charset!r} is not one of {', '.join(SYNTAX_CODECS)}", "interchange")
    version = str(env.get("version", "3"))
    if version not in ("3", "4"):
        raise bad("interchange version is 3 or 4", "interchange")
    codes = data.get("codes") or {}
    if not isinstance(codes, dict) or not all(
            isinstance(t, dict) and all(isinstance(c, str) for c in t.values())
            for t in codes.values()):
        raise bad("'codes' maps table names to {value: code} tables", "codes")
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise bad("'aliases' is a list of names", "aliases")
    segments = _compile_block(data.get("segments"), codes, version, ("segments",), file, lines)
    return EdifactRenderer(
        id=str(data["id"]), document=str(document), file=file,
        message=(str(parts[0]), str(parts[1]), str(parts[2]), str(parts[3]), parts[4]),
        segments=segments, charset=charset, version=version,
        una=bool(env.get("una", True)), newline=bool(env.get("newline", True)),
        aliases=tuple(aliases), description=str(data.get("description") or ""))


def _conforms(mapping: EdifactRenderer, body: EdifactBody, streamed: EdifactFileBody
              ) -> tuple[OutboundMapping, Body, StreamingMapping, StreamedBody]:
    """Never called: mypy checks here that the classes fit the render contract."""
    return mapping, body, mapping, streamed
