"""Price lists: the canonical model, the EANCOM PRICAT mappings and the engine's sub-groups."""

from __future__ import annotations

import datetime as dt
import gc
import json
import shutil
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from gateway.core.canonical import PriceList, json_schema
from gateway.core.errors import MappingDefinitionError, MappingError
from gateway.core.ids import message_id
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping import MappingSet, map_message
from gateway.formats.mapping.apply import _Levels, partition, partition_nested
from gateway.formats.mapping.convert import to_date

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = MappingSet.load(REPO / "mappings")


def _pricat(body: str, *, version: str = "96A", association: str = "EAN005",
            mappings: MappingSet = MAPPINGS, mapping_id: str | None = None):
    segments = [s.strip() for s in body.strip().splitlines() if s.strip()]
    text = ("UNA:+.? 'UNB+UNOC:3+5412345000013:14+5401234000005:14+240301:0930+PC1'"
            f"UNH+M1+PRICAT:D:{version}:UN:{association}'" + "".join(segments) +
            f"UNT+{len(segments) + 2}+M1'UNZ+1+PC1'")
    interchange = read_interchanges(text.encode("latin-1"))[0]
    message = interchange.messages[0]
    mapping = mappings.find(message, mapping_id=mapping_id)
    return map_message(mapping, interchange, message, partner_id="acme", filename="p.edi")


HEAD = """
BGM+9+PL-1+9'
DTM+137:20240301:102'
NAD+SU+5412345000013::9'
CUX+2:EUR:8'
"""


# -- the canonical model --------------------------------------------------------------------

def _list(**kw) -> PriceList:
    base = dict(message_id="m", partner="acme", price_list_number="PL1",
                source=dict(format="edifact", standard="EANCOM", version="D96A", mapping="x"),
                items=[dict(gtin="5412345111115",
                            prices=[dict(type="AAA", amount=Decimal("1.50"))])])
    base.update(kw)
    return PriceList.model_validate(base)


def test_price_list_json_validates_against_its_schema():
    """A price list serialised for the ERP is valid against the committed schema."""
    data = json.loads(_list().to_json_bytes())
    jsonschema.validate(data, json_schema("price-list"))
    assert data["schema"] == "edigw.price-list/1"
    assert data["items"][0]["prices"][0]["amount"] == "1.50"
    assert "part_number" not in data and "part_count" not in data


def test_parts_are_optional_and_counted_from_one():
    """part_number/part_count are absent for a whole list and at least 1 when set."""
    part = _list(part_number=2, part_count=3)
    assert (part.part_number, part.part_count) == (2, 3)
    jsonschema.validate(json.loads(part.to_json_bytes()), json_schema("price-list"))
    with pytest.raises(ValidationError):
        _list(part_number=0)


def test_price_list_is_strict_and_names_its_business_number():
    """No unknown field, no empty number, no price without amount; the number is searchable."""
    assert _list().business_number == "PL1" and PriceList.business_field == "price_list_number"
    with pytest.raises(ValidationError):
        _list(colour="red")
    with pytest.raises(ValidationError):
        _list(price_list_number="")
    with pytest.raises(ValidationError):
        _list(items=[dict(prices=[dict(type="AAA")])])


# -- the D96A mapping -----------------------------------------------------------------------

def test_header_fields_validity_period_and_parties():
    """Number, function, dates (273 as a 718 range without hyphen), currency and parties."""
    mapped = _pricat(HEAD + """
    DTM+273:2024040120240930:718'
    NAD+BY+5401234000005::9++Buyer BV'
    LIN+1+1+5412345111115:EN'
    """)
    doc = mapped.document
    assert (doc.price_list_number, doc.price_list_type, doc.function) == ("PL-1", "9", "original")
    assert doc.issue_date == dt.date(2024, 3, 1)
    assert (doc.valid_from, doc.valid_to) == (dt.date(2024, 4, 1), dt.date(2024, 9, 30))
    assert doc.currency == "EUR" and doc.parties.supplier.gln == "5412345000013"
    assert doc.parties.buyer.name == "Buyer BV"
    assert doc.message_id == message_id("acme", "price-list", "5412345000013", "PC1", "M1",
                                        "PL-1")
    assert doc.source.mapping == "eancom-pricat-d96a" and doc.source.association == "EAN005"


