"""The text renderer: an order response as the SMS a partner reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.formats.render import SAMPLE_CONTEXT, OutboundMappings, RenderError

ROOT = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture(scope="module")
def sms() -> object:
    return OutboundMappings.load(ROOT).choose("order-response", "sms")


def _sample() -> dict:
    return json.loads((ROOT / "outbound/text/sms-order-response.sample.json").read_text())


def test_accepted_order_is_one_short_line(sms) -> None:
    doc = _sample() | {"status": "accepted", "lines": [], "delivery_date": None}
    text = sms.render(doc, SAMPLE_CONTEXT).seal("7").decode()
    assert text == "Commande PO-4711 acceptée."


def test_changed_lines_are_named_with_their_reason(sms) -> None:
    text = sms.render(_sample(), SAMPLE_CONTEXT).seal("").decode()
    assert text.startswith("Commande PO-4711 acceptée avec modifications, livraison le 12/03/2024")
    assert "Cordless drill 18 V 0 (Discontinued article)" in text
    assert "Steel screws" not in text  # accepted as ordered: not repeated


def test_missing_order_number_names_the_path(sms) -> None:
    doc = _sample()
    doc.pop("order_number")
    with pytest.raises(RenderError) as err:
        sms.render(doc, SAMPLE_CONTEXT)
    assert err.value.path == "order_number"


def test_too_long_is_refused_not_cut(sms) -> None:
    doc = _sample()
    doc["lines"] = [dict(doc["lines"][1], description="x" * 60) for _ in range(10)]
    with pytest.raises(RenderError, match="more than max_length 320"):
        sms.render(doc, SAMPLE_CONTEXT)
