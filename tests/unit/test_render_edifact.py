"""The EDIFACT renderer and the EANCOM outbound mappings: round trip through pydifact and
edigw's own inbound mappings, envelope flags, escaping, validation before seal."""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydifact.segmentcollection import Interchange as PydifactInterchange

from gateway.core.canonical import content_view
from gateway.core.errors import MappingDefinitionError
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping.apply import map_message
from gateway.formats.mapping.registry import MappingSet
from gateway.formats.render import (
    SAMPLE_CONTEXT,
    SAMPLE_CONTROL_REF,
    OutboundMappings,
    RenderError,
)
from gateway.formats.render.edifact import compile_edifact_renderer, escape
from gateway.formats.render.samples import run_outbound_samples

ROOT = Path(__file__).resolve().parents[2] / "mappings"
IDS = ["eancom-ordrsp-d96a", "eancom-ordrsp-d01b", "eancom-desadv-d96a", "eancom-desadv-d01b",
       "eancom-invoic-d96a", "eancom-invoic-d01b", "eancom-pricat-d96a", "eancom-pricat-d01b"]


@pytest.fixture(scope="module")
def outbound() -> OutboundMappings:
    return OutboundMappings.load(ROOT)


@pytest.fixture(scope="module")
def inbound() -> MappingSet:
    return MappingSet.load(ROOT)


def sample(mapping_id: str) -> dict[str, Any]:
    path = ROOT / "outbound" / "edifact" / f"{mapping_id}.sample.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def render(outbound: OutboundMappings, mapping_id: str, document: dict[str, Any],
           ref: str = SAMPLE_CONTROL_REF, **ctx: Any) -> bytes:
    context = dataclasses.replace(SAMPLE_CONTEXT, **ctx)
    return outbound.mappings[mapping_id].render(document, context).seal(ref)


def pydifact_segments(data: bytes) -> list[Any]:
    """The segments pydifact reads (it has no service directory to check UNB/UNH against)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(PydifactInterchange.from_str(data.decode("latin-1")).segments)


def read_back(inbound: MappingSet, data: bytes) -> dict[str, Any]:
    """The canonical document edigw's inbound mapping makes of the rendered interchange."""
    [interchange] = read_interchanges(data)
    assert interchange.error is None
    [message] = interchange.messages
    assert message.error is None
    mapped = map_message(inbound.find(message), interchange, message, partner_id="sample",
                         filename=None, transmission_id=None)
    document: dict[str, Any] = json.loads(mapped.document.to_json_bytes())  # type: ignore[attr-defined]
    return document


def test_the_eight_eancom_mappings_are_loaded_with_their_aliases(outbound):
    for mapping_id in IDS:
        m = outbound.mappings[mapping_id]
        assert m.syntax == "edifact" and "edifact" in m.aliases
        assert m.uses_control_ref and m.suffix == ".edi"
    assert outbound.choose("invoice", "eancom-invoic-d01b").id == "eancom-invoic-d01b"


@pytest.mark.parametrize("mapping_id", ["eancom-invoic-d96a", "eancom-invoic-d01b"])
def test_invoice_round_trip_through_pydifact_and_the_inbound_mapping(outbound, inbound,
                                                                     mapping_id):
    doc = sample(mapping_id)
    data = render(outbound, mapping_id, doc)
    segments = pydifact_segments(data)
    bgm = next(s for s in segments if s.tag == "BGM")
    assert bgm.elements[1] == doc["invoice_number"] == "INV-2024-0815"
    assert sum(1 for s in segments if s.tag == "LIN") == len(doc["lines"]) == 3
    moa = {s.elements[0][0]: s.elements[0][1] for s in segments if s.tag == "MOA"}
    assert moa["77"] == doc["totals"]["tax_inclusive"] == "304.52"
    assert moa["9"] == doc["totals"]["payable"]

    back = read_back(inbound, data)
    assert back["invoice_number"] == doc["invoice_number"]
    assert back["totals"] == doc["totals"]
    assert len(back["lines"]) == len(doc["lines"])
    assert [(li["gtin"], li["quantity"], li["net_price"]) for li in back["lines"]] == \
        [(li["gtin"], li["quantity"], li["net_price"]) for li in doc["lines"]]
    # Everything the sample says comes back: parties, payment, VAT, charges, notes.
    assert content_view(back) == content_view(doc)