def test_start_and_end_dates_194_206():
    """DTM 194 and 206 give the validity period when there is no 273."""
    doc = _pricat(HEAD + "DTM+194:20240401:102'\nDTM+206:20241231:102'\nLIN+1'").document
    assert (doc.valid_from, doc.valid_to) == (dt.date(2024, 4, 1), dt.date(2024, 12, 31))


def test_allowance_and_reference_dates_are_not_the_list_validity():
    """DTM 194/206 inside an ALC group (allowance period) and a reference's DTM stay there."""
    doc = _pricat(HEAD + """
    RFF+CT:C-1'
    DTM+194:20230101:102'
    ALC+A++++DI'
    DTM+194:20240501:102'
    DTM+206:20240515:102'
    LIN+1'
    """).document
    assert doc.valid_from is None and doc.valid_to is None


ITEMS = HEAD + """
PGI+2'
LIN+1+1+5412345111115:EN'
PIA+5+S-1:SA'
PIA+1+B-1:IN'
IMD+F++:::Apple juice'
QTY+53:12:PCE'
DTM+194:20240401:102'
PRI+AAA:1.15:CA'
PRI+AAB:1.40:CA::10:PCE'
DTM+194:20240501:102'
DTM+206:20240630:102'
CUX+2:USD:8'
RNG+4+PCE:10:99'
FTX+AAI+++item text after the prices'
LIN+2+2+5412345222224:EN'
"""


def test_items_with_action_codes_and_articles():
    """Each LIN is an item: action from 1229, GTIN checked, article codes, minimum quantity."""
    first, second = _pricat(ITEMS).document.items
    assert (first.line_number, first.action, second.action) == ("1", "add", "delete")
    assert first.gtin == first.item_code == "5412345111115" and first.item_code_type == "EN"
    assert (first.supplier_article, first.buyer_article) == ("S-1", "B-1")
    assert first.description == "Apple juice"
    assert (first.minimum_quantity, first.unit) == (Decimal("12"), "PCE")
    assert second.prices == [] and second.gtin == "5412345222224"


def test_each_price_group_keeps_its_own_basis_currency_range_and_dates():
    """Two PRI groups on one item: each its own basis quantity, CUX, RNG and DTM."""
    net, gross = _pricat(ITEMS).document.items[0].prices
    assert (net.type, net.type_name, net.amount, net.price_type) == (
        "AAA", "net", Decimal("1.15"), "CA")
    assert net.basis_quantity is None and net.valid_from is None and net.currency is None
    assert (gross.type_name, gross.amount, gross.basis_quantity, gross.basis_unit) == (
        "gross", Decimal("1.40"), Decimal("10"), "PCE")
    assert (gross.valid_from, gross.valid_to) == (dt.date(2024, 5, 1), dt.date(2024, 6, 30))
    assert gross.currency == "USD"
    assert (gross.quantity_from, gross.quantity_to) == (Decimal("10"), Decimal("99"))


def test_price_dates_are_not_the_item_dates_and_back():
    """The item's DTM 194 is the item's; the DTM after its PRI belongs to the price only."""
    item = _pricat(ITEMS).document.items[0]
    assert item.valid_from == dt.date(2024, 4, 1) and item.valid_to is None


