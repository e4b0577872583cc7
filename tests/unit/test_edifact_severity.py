"""Partner policy ``[edifact] validation``: which validation errors reject a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import EdifactPolicy, Partner
from gateway.core.ports import FailedMessage, MappedDocument
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet

REPO = Path(__file__).resolve().parents[2]


def _order(extra_dtm: str) -> bytes:
    body = ["UNH+1+ORDERS:D:96A:UN:EAN008", "BGM+220+PO-1+9", "DTM+137:20261127:102",
            extra_dtm, "NAD+BY+5412345000013::9", "LIN+1++4000862141404:EN", "QTY+21:5",
            "UNS+S"]
    segs = ["UNB+UNOC:3+5412345000013:14+5400000000003:14+261127:1200+IC1", *body,
            f"UNT+{len(body) + 1}+1", "UNZ+1+IC1"]
    return "'\n".join(segs).encode() + b"'"


@pytest.fixture(scope="module")
def reader() -> EdifactReader:
    return EdifactReader(MappingSet.load(REPO / "mappings"))


def _run(reader: EdifactReader, data: bytes, validation: str):
    parsed = reader.parse(data, filename="t.edi")
    partner = Partner(id="p", name="P", edifact=EdifactPolicy(validation=validation))
    (result,) = parsed.documents(partner=partner, transmission_id=None, filename="t.edi")
    return result, parsed.warnings


def test_bad_date_in_a_segment_the_mapping_does_not_read_is_a_warning(reader):
    """DTM+7 (effective date) is not mapped: its 12-digit date under format 102 warns."""
    result, warnings = _run(reader, _order("DTM+7:199708301200:102"), "mapped")
    assert isinstance(result, MappedDocument) and result.document.order_number == "PO-1"
    assert any("199708301200" in w and "not read by the mapping" in w for w in warnings)


def test_strict_policy_rejects_the_same_message(reader):
    result, _ = _run(reader, _order("DTM+7:199708301200:102"), "strict")
    assert isinstance(result, FailedMessage) and result.stage == "validate"
    assert "199708301200" in result.reason and "segment 5 (DTM)" in result.reason


def test_bad_date_in_a_mapped_segment_rejects_under_mapped(reader):
    """DTM+2 (requested delivery date) is read by the mapping: its bad date rejects."""
    result, _ = _run(reader, _order("DTM+2:20261332:102"), "mapped")
    assert isinstance(result, FailedMessage) and "20261332" in result.reason


def test_validation_off_checks_the_envelope_only(reader):
    result, warnings = _run(reader, _order("DTM+7:199708301200:102"), "off")
    assert isinstance(result, MappedDocument)
    assert not any("not read by the mapping" in w for w in warnings)
