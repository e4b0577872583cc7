"""Loading mapping files is strict: every mistake names the file and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping import MappingSet

REPO_MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

HEAD = """\
id: test-orders
document: order
match: {message: ORDERS, version: D, release: 96A, agency: UN}
groups:
  line: {trigger: LIN, contains: [QTY, PIA]}
fields:
  order_number: {path: "BGM/1004", required: true}
"""


def _load(tmp_path: Path, text: str, name: str = "m.yaml") -> MappingSet:
    (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return MappingSet.load(tmp_path, strict=True)


def _error(tmp_path: Path, text: str) -> MappingDefinitionError:
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    return info.value


def test_repository_mappings_all_load():
    """Every mapping shipped under mappings/ loads and checks."""
    ids = {m.id for m in MappingSet.load(REPO_MAPPINGS)}
    assert {"eancom-orders-d96a", "eancom-orders-d01b", "example-orders-d96a"} <= ids


def test_unknown_top_level_key_names_its_line(tmp_path):
    """A typo at the top level ('feilds') stops loading at that line."""
    error = _error(tmp_path, HEAD + "feilds: {}\n")
    assert "unknown key 'feilds'" in error.reason and error.line == 8
    assert error.file.endswith("m.yaml")


def test_unknown_canonical_field_names_its_line(tmp_path):
    """A field the canonical Order does not have is refused."""
    error = _error(tmp_path, HEAD + '  order_nr: "BGM/1004"\n')
    assert "'order_nr' is not a field" in error.reason and error.line == 8


def test_unknown_nested_party_field_is_refused(tmp_path):
    """Fields inside a group rule are checked against the nested model (Party)."""
    text = HEAD.replace("line:", "party: {trigger: NAD}\n  line:") + (
        '  parties.buyer:\n    group: "party[3035=BY]"\n    fields:\n      fax_number: "NAD/3164"\n')
    error = _error(tmp_path, text)
    assert "'fax_number' is not a field of the canonical Party" in error.reason and error.line == 12


def test_gateway_owned_fields_cannot_be_mapped(tmp_path):
    """message_id, partner and source are filled by the gateway, not by a mapping."""
    error = _error(tmp_path, HEAD + '  partner: "NAD/3039"\n')
    assert "'partner' is not a field" in error.reason


def test_malformed_path_names_its_line(tmp_path):
    """A path that is not SEG/ELEMENT is refused with the line of the field."""
    error = _error(tmp_path, HEAD + '  order_type: "bgm/1001"\n')
    assert "not a segment tag" in error.reason and error.line == 8


def test_data_element_not_in_segment_is_refused(tmp_path):
    """BGM has no data element 2380 in D96A; the directory says so at load time."""
    error = _error(tmp_path, HEAD + '  order_type: "BGM/2380"\n')
    assert "BGM has no data element 2380 in D96A" in error.reason and error.line == 8


def test_unknown_type_is_refused(tmp_path):
    """A type edigw does not know ('money') stops loading."""
    error = _error(tmp_path, HEAD + '  currency: {path: "CUX/C504/6345", type: money}\n')
    assert "unknown type 'money'" in error.reason and error.line == 8


def test_line_field_in_each_is_checked_against_order_line(tmp_path):
    """A field under 'each' must exist on OrderLine."""
    text = HEAD + "  lines:\n    group: line\n    each:\n      qty: \"QTY/6060\"\n"
    error = _error(tmp_path, text)
    assert "'qty' is not a field of the canonical OrderLine" in error.reason and error.line == 11


def test_duplicate_key_is_refused(tmp_path):
    """The same field twice is an error, not a silent override."""
    error = _error(tmp_path, HEAD + '  order_number: "BGM/1004"\n')
    assert "appears twice" in error.reason and error.line == 8


def test_extends_unknown_base_is_refused(tmp_path):
    """An overlay must extend a mapping that exists."""
    error = _error(tmp_path, "id: x\nextends: nothing-here\nfields: {}\n")
    assert "extends unknown mapping 'nothing-here'" in error.reason and error.line == 2


def test_overlay_error_points_at_the_overlay_file(tmp_path):
    """A bad field in an overlay is reported in the overlay, not in its base."""
    (tmp_path / "base.yaml").write_text(HEAD, encoding="utf-8")
    (tmp_path / "partner.yaml").write_text(
        "id: p\nextends: test-orders\nfields:\n  currency: \"CUX/9999\"\n", encoding="utf-8")
    with pytest.raises(MappingDefinitionError) as info:
        MappingSet.load(tmp_path, strict=True)
    assert info.value.file.endswith("partner.yaml") and info.value.line == 4