def test_unknown_action_and_price_codes_are_kept_and_warned_once_per_message():
    """An unknown code is kept as sent; its repeats make one warning with a count."""
    mapped = _pricat(HEAD + """
    LIN+1+99+5412345111115:EN'
    PRI+NTP:5::SRP'
    LIN+2+1+5412345222224:EN'
    PRI+NTP:6::SRP'
    LIN+3+1+5412345333333:EN'
    PRI+NTP:7::SRP'
    """)
    items = mapped.document.items
    assert items[0].action == "99" and items[1].action == "add"
    assert [i.prices[0].type_name for i in items] == ["NTP", "NTP", "NTP"]
    action = [w for w in mapped.warnings if "action code '99'" in w]
    price = [w for w in mapped.warnings if "type_name code 'NTP'" in w]
    assert len(action) == 1 and "(seen" not in action[0] and "items 1" in action[0]
    assert len(price) == 1 and price[0].endswith("(seen 3 times in this message)")
    assert "items 1 (segment 8 LIN), prices 1 (segment 9 PRI)" in price[0]


def test_invalid_gtin_is_left_empty_but_the_item_code_is_kept():
    """A bad check digit empties gtin with a warning; item_code keeps what was sent."""
    mapped = _pricat(HEAD + "LIN+1+1+5412345111116:EN'\nPRI+AAA:1'")
    item = mapped.document.items[0]
    assert item.gtin is None and item.item_code == "5412345111116"
    assert any("wrong check digit" in w for w in mapped.warnings)


def test_price_without_amount_fails_naming_item_price_and_segment():
    """PRI without 5118: the message fails at map, pointing at the PRI segment."""
    with pytest.raises(MappingError) as info:
        _pricat(HEAD + "LIN+1+1+5412345111115:EN'\nPRI+AAA:1'\nLIN+2'\nPRI+AAB'")
    error = info.value
    assert "items 2 (segment 10 LIN), prices 1 (segment 11 PRI) has no amount" in error.reason
    assert error.field == "amount" and error.position.segment == 11
    assert error.position.tag == "PRI" and error.position.line is not None
    # C509 is PRI's first element, 5118 its second component (for a CONTRL UCD).
    assert (error.position.element_pos, error.position.component_pos) == (1, 2)


def test_bad_price_amount_fails_with_its_position():
    """A price that is not a number stops the message with field and segment."""
    with pytest.raises(MappingError) as info:
        _pricat(HEAD + "LIN+1'\nPRI+AAA:1.2.3'")
    assert "amount" in info.value.reason and info.value.position.segment == 9
    assert (info.value.position.element_pos, info.value.position.component_pos) == (1, 2)


def test_variable_quantity_item_takes_its_unit_from_mea():
    """Without a QTY unit, the unit of the net weight (MEA AAA) is the item's unit."""
    item = _pricat(HEAD + "LIN+1'\nMEA+PD+AAA+KGM:1'\nPRI+AAA:8.40:AE::1:KGM'").document.items[0]
    assert item.unit == "KGM" and item.prices[0].basis_unit == "KGM"


def test_product_group_segments_stay_out_of_the_header():
    """PGI's own DTM and PRI (group-wide terms) are not the list's dates."""
    doc = _pricat(HEAD + "PGI+3+7::91:DAIRY'\nDTM+194:20240101:102'\nLIN+1'").document
    assert doc.valid_from is None and len(doc.items) == 1


# -- the D01B mapping -----------------------------------------------------------------------

def test_d01b_price_list_number_srv_gtin_and_price_location():
    """D01B: BGM 1004 in C106, GTIN as SRV, EANCOM 2002 action codes, LOC in the price group."""
    mapped = _pricat("""
    BGM+9+PL-01B:2+5'
    DTM+137:20250601:102'
    DTM+7:20250701:102'
    LIN+1+96+4012345111118:SRV'
    PRI+AAA:1.95:CA'
    DTM+194:20251001:102'
    LOC+162+4001234000015::9'
    DTM+206:20251231:102'
    """, version="01B", association="EAN008")
    doc = mapped.document
    assert mapped.mapping_id == "eancom-pricat-d01b"
    assert (doc.price_list_number, doc.function) == ("PL-01B", "replace")
    assert doc.valid_from == dt.date(2025, 7, 1)
    item = doc.items[0]
    assert (item.action, item.gtin) == ("correction", "4012345111118")
    assert (item.prices[0].valid_from, item.prices[0].valid_to) == (
        dt.date(2025, 10, 1), dt.date(2025, 12, 31))
    assert item.valid_to is None


