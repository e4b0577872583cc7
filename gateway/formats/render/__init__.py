"""Outbound rendering: a canonical document (``edigw.invoice/1`` …) made into the bytes a
partner reads (EANCOM, UBL, CII, Factur-X, CSV), through declarative outbound mappings.

Outbound mappings live under ``mappings/outbound/`` (never read by the inbound
``MappingSet``), one YAML file each, beside ``<id>.sample.json`` (a canonical document)
and ``<id>.expected<suffix>`` (what rendering it with ``SAMPLE_CONTEXT`` gives), which
``edigw mappings test`` compares. Each file names its ``id``, the canonical ``document``
type it renders and its ``syntax`` (``edifact``, ``xml``, ``csv``, ``pdf``); the renderer of
that syntax (``RENDERERS``, imported on first use) compiles the rest.

Rendering is two steps so that interchange control references stay gap-free: ``render``
makes and validates the body (it may fail: nothing is allocated yet); ``Body.seal`` puts
the allocated control reference in (it cannot fail) and gives the bytes that leave.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.core.errors import EdigwError, MappingDefinitionError
from gateway.formats.mapping.registry import MappingProblem
from gateway.formats.mapping.yamlsrc import Lines, load_with_lines

#: The folder under a mappings root that holds the outbound mappings.
OUTBOUND_FOLDER = "outbound"

#: Syntax names ``--format`` takes besides a mapping id; each is resolved with the
#: document type to the mapping whose ``aliases`` list it (``ubl`` + ``invoice`` ->
#: ``ubl-invoice``).
SYNTAX_NAMES = ("edifact", "ubl", "cii", "factur-x", "csv", "text")


class RenderError(EdigwError):
    """A document cannot be rendered for a partner: a required value is missing, the
    rendering breaks its directory or XSD, no mapping fits. ``path`` names the canonical
    field (``lines[3].quantity``) or the element of the output at fault when known."""

    stage = "render"

    def __init__(self, reason: str, *, mapping: str | None = None,
                 path: str | None = None) -> None:
        self.reason = reason
        self.mapping = mapping
        self.path = path
        where = f" at {path}" if path else ""
        by = f"{mapping}: " if mapping else ""
        super().__init__(f"{by}{reason}{where}")


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a rendering needs besides the document: who sends and who receives (UNB
    identifiers), whether the partner is in test, and the time of preparation."""

    partner_id: str
    sender_id: str
    sender_qualifier: str | None = None
    recipient_id: str = ""
    recipient_qualifier: str | None = None
    test: bool = False
    #: UNB 0031: ask the partner for a CONTRL.
    ack_requested: bool = False
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: Per-partner values a mapping may read as ``{ctx.options.NAME}`` (CSV delimiter …).
    options: dict[str, Any] = field(default_factory=dict)


#: The context every sample is rendered with, so that expected outputs are stable.
SAMPLE_CONTEXT = RenderContext(
    partner_id="sample", sender_id="5412345000013", sender_qualifier="14",
    recipient_id="5400000000003", recipient_qualifier="14", test=False,
    now=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC))

#: The control reference samples are sealed with.
SAMPLE_CONTROL_REF = "1"


class Body(Protocol):
    """A validated rendering waiting for its control reference."""

    #: e.g. ``application/EDIFACT``, ``application/xml``, ``application/pdf``, ``text/csv``
    content_type: str
    #: how many messages it holds (an EDIFACT interchange may hold several)
    message_count: int

    def seal(self, control_ref: str) -> bytes:
        """The bytes that leave, with ``control_ref`` in (UNB/UNZ 0020 for EDIFACT; other
        syntaxes may ignore it). Must not fail."""
        ...


class OutboundMapping(Protocol):
    """One compiled outbound mapping."""

    id: str
    #: canonical type it renders: order-response, despatch-advice, invoice, price-list
    document: str
    syntax: str  # edifact | xml | csv | pdf
    #: syntax names it answers to for ``--format`` (``ubl``, ``cii``, ``factur-x`` …)
    aliases: tuple[str, ...]
    #: True when it uses interchange control references (EDIFACT): the caller allocates one
    uses_control_ref: bool
    file: str
    #: suffix of the rendered file name and of the expected sample (``.edi``, ``.xml``)
    suffix: str

    def render(self, document: dict[str, Any], ctx: RenderContext) -> Body:
        """Render and validate ``document`` (canonical JSON as a dict); RenderError when it
        cannot be."""
        ...


