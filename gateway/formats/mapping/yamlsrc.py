"""YAML with line numbers: plain Python values plus the line of every key, for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.core.errors import MappingDefinitionError

Lines = dict[tuple[str, ...], int]


def load_with_lines(path: Path) -> tuple[dict[str, Any], Lines]:
    """The document of ``path`` and {key path: 1-based line}; duplicate keys are errors."""
    file = str(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise MappingDefinitionError(f"not valid YAML: {getattr(exc, 'problem', exc)}",
                                     file=file, line=mark.line + 1 if mark else None) from exc
    if not isinstance(node, yaml.MappingNode):
        raise MappingDefinitionError("a mapping file is a YAML mapping (key: value)", file=file,
                                     line=node.start_mark.line + 1 if node else 1)
    lines: Lines = {(): node.start_mark.line + 1}
    return _value(node, (), lines, file), lines


def _value(node: yaml.Node, path: tuple[str, ...], lines: Lines, file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``
                base = _value(value_node, path, lines, file)
                if not isinstance(base, dict):
                    raise MappingDefinitionError("'<<' merges a mapping", file=file,
                                                 line=key_node.start_mark.line + 1)
                merged.update(base)
                continue
            key = str(key_node.value)
            if key in result:
                raise MappingDefinitionError(f"key {key!r} appears twice", file=file,
                                             line=key_node.start_mark.line + 1)
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _value(value_node, (*path, key), lines, file)
        return {**merged, **result}
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, (*path, str(i)), lines, file) for i, item in enumerate(node.value)]
    # Scalars: let PyYAML's resolver decide, but keep codes like 9 or 220 as text.
    if node.tag == "tag:yaml.org,2002:null":
        return None
    if node.tag == "tag:yaml.org,2002:bool":
        return yaml.safe_load(node.value)
    return str(node.value)
