"""Render each outbound mapping's sample and compare with the expected output.

Beside ``mappings/outbound/…/<id>.yaml`` live ``<id>.sample.json`` (a canonical document)
and ``<id>.expected<suffix>`` (``.edi``, ``.xml``, ``.csv``, ``.pdf``: what rendering the
sample with ``SAMPLE_CONTEXT`` and sealing it with ``SAMPLE_CONTROL_REF`` gives).
``edigw mappings test`` calls ``run_outbound_samples`` after the inbound samples;
``write_outbound_expected`` rewrites the expected files (``--update``), for deliberate use
after a reviewed mapping change.

The comparison is byte for byte, except for a mapping that has a ``sample_equal(rendered,
expected) -> bool`` method (a PDF holds a creation date and ids that change on every
rendering): that method decides. A text difference is shown as a unified diff.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from gateway.core.errors import EdigwError
from gateway.formats.mapping.samples import SampleResult
from gateway.formats.render import (
    SAMPLE_CONTEXT,
    SAMPLE_CONTROL_REF,
    OutboundMapping,
    OutboundMappings,
)

__all__ = ["outbound_sample_paths", "render_sample", "run_outbound_samples",
           "write_outbound_expected"]

#: Shown instead of a diff when the outputs are binary.
_BINARY_LIMIT = 0.1


def outbound_sample_paths(mapping: OutboundMapping) -> tuple[Path, Path]:
    """(canonical sample, expected output) beside the mapping file."""
    folder = Path(mapping.file).parent
    return folder / f"{mapping.id}.sample.json", folder / f"{mapping.id}.expected{mapping.suffix}"


def render_sample(mapping: OutboundMapping) -> bytes:
    """The bytes ``mapping`` gives for its sample (RenderError, OSError, ValueError when it
    cannot)."""
    sample, _ = outbound_sample_paths(mapping)
    document: Any = json.loads(sample.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{sample} does not hold a JSON object")
    return mapping.render(document, SAMPLE_CONTEXT).seal(SAMPLE_CONTROL_REF)


def _equal(mapping: OutboundMapping, rendered: bytes, expected: bytes) -> bool:
    same = getattr(mapping, "sample_equal", None)
    if callable(same):
        return bool(same(rendered, expected))
    return rendered == expected


def _text(data: bytes) -> list[str] | None:
    """The lines of ``data`` when it reads as text (UTF-8, else Latin-1 without controls)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\r\n\t")
    if text and controls / len(text) > _BINARY_LIMIT:
        return None
    # One EDIFACT segment per line even when the mapping writes no line breaks.
    if "\n" not in text and "'" in text:
        return [part + "'\n" for part in text.split("'") if part]
    return text.splitlines(True)


def _diff(expected_path: Path, expected: bytes, rendered: bytes) -> str:
    wanted, actual = _text(expected), _text(rendered)
    if wanted is None or actual is None:
        return (f"{expected_path}: the rendering differs ({len(rendered)} bytes, expected "
                f"{len(expected)})\n")
    diff = "".join(difflib.unified_diff(wanted, actual, str(expected_path), "rendered"))
    return diff or f"{expected_path}: the rendering differs in line endings or encoding\n"


def run_outbound_samples(root: Path) -> list[SampleResult]:
    """Render every outbound mapping under ``root`` on its sample; one result per mapping,
    and a failed one for each mapping file that does not load."""
    results = []
    outbound = OutboundMappings.load(root)
    for problem in outbound.problems:
        results.append(SampleResult(problem.mapping_id or Path(problem.file).stem,
                                    Path(problem.file), False, f"does not load: {problem}"))
    for mapping in sorted(outbound, key=lambda m: m.id):
        sample, expected = outbound_sample_paths(mapping)
        if not sample.exists() or not expected.exists():
            missing = sample if not sample.exists() else expected
            results.append(SampleResult(mapping.id, sample, False, f"missing {missing}"))
            continue
        try:
            rendered = render_sample(mapping)
        except (EdigwError, ValueError) as exc:
            results.append(SampleResult(mapping.id, sample, False,
                                        f"{type(exc).__name__}: {exc}"))
            continue
        wanted = expected.read_bytes()
        if _equal(mapping, rendered, wanted):
            results.append(SampleResult(mapping.id, sample, True))
        else:
            results.append(SampleResult(mapping.id, sample, False,
                                        _diff(expected, wanted, rendered)))
    return results


def write_outbound_expected(root: Path, mapping_id: str | None = None) -> list[Path]:
    """Rewrite the expected output of every outbound mapping (or only ``mapping_id``) from its
    sample. A RenderError propagates: a sample that does not render is not written."""
    written = []
    for mapping in sorted(OutboundMappings.load(root), key=lambda m: m.id):
        if mapping_id is not None and mapping.id != mapping_id:
            continue
        _, expected = outbound_sample_paths(mapping)
        expected.write_bytes(render_sample(mapping))
        written.append(expected)
    return written
