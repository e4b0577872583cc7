"""What a document says, apart from where it came from: the content digest leaves out ids
and the source block, and changes with any business field; the message id combines the
reference-based id with it; the difference lists the changed fields, bounded."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from gateway.core.canonical import (
    CANONICAL_MODELS,
    Invoice,
    content_bytes,
    content_digest,
)
from gateway.core.conflicts import MAX_VALUE, compare
from gateway.core.ids import content_message_id, message_id

SOURCE = {"format": "edifact", "standard": "EANCOM", "version": "D96A",
          "mapping": "eancom-invoic-d96a", "sender_id": "4012345000009",
          "interchange_ref": "IC7", "message_ref": "M1", "filename": "a.edi",
          "transmission_id": "t1"}


def _invoice(**changes: Any) -> Invoice:
    data: dict[str, Any] = {
        "message_id": "0" * 32, "partner": "acme", "invoice_number": "INV-1",
        "issue_date": "2025-03-14", "source": dict(SOURCE),
        "lines": [{"quantity": Decimal("2.50"), "net_price": Decimal("4.10"),
                   "description": 'say "hi", then ,"source":{ and \\ '}],
        "parties": {"seller": {"name": "Seller SA"}},
        "notes": ["thanks"],
        "totals": {"payable": Decimal("32.99")},
    }
    data.update(changes)
    return Invoice.model_validate(data)


def _sha(doc: Invoice) -> str:
    return content_digest(doc.to_json_bytes())


def test_ids_and_source_do_not_change_the_digest():
    base = _sha(_invoice())
    assert _sha(_invoice(message_id="f" * 32)) == base
    for key, value in (("filename", "other.edi"), ("interchange_ref", "IC8"),
                       ("message_ref", "M9"), ("transmission_id", "t2"),
                       ("sender_id", "5400000000001"), ("mapping", "other")):
        assert _sha(_invoice(source={**SOURCE, key: value})) == base, key


@pytest.mark.parametrize("changes", [
    {"totals": {"payable": Decimal("4918.84")}},
    {"issue_date": "2025-03-15"},
    {"invoice_number": "INV-2"},
    {"notes": ["thanks", "corrected"]},
    {"parties": {"seller": {"name": "Seller SAS"}}},
    {"lines": [{"quantity": Decimal("2.5"), "net_price": Decimal("4.10")}]},
    {"currency": "EUR"},
])
def test_any_business_field_changes_the_digest(changes):
    assert _sha(_invoice(**changes)) != _sha(_invoice())


def test_content_bytes_is_the_document_without_message_id_value_and_source():
    data = json.loads(content_bytes(_invoice().to_json_bytes()))
    assert data["message_id"] == "" and "source" not in data
    assert data["lines"][0]["description"].startswith('say "hi"')  # quotes inside values


@pytest.mark.parametrize("name", sorted(CANONICAL_MODELS))
def test_every_canonical_model_has_message_id_first_after_schema_and_source_last(name):
    """What content_bytes relies on, for every canonical type."""
    fields = list(CANONICAL_MODELS[name].model_fields)
    assert fields[:2] == ["schema_", "message_id"] and fields[-1] == "source"


def test_content_message_id_is_stable_and_differs_with_content():
    ref = message_id("acme", "invoice", "4012345000009", "IC7", "M1", "INV-1")
    a, b = _sha(_invoice()), _sha(_invoice(totals={"payable": Decimal("4918.84")}))
    assert content_message_id(ref, a) == content_message_id(ref, a)
    assert content_message_id(ref, a) != content_message_id(ref, b)
    assert content_message_id(ref, a) != ref and len(content_message_id(ref, a)) == 32


def test_difference_lists_changed_leaves_with_paths():
    before = json.loads(_invoice().to_json_bytes())
    after = json.loads(_invoice(totals={"payable": Decimal("4918.84")}, message_id="1" * 32,
                                notes=["thanks", "corrected"],
                                source={**SOURCE, "filename": "b.edi"}).to_json_bytes())
    c = compare(before, after)
    assert [(d.path, d.before, d.after) for d in c.differences] == [
        ("notes[1]", None, "corrected"), ("totals.payable", "32.99", "4918.84")]
    assert c.total == 2
    assert c.summary() == "notes[1] (none) vs corrected; totals.payable 32.99 vs 4918.84"


def test_difference_is_bounded_in_count_and_size():
    before = {"lines": [{"quantity": str(n)} for n in range(200)], "notes": ["x"]}
    after = {"lines": [{"quantity": str(n + 1)} for n in range(200)], "notes": ["y" * 1000]}
    c = compare(before, after, limit=10)
    assert c.total == 201 and len(c.differences) == 10
    assert c.summary(2).endswith("… (201 differences)")
    long = compare({"notes": ["x"]}, {"notes": ["y" * 1000]}).differences[0]
    assert len(long.after) == MAX_VALUE and long.after.endswith("…")


def test_identical_content_has_no_difference():
    doc = json.loads(_invoice().to_json_bytes())
    assert compare(doc, {**doc, "message_id": "x"}).total == 0


def test_partner_on_conflict_is_hold_by_default_publish_when_said_and_checked(tmp_path):
    from gateway.config import ConfigError, load_partners

    (tmp_path / "acme.toml").write_text('id = "acme"\nname = "ACME"\n')
    (tmp_path / "beta.toml").write_text('id = "beta"\nname = "B"\non_conflict = "publish"\n')
    d = load_partners(tmp_path, env={})
    assert (d.get("acme").on_conflict, d.get("beta").on_conflict) == ("hold", "publish")
    (tmp_path / "beta.toml").write_text('id = "beta"\nname = "B"\non_conflict = "drop"\n')
    with pytest.raises(ConfigError) as e:
        load_partners(tmp_path, env={}, strict=True)
    assert e.value.key == "on_conflict"


def test_digest_is_the_sha256_of_the_content_bytes():
    import hashlib

    for payload in (_invoice().to_json_bytes(), b'{"schema":"x","partner":"p"}',
                    b'{"schema":"x","message_id":"abc","partner":"p","source":{"a":"b"}}'):
        assert content_digest(payload) == hashlib.sha256(content_bytes(payload)).hexdigest()
