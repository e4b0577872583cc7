"""Canonical documents: the committed JSON Schemas are the models' own."""

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from gateway.core.canonical import CANONICAL_MODELS, Order, json_schema, json_schema_text
from gateway.core.ids import message_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc_type", sorted(CANONICAL_MODELS))
def test_committed_schema_matches_the_model(doc_type):
    """schemas/canonical/<type>.schema.json equals what the model generates (run 'edigw schemas write')."""
    path = ROOT / "schemas" / "canonical" / f"{doc_type}.schema.json"
    assert path.read_text() == json_schema_text(doc_type), (
        f"{path} drifted from the model; regenerate with 'edigw schemas write'")


def order(**kw) -> Order:
    base = dict(message_id="m", partner="acme", order_number="PO1",
                source=dict(format="edifact", standard="EANCOM", version="D96A", mapping="x"),
                lines=[dict(quantity=Decimal("2.50"), gtin="4000862141404")])
    base.update(kw)
    return Order.model_validate(base)


def test_order_json_validates_against_its_schema():
    """An order serialised for the ERP is valid against the committed schema."""
    data = json.loads(order().to_json_bytes())
    jsonschema.validate(data, json_schema("order"))
    assert data["schema"] == "edigw.order/1"
    assert data["lines"][0]["quantity"] == "2.50"  # decimals travel as strings, exactly


def test_order_refuses_unknown_fields_and_empty_number():
    """The model is strict: no unknown field, no empty order number."""
    with pytest.raises(ValidationError):
        order(colour="red")
    with pytest.raises(ValidationError):
        order(order_number="")


def test_message_id_is_stable_and_distinguishes_sources():
    """The same references give the same id; any different reference gives another."""
    a = message_id("acme", "order", "5412345000013", "IC1", "1", "PO1")
    assert a == message_id("acme", "order", "5412345000013", "IC1", "1", "PO1")
    assert a != message_id("acme", "order", "5412345000013", "IC2", "1", "PO1")
    assert a != message_id("beta", "order", "5412345000013", "IC1", "1", "PO1")
    assert len(a) == 32