#: ``module:function`` of each syntax's compiler: ``(data, file, lines) -> OutboundMapping``.
RENDERERS: dict[str, str] = {
    "edifact": "gateway.formats.render.edifact:compile_edifact_renderer",
    "xml": "gateway.formats.render.xml:compile_xml_renderer",
    "pdf": "gateway.formats.render.facturx:compile_facturx_renderer",
    "csv": "gateway.formats.render.csv:compile_csv_renderer",
    "text": "gateway.formats.render.text:compile_text_renderer",
}

Compile = Callable[[dict[str, Any], str, Lines], OutboundMapping]


def _compiler(syntax: object, file: str, line: int | None) -> Compile:
    target = RENDERERS.get(syntax) if isinstance(syntax, str) else None
    if target is None:
        raise MappingDefinitionError(
            f"'syntax' must be one of {', '.join(sorted(RENDERERS))}, not {syntax!r}",
            file=file, line=line)
    module, function = target.split(":")
    try:
        compile_: Compile = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise MappingDefinitionError(f"syntax {syntax!r} is not available: {exc}",
                                     file=file, line=line) from exc
    return compile_


class OutboundMappings:
    """Every outbound mapping under ``<mappings root>/outbound``, by id."""

    def __init__(self, mappings: dict[str, OutboundMapping],
                 problems: list[MappingProblem] | None = None) -> None:
        self.mappings = mappings
        #: The files left out, each with why (``check-config``, ``channels``, ``serve``).
        self.problems: list[MappingProblem] = list(problems or [])
        #: The ids of the mappings left out, and why: rendering with one fails with it.
        self.broken: dict[str, MappingProblem] = {
            p.mapping_id: p for p in self.problems if p.mapping_id is not None}

    @classmethod
    def load(cls, root: Path, *, strict: bool = False) -> OutboundMappings:
        """Load and compile every ``*.yaml`` under ``root/outbound`` (none: an empty set).
        A file that does not load is left out alone, recorded in ``problems`` (``broken``
        by id when known); with ``strict``, the first problem is raised."""
        folder = Path(root) / OUTBOUND_FOLDER
        found: dict[str, OutboundMapping] = {}
        problems: list[MappingProblem] = []
        if not folder.is_dir():
            return cls(found)
        for path in sorted(folder.rglob("*.yaml")):
            ident: object = None
            try:
                data, lines = load_with_lines(path)
                ident = data.get("id")
                if not isinstance(ident, str) or not ident:
                    raise MappingDefinitionError("'id' is required", file=str(path),
                                                 line=lines.get(("id",), 1))
                if ident in found:
                    raise MappingDefinitionError(
                        f"id {ident!r} is already used by {found[ident].file}",
                        file=str(path), line=lines.get(("id",)))
                compile_ = _compiler(data.get("syntax"), str(path), lines.get(("syntax",)))
                found[ident] = compile_(data, str(path), lines)
            except MappingDefinitionError as exc:
                if strict:
                    raise
                taken = isinstance(ident, str) and ident in found
                problems.append(MappingProblem(
                    exc, ident if isinstance(ident, str) and ident and not taken else None))
        return cls(found, problems)

    def __iter__(self) -> Iterator[OutboundMapping]:
        return iter(self.mappings.values())

    def __len__(self) -> int:
        return len(self.mappings)

    def choose(self, document: str, fmt: str) -> OutboundMapping:
        """The mapping for a ``document`` type asked for as ``fmt``: a mapping id, or a
        syntax name listed in a mapping's ``aliases``. RenderError when none fits."""
        hit = self.mappings.get(fmt)
        broken = self.broken.get(fmt)
        if hit is None and broken is not None:
            raise RenderError(f"outbound mapping {fmt!r} is disabled: {broken}")
        if hit is not None:
            if hit.document != document:
                raise RenderError(f"outbound mapping {fmt!r} renders {hit.document}, "
                                  f"not {document}")
            return hit
        found = [m for m in self.mappings.values() if m.document == document
                 and fmt in m.aliases]
        if len(found) == 1:
            return found[0]
        known = sorted(m.id for m in self.mappings.values() if m.document == document)
        if not found:
            raise RenderError(f"no outbound mapping renders {document} as {fmt!r} (known for "
                              f"{document}: {', '.join(known) or 'none'})")
        raise RenderError(f"several outbound mappings render {document} as {fmt!r}: "
                          f"{', '.join(sorted(m.id for m in found))}; name one")
