"""Every shipped mapping reproduces the expected JSON from the sample beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.formats.mapping import run_samples, write_expected

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def test_every_shipped_mapping_matches_its_expected_output():
    """run_samples finds no difference for any mapping under mappings/."""
    results = run_samples(MAPPINGS)
    assert results and all(r.ok for r in results), "\n".join(r.diff for r in results)


def test_a_changed_expected_file_is_reported_with_a_diff(tmp_path):
    """When the expected JSON differs, the result is not ok and the diff shows the line."""
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    expected = root / "edifact" / "eancom-orders-d96a.expected.json"
    expected.write_text(expected.read_text().replace("PO-2024-0107", "PO-WRONG"))
    result = next(r for r in run_samples(root) if r.mapping_id == "eancom-orders-d96a")
    assert not result.ok and "PO-WRONG" in result.diff


def test_write_expected_regenerates_only_the_named_mapping(tmp_path):
    """write_expected(root, id) rewrites that mapping's expected file and no other."""
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, root)
    written = write_expected(root, "eancom-orders-d01b")
    assert [p.name for p in written] == ["eancom-orders-d01b.expected.json"]
    assert all(r.ok for r in run_samples(root))
