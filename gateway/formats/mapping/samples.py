"""Run each mapping on the sample beside it and compare with the expected canonical JSON.

Beside ``<dir>/<id>.yaml`` live ``<id>.sample.edi`` (input) and ``<id>.expected.json`` (a
JSON list, one canonical document per message). ``edigw mappings test`` calls
``run_samples``; ``write_expected`` rewrites the expected files and is only for deliberate
use after a reviewed mapping change.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.errors import EdigwError
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping.apply import map_message
from gateway.formats.mapping.definition import Mapping
from gateway.formats.mapping.frontend import CompiledMapping
from gateway.formats.mapping.registry import MappingSet

SAMPLE_PARTNER = "sample"


@dataclass(frozen=True, slots=True)
class SampleResult:
    """The outcome of one mapping's sample: ``diff`` says what differs (or what failed)."""

    mapping_id: str
    sample: Path
    ok: bool
    diff: str = ""


def sample_paths(mapping: CompiledMapping) -> tuple[Path, Path]:
    """(sample input, expected JSON) beside the mapping file."""
    folder = Path(mapping.file).parent
    suffix = mapping.sample_suffix
    return folder / f"{mapping.id}.sample{suffix}", folder / f"{mapping.id}.expected.json"


def produce_edifact(mapping: Mapping, sample: Path) -> list[dict[str, Any]]:
    """The canonical JSON documents the EDIFACT ``mapping`` makes from the interchange
    ``sample`` (partner ``sample``); what the other formats' ``produce`` do for theirs."""
    documents = []
    for interchange in read_interchanges(sample.read_bytes(), filename=sample.name):
        # The reader keeps envelope errors on the interchange or the message rather than
        # raising them; a sample must be a correct interchange, so they fail it here.
        if interchange.error is not None:
            raise interchange.error
        for message in interchange.messages:
            if message.error is not None:
                raise message.error
            mapped = map_message(mapping, interchange, message, partner_id=SAMPLE_PARTNER,
                                 filename=sample.name, transmission_id=None)
            documents.append(json.loads(mapped.document.to_json_bytes()))  # type: ignore[attr-defined]
    return documents


def _text(documents: list[dict[str, Any]]) -> str:
    return json.dumps(documents, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run_samples(root: Path) -> list[SampleResult]:
    """Check every mapping under ``root`` against its sample; one result per mapping, and a
    failed one for each mapping file that does not load (its file, line and reason)."""
    results = []
    mapping_set = MappingSet.load(root)
    for problem in mapping_set.problems:
        results.append(SampleResult(problem.mapping_id or Path(problem.file).stem,
                                    Path(problem.file), False, f"does not load: {problem}"))
    for mapping in sorted(mapping_set, key=lambda m: m.id):
        sample, expected = sample_paths(mapping)
        if not sample.exists() or not expected.exists():
            missing = sample if not sample.exists() else expected
            results.append(SampleResult(mapping.id, sample, False, f"missing {missing}"))
            continue
        try:
            actual = _text(mapping.produce(sample))
        except EdigwError as exc:
            results.append(SampleResult(mapping.id, sample, False,
                                        f"{type(exc).__name__}: {exc}"))
            continue
        wanted = _text(json.loads(expected.read_text(encoding="utf-8")))
        diff = "".join(difflib.unified_diff(wanted.splitlines(True), actual.splitlines(True),
                                            str(expected), "actual"))
        results.append(SampleResult(mapping.id, sample, not diff, diff))
    return results


def write_expected(root: Path, mapping_id: str | None = None) -> list[Path]:
    """Rewrite the expected JSON of every mapping (or only ``mapping_id``) from its sample."""
    written = []
    for mapping in MappingSet.load(root):
        if mapping_id is not None and mapping.id != mapping_id:
            continue
        sample, expected = sample_paths(mapping)
        expected.write_text(_text(mapping.produce(sample)), encoding="utf-8")
        written.append(expected)
    return written