@pytest.mark.parametrize("mapping_id", ["eancom-pricat-d96a", "eancom-pricat-d01b"])
def test_price_list_round_trip_through_pydifact_and_the_inbound_mapping(outbound, inbound,
                                                                        mapping_id):
    doc = sample(mapping_id)
    data = render(outbound, mapping_id, doc)
    segments = pydifact_segments(data)
    assert [s.elements[0][1] for s in segments if s.tag == "PRI"] == \
        [p["amount"] for item in doc["items"] for p in item["prices"]]

    back = read_back(inbound, data)
    assert back["price_list_number"] == doc["price_list_number"]
    assert [i["gtin"] for i in back["items"]] == [i["gtin"] for i in doc["items"]]
    assert [i.get("action") for i in back["items"]] == [i.get("action") for i in doc["items"]]
    assert [i["prices"] for i in back["items"]] == [i["prices"] for i in doc["items"]]
    assert content_view(back) == content_view(doc)


def test_price_list_actions_become_lin_1229_codes(outbound):
    doc = sample("eancom-pricat-d01b")
    actions = ["add", "delete", "change", "no_change"]
    for item, action in zip(doc["items"], actions, strict=False):
        item["action"] = action
    text = render(outbound, "eancom-pricat-d01b", doc).decode("latin-1")
    lins = [line for line in text.splitlines() if line.startswith("LIN+")]
    assert [lin.split("+")[2] for lin in lins] == ["1", "2", "3"]


def test_credit_note_keeps_type_381(outbound, inbound):
    doc = sample("eancom-invoic-d96a")
    doc["invoice_type"] = "381"
    doc["preceding_invoice_reference"] = "INV-2024-0700"
    data = render(outbound, "eancom-invoic-d96a", doc)
    assert b"BGM+381+INV-2024-0815+9'" in data
    back = read_back(inbound, data)
    assert back["invoice_type"] == "381"
    assert back["preceding_invoice_reference"] == "INV-2024-0700"


def test_order_response_status_codes(outbound):
    doc = sample("eancom-ordrsp-d96a")
    for status, code in (("accepted", "29"), ("accepted-with-changes", "4"), ("rejected", "27")):
        doc["status"] = status
        data = render(outbound, "eancom-ordrsp-d96a", doc)
        assert f"BGM+231+OR-2024-0311+{code}'".encode() in data
    assert b"LIN+3+7+4012345678925:EN'" in data


def test_despatch_advice_packages_are_nested_cps_groups(outbound):
    text = render(outbound, "eancom-desadv-d01b", sample("eancom-desadv-d01b")).decode()
    tags = [line.split("+")[0] for line in text.splitlines()]
    assert [line for line in text.splitlines() if line.startswith("CPS")] == \
        ["CPS+1'", "CPS+2+1'", "CPS+3+1'"]
    assert "GIN+BJ+340123450000000016'" in text
    assert tags.count("LIN") == 4


def test_missing_required_field_names_the_canonical_path(outbound):
    doc = sample("eancom-invoic-d96a")
    del doc["lines"][2]["quantity"]
    with pytest.raises(RenderError) as caught:
        render(outbound, "eancom-invoic-d96a", doc)
    assert caught.value.path == "lines[2].quantity"
    assert caught.value.mapping == "eancom-invoic-d96a"
    assert "lines[2].quantity" in str(caught.value)

    doc = sample("eancom-pricat-d01b")
    del doc["items"][1]["prices"][0]["amount"]
    with pytest.raises(RenderError) as caught:
        render(outbound, "eancom-pricat-d01b", doc)
    assert caught.value.path == "items[1].prices[0].amount"


def test_a_bad_value_is_a_render_error_naming_its_path(outbound):
    doc = sample("eancom-invoic-d96a")
    doc["issue_date"] = "15.03.2024"
    with pytest.raises(RenderError) as caught:
        render(outbound, "eancom-invoic-d96a", doc)
    assert caught.value.path == "issue_date"
    doc = sample("eancom-invoic-d96a")
    doc["totals"]["payable"] = "lots"
    with pytest.raises(RenderError, match="not a number"):
        render(outbound, "eancom-invoic-d96a", doc)