def test_big_price_list_maps_with_the_collector_resumed_after():
    """A message of thousands of items maps whole; the garbage collector runs again after,
    also when the message fails."""
    items = "".join(f"LIN+{i}+1+5412345111115:EN'\nPRI+AAA:{i}.50'\nDTM+194:20240101:102'\n"
                    for i in range(1, 2001))
    assert gc.isenabled()
    doc = _pricat(HEAD + items).document
    assert len(doc.items) == 2000 and doc.items[-1].prices[0].amount == Decimal("2000.50")
    assert gc.isenabled()
    with pytest.raises(MappingError):
        _pricat(HEAD + items + "LIN+2001'\nPRI+AAA:x'")
    assert gc.isenabled()


# -- the engine: sub-groups -----------------------------------------------------------------

def test_nested_partition_equals_flat_partition_without_sub_groups():
    """With no sub-groups, the nested splitter puts every segment where the flat one does."""
    orders = MAPPINGS.get("eancom-orders-d96a")
    sample = (REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
    for interchange in read_interchanges(sample):
        for message in interchange.messages:
            body = message.segments[1:-1]
            flat_header, flat = partition(body, orders.groups)
            header, nested = partition_nested(body, _Levels(orders.groups))
            assert header == flat_header
            assert {k: [(i.trigger, i.tagged, i.children) for i in v] for k, v in nested.items()} \
                == {k: [(i.trigger, i.tagged, None) for i in v] for k, v in flat.items()}


def test_segments_after_a_sub_group_go_back_to_their_group_or_the_header():
    """After PRI-DTM, an FTX the line contains is the line's; UNS-like strangers end both."""
    pricat = MAPPINGS.get("eancom-pricat-d96a")
    text = ("UNH+1+PRICAT:D:96A:UN:EAN005'BGM+9+X'LIN+1'PRI+AAA:1'DTM+194:20240101:102'"
            "FTX+AAI+++line'LIN+2'PRI+AAA:2'LIN+3'UNT+9+1'")
    message = read_interchanges(text.encode())[0].messages[0]
    header, instances = partition_nested(message.segments[1:-1], _Levels(pricat.groups))
    assert list(header) == ["BGM"]
    lines = instances["line"]
    assert [len(line.children.get("price", [])) for line in lines] == [1, 1, 0]
    assert "FTX" in lines[0].tagged and "DTM" not in lines[0].tagged
    assert "DTM" in lines[0].children["price"][0].tagged


def _load(tmp_path: Path, text: str) -> MappingSet:
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    return MappingSet.load(tmp_path, strict=True)


SUB = """\
id: t
document: price-list
match: {message: PRICAT, version: D, release: 96A, agency: UN}
groups:
  line:
    trigger: LIN
    contains: [PIA, DTM]
    groups:
      price: {trigger: PRI, contains: [DTM]}
fields:
  price_list_number: "BGM/1004"
  items:
    group: line
    each:
      line_number: "LIN/1082"
      prices:
        group: price
        each:
          type: "PRI/C509/5125"
          amount: {path: "PRI/C509/5118", type: decimal}
"""


def test_a_mapping_with_sub_groups_loads(tmp_path):
    """The minimal sub-group mapping loads; its nested rule is a group rule."""
    mapping = _load(tmp_path, SUB).get("t")
    assert mapping.groups["line"].groups["price"].trigger == "PRI"


def test_sub_group_with_the_trigger_of_its_enclosing_group_is_refused(tmp_path):
    """A sub-group starting at LIN inside LIN would swallow the next line: refused at load."""
    text = SUB.replace("price: {trigger: PRI", "price: {trigger: LIN")
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "already the trigger of an enclosing group" in info.value.reason
    assert info.value.line == 9


def test_two_groups_with_one_trigger_are_refused(tmp_path):
    """Sibling groups that start at the same segment are ambiguous: refused at load."""
    text = SUB.replace("      price: {trigger: PRI, contains: [DTM]}\n",
                       "      price: {trigger: PRI, contains: [DTM]}\n"
                       "      other: {trigger: PRI}\n")
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "both start at PRI" in info.value.reason and info.value.line == 10


def test_nested_rule_must_name_a_sub_group_of_its_group(tmp_path):
    """'prices: {group: line}' inside the line rule is not a sub-group of line."""
    text = SUB.replace("        group: price", "        group: nothing")
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "unknown group 'nothing'" in info.value.reason and info.value.line == 17


def test_sub_group_is_not_visible_at_the_top_level(tmp_path):
    """A top-level rule cannot read a sub-group directly."""
    text = SUB + "  parties.supplier: {group: price, fields: {name: \"NAD/C080\"}}\n"
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "unknown group 'price'" in info.value.reason and info.value.line == 21


def test_nested_field_is_checked_against_the_price_model(tmp_path):
    """A field under the nested 'each' must exist on Price."""
    text = SUB.replace("          type: \"PRI/C509/5125\"", "          kind: \"PRI/C509/5125\"")
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "'kind' is not a field of the canonical Price" in info.value.reason
    assert info.value.line == 19


def test_unknown_key_in_a_sub_group_names_its_line(tmp_path):
    """A typo inside a sub-group ('contain') stops loading at that line."""
    text = SUB.replace("price: {trigger: PRI, contains: [DTM]}",
                       "price: {trigger: PRI, contain: [DTM]}")
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, text)
    assert "unknown key 'contain'" in info.value.reason and info.value.line == 9


