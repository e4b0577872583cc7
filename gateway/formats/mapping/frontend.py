"""The front end every mapping compiler shares (EDIFACT, XML, CSV).

A mapping file is loaded once (``yamlsrc``: plain values plus the line of every key),
merged with its ``extends`` base (``registry``) and handed to its format's compiler. What
does not depend on the format lives here: where a key was written (``Where``), the error
that names the file and line of the first thing wrong (``DefinitionCompiler.fail``), the
checks of unknown and required keys, of the canonical document type, of the value types
and code lists of a rule. Each format's compiler subclasses ``DefinitionCompiler`` and keeps
only its own syntax: segment paths, XPaths or columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping.convert import TYPES

#: Where each key path of a merged mapping was written: (file, 1-based line). An overlay's
#: keys point into the overlay's file, the keys it inherits into its base's.
Where = dict[tuple[str, ...], tuple[str, int | None]]

#: Canonical fields the gateway fills itself; a mapping may not set them.
#: ``part_number`` and ``part_count`` are set when a large price list is published in parts.
GATEWAY_FIELDS = frozenset({"schema_", "schema", "message_id", "partner", "source",
                            "part_number", "part_count"})


class CompiledMapping(Protocol):
    """What the mapping set needs of a compiled mapping, whatever its format."""

    id: str
    document: str
    file: str
    #: False for an overlay that inherits its match: it is chosen by id, never by match.
    auto_match: bool

    @property
    def format(self) -> str:
        """``edifact``, ``xml`` or ``csv``."""
        ...

    @property
    def sample_suffix(self) -> str:
        """The file suffix of the mapping's sample input (``.edi``, ``.xml``, ``.csv``)."""
        ...

    def produce(self, sample: Path) -> list[dict[str, Any]]:
        """The canonical JSON documents the mapping makes from ``sample`` (for partner
        ``sample``); the first error the sample raises, since a sample must map cleanly."""
        ...


class Compile(Protocol):
    """A format's compiler: a merged mapping document in, a compiled mapping out, or a
    ``MappingDefinitionError`` naming the file and line of the first thing wrong."""

    def __call__(self, data: dict[str, Any], where: Where, file: str, *,
                 own_match: bool = True) -> CompiledMapping:
        ...


class DefinitionCompiler:
    """The checks every format's compiler makes, and how it reports what is wrong.

    ``data`` is the merged mapping document, ``where`` the file and line of each of its key
    paths, ``file`` the mapping's own file (for a key whose line is unknown), ``own_match``
    False for an overlay that inherits its base's ``match``.
    """

    def __init__(self, data: dict[str, Any], where: Where, file: str,
                 own_match: bool = True) -> None:
        self.data = data
        self.where = where
        self.file = file
        self.own_match = own_match

    def fail(self, reason: str, *path: str) -> MappingDefinitionError:
        """The error for ``reason`` at key ``path``, or at its nearest written parent."""
        while path and path not in self.where:
            path = path[:-1]
        file, line = self.where.get(path, (self.file, None))
        return MappingDefinitionError(reason, file=file, line=line)

    def check_keys(self, spec: dict[str, Any], known: frozenset[str], *at: str,
                   within: str = "") -> None:
        """Every key of ``spec`` (written at ``at``) is one of ``known``; ``within`` says
        where, after "unknown key 'x'" (`` in match``)."""
        for key in spec:
            if key not in known:
                raise self.fail(f"unknown key {key!r}{within} (known: "
                                f"{', '.join(sorted(known))})", *at, key)

    def require(self, *keys: str) -> None:
        """Each top-level key of ``keys`` is there and not empty."""
        for key in keys:
            if self.data.get(key) in (None, ""):
                raise self.fail(f"{key!r} is required", key)

    def canonical_document(self) -> tuple[str, type[BaseModel]]:
        """The ``document`` type and its canonical model; it must be one of them."""
        document = self.data["document"]
        if document not in CANONICAL_MODELS:
            raise self.fail(f"document {document!r} is not a canonical type "
                            f"({', '.join(sorted(CANONICAL_MODELS))})", "document")
        return document, CANONICAL_MODELS[document]

    def fields_spec(self) -> dict[str, Any]:
        """The top-level ``fields``: canonical field -> rule."""
        fields = self.data["fields"]
        if not isinstance(fields, dict):
            raise self.fail("'fields' is a mapping of canonical field: rule", "fields")
        return fields

    def not_a_field(self, name: str, model: str, known: Iterable[str],
                    *at: str) -> MappingDefinitionError:
        """The error for ``name``, which the canonical ``model`` does not have."""
        return self.fail(f"{name!r} is not a field of the canonical {model} "
                         f"(known: {', '.join(known)})", *at)

    def value_type(self, spec: dict[str, Any], name: str, *at: str) -> str:
        """The ``type`` of rule ``name`` (``text`` when not given)."""
        kind = spec.get("type", "text")
        if kind not in TYPES:
            raise self.fail(f"unknown type {kind!r} for {name!r} (known: "
                            f"{', '.join(sorted(TYPES))})", *at, "type")
        return str(kind)

    def code_list(self, spec: dict[str, Any], name: str, *at: str) -> dict[str, Any] | None:
        """The ``codes`` of rule ``name``: code as sent -> canonical value, or None."""
        codes = spec.get("codes")
        if codes is not None and not isinstance(codes, dict):
            raise self.fail(f"'codes' of {name!r} maps a code to a canonical value", *at,
                            "codes")
        return codes