def test_unb_test_indicator_and_acknowledgement_request(outbound):
    doc = sample("eancom-ordrsp-d01b")
    plain = render(outbound, "eancom-ordrsp-d01b", doc, "42")
    assert b"UNB+UNOC:3+5412345000013:14+5400000000003:14+260102:0304+42'" in plain
    both = render(outbound, "eancom-ordrsp-d01b", doc, "42", test=True, ack_requested=True)
    assert b"UNB+UNOC:3+5412345000013:14+5400000000003:14+260102:0304+42++++1++1'" in both
    [interchange] = read_interchanges(both)
    assert interchange.test_indicator == "1" and interchange.ack_requested
    only_test = render(outbound, "eancom-ordrsp-d01b", doc, "42", test=True)
    assert b"+42++++++1'" in only_test
    [interchange] = read_interchanges(only_test)
    assert interchange.test_indicator == "1" and not interchange.ack_requested


def test_free_text_service_characters_are_released(outbound, inbound):
    doc = sample("eancom-invoic-d96a")
    note = "Terms? 2% + 3:1 it's *fine*"
    doc["notes"] = [note]
    data = render(outbound, "eancom-invoic-d96a", doc)
    assert b"FTX+AAI+++Terms?? 2% ?+ 3?:1 it?'s *fine*'" in data
    segments = pydifact_segments(data)
    ftx = next(s for s in segments if s.tag == "FTX")
    assert ftx.elements[3] == note
    assert read_back(inbound, data)["notes"] == [note]
    assert escape("a*b", "4") == "a?*b" and escape("a*b") == "a*b"


def test_validation_catches_an_overlong_element(outbound):
    doc = sample("eancom-invoic-d96a")
    doc["lines"][1]["gtin"] = "4" * 40
    with pytest.raises(RenderError) as caught:
        render(outbound, "eancom-invoic-d96a", doc)
    error = caught.value
    assert error.mapping == "eancom-invoic-d96a"
    assert error.path == "lines[1]"
    assert "LIN" in error.reason and "7140" in error.reason


def test_seal_never_fails_and_puts_the_reference_in_unb_and_unz(outbound):
    body = outbound.mappings["eancom-pricat-d96a"].render(sample("eancom-pricat-d96a"),
                                                          SAMPLE_CONTEXT)
    assert body.message_count == 1 and body.content_type == "application/EDIFACT"
    for ref in ("1", "00000000000042", "R+1:?'", "réf"):
        data = body.seal(ref)
        [interchange] = read_interchanges(data)
        assert interchange.error is None, ref
        if ref.isascii():
            assert interchange.control_ref == ref
        assert data.rstrip().endswith(f"UNZ+1+{escape(ref)}'".encode("latin-1", "replace")) \
            or not ref.isascii()
    assert body.seal("7") == body.seal("7")


def test_render_does_not_touch_the_document(outbound):
    doc = sample("eancom-desadv-d96a")
    before = copy.deepcopy(doc)
    render(outbound, "eancom-desadv-d96a", doc)
    assert doc == before


def test_committed_outbound_samples_match_their_expected_output():
    results = {r.mapping_id: r for r in run_outbound_samples(ROOT)}
    for mapping_id in IDS:
        assert results[mapping_id].ok, results[mapping_id].diff


def test_a_changed_rendering_is_reported_with_a_diff(tmp_path):
    folder = tmp_path / "outbound" / "edifact"
    folder.mkdir(parents=True)
    source = ROOT / "outbound" / "edifact"
    for name in ("eancom-ordrsp-d96a.yaml", "eancom-ordrsp-d96a.sample.json",
                 "eancom-ordrsp-d96a.expected.edi"):
        (folder / name).write_bytes((source / name).read_bytes())
    doc = json.loads((folder / "eancom-ordrsp-d96a.sample.json").read_text())
    doc["response_number"] = "OR-CHANGED"
    (folder / "eancom-ordrsp-d96a.sample.json").write_text(json.dumps(doc))
    [result] = run_outbound_samples(tmp_path)
    assert not result.ok
    assert "-BGM+231+OR-2024-0311+4'" in result.diff
    assert "+BGM+231+OR-CHANGED+4'" in result.diff