def test_gateway_fills_parts_not_the_mapping(tmp_path):
    """part_number is set when a list is split, never by a mapping."""
    with pytest.raises(MappingDefinitionError) as info:
        _load(tmp_path, SUB + "  part_number: \"BGM/1004\"\n")
    assert "'part_number' is not a field" in info.value.reason


def test_partner_overlay_merges_into_the_nested_price_rule(tmp_path):
    """An overlay adds one price field and a code; the base's other price rules stay."""
    shutil.copy(REPO / "mappings" / "edifact" / "eancom-pricat-d96a.yaml", tmp_path)
    (tmp_path / "partner.yaml").write_text("""\
id: sap-pricat-d96a
extends: eancom-pricat-d96a
fields:
  items:
    each:
      prices:
        each:
          type_name:
            path: "PRI/C509/5125"
            codes: {NTP: net, AAA: net}
          basis_quantity: null
""", encoding="utf-8")
    overlay = MappingSet.load(tmp_path)
    mapped = _pricat(HEAD + "LIN+1'\nPRI+NTP:5::SRP:10'", mappings=overlay,
                     mapping_id="sap-pricat-d96a")
    price = mapped.document.items[0].prices[0]
    assert (price.type, price.type_name, price.amount, price.specification) == (
        "NTP", "net", Decimal("5"), "SRP")
    assert price.basis_quantity is None and not mapped.warnings


# -- conversions ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "code", "end", "expected"), [
    ("20240401-20240930", "718", False, dt.date(2024, 4, 1)),
    ("20240401-20240930", "718", True, dt.date(2024, 9, 30)),
    ("2024040120240930", "718", False, dt.date(2024, 4, 1)),
    ("2024040120240930", "718", True, dt.date(2024, 9, 30)),
    ("202404010800202409301800", "719", True, dt.datetime(2024, 9, 30, 18, 0)),
    ("20240401", "102", True, dt.date(2024, 4, 1)),
])
def test_date_ranges_give_their_start_or_end(value, code, end, expected):
    """718/719 ranges, with or without the hyphen: the start, or the end for date_end."""
    assert to_date(value, code, end=end)[0] == expected
