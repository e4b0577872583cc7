"""Plain-text renderer (syntax ``text``): a short message from a canonical document, for
partners who order by text message and get their confirmation the same way.

A mapping YAML under ``mappings/outbound/``::

    id: text-order-response
    document: order-response
    syntax: text
    aliases: [text]
    max_length: 320          # a longer rendering is a RenderError (the sender cuts nothing)
    codes: {status: {accepted: "accepted", rejected: "refused"}}
    template: >-
      Order {{ doc.order_number|req }} {{ doc.status|code('status') }}
      {%- if doc.delivery_date %}, delivery {{ doc.delivery_date|date('%d/%m') }}{% endif %}.

The template is Jinja2 with the filters of the XML renderer (``req``, ``date``, ``dec``,
``code``; ``gateway.formats.render.xml``), no escaping; runs of white space are folded to
one space. The control reference is not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping.yamlsrc import Lines
from gateway.formats.render import RenderContext, RenderError
from gateway.formats.render.xml import aliases_of, document_of, environment, wrap

_SPACES = re.compile(r"\s+")


@dataclass(slots=True)
class TextBody:
    data: bytes
    content_type: str = "text/plain; charset=utf-8"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return self.data


@dataclass(slots=True)
class TextMapping:
    """An outbound text mapping (``OutboundMapping``)."""

    id: str
    document: str
    aliases: tuple[str, ...]
    file: str
    template: jinja2.Template
    max_length: int
    syntax: str = "text"
    uses_control_ref: bool = False
    suffix: str = ".txt"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> TextBody:
        try:
            text = self.template.render(
                doc=wrap(document, "", CANONICAL_MODELS.get(self.document)), ctx=ctx)
        except RenderError as exc:
            raise RenderError(exc.reason, mapping=self.id, path=exc.path) from None
        except jinja2.TemplateError as exc:
            raise RenderError(f"the template fails: {exc}", mapping=self.id) from exc
        text = _SPACES.sub(" ", text).strip()
        if not text:
            raise RenderError("the rendering is empty", mapping=self.id)
        if len(text) > self.max_length:
            raise RenderError(f"{len(text)} characters, more than max_length "
                              f"{self.max_length}", mapping=self.id)
        return TextBody(text.encode("utf-8"))


def compile_text_renderer(data: dict[str, Any], file: str, lines: Lines) -> TextMapping:
    known = {"id", "document", "syntax", "aliases", "max_length", "codes", "template",
             "description"}
    for key in data:
        if key not in known:
            raise MappingDefinitionError(f"unknown key {key!r} (known: {', '.join(sorted(known))})",
                                         file=file, line=lines.get((key,)))
    source = data.get("template")
    if not isinstance(source, str) or not source.strip():
        raise MappingDefinitionError("'template' (a Jinja2 text) is required", file=file,
                                     line=lines.get(("template",), 1))
    raw = data.get("max_length", 480)  # the mapping loader keeps scalars as text
    max_length = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else 0
    if not 1 <= max_length <= 10_000:
        raise MappingDefinitionError("'max_length' is a number of characters (1 to 10000)",
                                     file=file, line=lines.get(("max_length",)))
    codes = data.get("codes") or {}
    if not isinstance(codes, dict) or not all(isinstance(v, dict) for v in codes.values()):
        raise MappingDefinitionError("'codes' maps table names to {value: code}", file=file,
                                     line=lines.get(("codes",)))
    env = environment(Path(file).parent, {k: {str(a): str(b) for a, b in v.items()}
                                          for k, v in codes.items()}, file)
    env.autoescape = False
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise MappingDefinitionError(f"template: {exc.message}", file=file,
                                     line=lines.get(("template",))) from None
    return TextMapping(id=str(data["id"]), document=document_of(data, file, lines),
                       aliases=aliases_of(data, file, lines), file=file, template=template,
                       max_length=max_length)