MINIMAL = {"id": "t", "document": "invoice", "syntax": "edifact",
           "message": {"type": "INVOIC", "version": "D", "release": "96A", "agency": "UN",
                       "association": "EAN008"}}


@pytest.mark.parametrize(("segments", "reason"), [
    (["BGM+{invoice_number|nonsense}"], "unknown filter"),
    (["BGM+{invoice_number|codes nope}"], "no code table"),
    (["BGM+{invoice number}"], "bad path"),
    (["UNH+1"], "written by the renderer"),
    (["bgm+1"], "tag"),
    ([{"each": "lines"}], "non-empty list"),
    (["DTM+137:{issue_date|date 999}:102"], "date format"),
])
def test_bad_mapping_definitions_are_refused(segments, reason):
    with pytest.raises(MappingDefinitionError, match=reason):
        compile_edifact_renderer({**MINIMAL, "segments": segments}, "t.yaml", {})


def test_omission_rules():
    mapping = compile_edifact_renderer({**MINIMAL, "segments": [
        "BGM+380+{invoice_number}+9",
        "DTM+137:20240101:102",
        "NAD+SU+{gln}::9++{name}",
        "DTM+35:{delivery_date|date 102}:102",
        {"segment": "CTA+IC+:{contact}", "when": "name", "keep": True},
        "UNS+S",
        "MOA+77:{total|decimal}",
    ]}, "t.yaml", {})
    doc = {"invoice_number": "X1", "name": "Seller", "total": "+10.50"}
    text = mapping.render(doc, SAMPLE_CONTEXT).seal("1").decode()
    assert "NAD+SU+++Seller'" in text
    assert "DTM+35" not in text
    assert "CTA+IC'" in text
    assert "MOA+77:10.50'" in text


def test_a_number_with_a_huge_exponent_is_refused_not_written_out(outbound):
    doc = sample("eancom-invoic-d96a")
    doc["lines"][0]["quantity"] = "1E999999999"
    with pytest.raises(RenderError, match="35 digits") as caught:
        render(outbound, "eancom-invoic-d96a", doc)
    assert caught.value.path == "lines[0].quantity"


def test_syntax_4_releases_the_repetition_separator():
    mapping = compile_edifact_renderer({
        **MINIMAL, "interchange": {"version": "4", "charset": "UNOC", "newline": False},
        "segments": ["BGM+380+{invoice_number|required}+9", "DTM+137:20240101:102",
                     "FTX+AAI+++{note}", "UNS+S", "MOA+77:{total|decimals 2}"]},
        "t.yaml", {})
    data = mapping.render({"invoice_number": "A*1", "note": "x*y", "total": "3.456"},
                          SAMPLE_CONTEXT).seal("9")
    assert data.startswith(b"UNA:+.?*'UNB+UNOC:4+5412345000013:14+5400000000003:14+"
                           b"20260102:0304+9'UNH+1+INVOIC:D:96A:UN:EAN008'BGM+380+A?*1+9'")
    assert b"FTX+AAI+++x?*y'" in data and b"MOA+77:3.46'" in data
    [interchange] = read_interchanges(data)
    assert interchange.messages[0].segments[1].elements[1] == ["A*1"]


def test_a_mapping_with_sample_equal_decides_the_comparison(outbound):
    from gateway.formats.render.samples import _equal

    class Pdf:
        def sample_equal(self, rendered: bytes, expected: bytes) -> bool:
            return rendered[:4] == expected[:4]

    assert _equal(Pdf(), b"%PDF-1.7 made now", b"%PDF-1.7 made then")  # type: ignore[arg-type]
    edi = outbound.mappings["eancom-ordrsp-d96a"]
    assert not _equal(edi, b"UNA:+.? 'x", b"UNA:+.? 'y")


@pytest.mark.parametrize("mapping_id", IDS)
def test_each_sample_is_a_valid_canonical_document(outbound, mapping_id):
    from gateway.core.canonical import CANONICAL_MODELS

    model = CANONICAL_MODELS[outbound.mappings[mapping_id].document]
    model.model_validate(sample(mapping_id))
