"""Applying mappings: paths, groups, conversions, overlays, D96A against D01B."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.errors import EdifactSyntaxError, MappingError
from gateway.core.ids import message_id
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping import MappingSet, map_message
from gateway.formats.mapping.convert import ConversionError, to_date, to_decimal, to_gln, to_gtin

MAPPINGS = MappingSet.load(Path(__file__).resolve().parents[2] / "mappings")


def _order(body: str, *, version: str = "96A", association: str = "EAN008",
           una: str = "UNA:+.? '", mapping_id: str | None = None):
    segments = [s for s in body.strip().splitlines() if s]
    text = (f"{una}UNB+UNOC:3+5401234000012:14+4001234000015:14+240101:1200+ICR1'"
            f"UNH+M1+ORDERS:D:{version}:UN:{association}'" + "".join(segments) +
            f"UNT+{len(segments) + 2}+M1'UNZ+1+ICR1'")
    interchange = read_interchanges(text.encode("latin-1"))[0]
    message = interchange.messages[0]
    mapping = MAPPINGS.find(message, mapping_id=mapping_id)
    return map_message(mapping, interchange, message, partner_id="acme", filename="f.edi",
                       transmission_id="t-1")


BASIC = """
BGM+220+PO-1+9'
DTM+137:20240105:102'
NAD+BY+5401234000012::9++Buyer NV+Street 1+Gent++9000+BE'
RFF+VA:BE0123456749'
NAD+SU+4001234000015::9'
CUX+2:EUR:9'
LIN+1++4020000012342:EN'
PIA+1+S-1:SA+B-1:IN'
QTY+21:10:PCE'
DTM+2:20240201:102'
PRI+AAA:1.50'
LIN+2++4020000012359:EN'
QTY+21:2'
UNS+S'
"""


def test_basic_order_fields_and_source():
    """Header, parties, lines and the source block come out of a D96A EANCOM order."""
    mapped = _order(BASIC)
    order = mapped.document
    assert (order.order_number, order.function, order.currency) == ("PO-1", "original", "EUR")
    assert order.issue_date == dt.date(2024, 1, 5)
    assert order.parties.buyer.name == "Buyer NV" and order.parties.buyer.vat_id == "BE0123456749"
    assert order.parties.buyer.gln == "5401234000012" and order.parties.supplier.city is None
    assert [line.quantity for line in order.lines] == [Decimal("10"), Decimal("2")]
    assert order.lines[0].buyer_article == "B-1" and order.lines[0].supplier_article == "S-1"
    assert order.source.version == "D96A" and order.source.standard == "EANCOM"
    assert order.source.transmission_id == "t-1" and order.source.interchange_ref == "ICR1"
    assert order.message_id == message_id("acme", "order", "5401234000012", "ICR1", "M1", "PO-1")


def test_line_dtm_does_not_become_the_header_delivery_date():
    """A DTM inside a LIN group is seen by the line only, not by the header."""
    order = _order(BASIC).document
    assert order.requested_delivery_date is None
    assert order.lines[0].requested_delivery_date == dt.date(2024, 2, 1)


def test_bgm_1004_is_found_in_d96a_and_in_d01b_c106():
    """The shorthand BGM/1004 reads element 2 in D96A and C106 component 1 in D01B."""
    d96a = _order("BGM+220+PO-96+9'\nLIN+1'\nQTY+21:1'", version="96A")
    d01b = _order("BGM+220+PO-01:3+9'\nLIN+1'\nQTY+21:1'", version="01B", association="EAN010")
    assert d96a.document.order_number == "PO-96"
    assert d01b.document.order_number == "PO-01" and d01b.mapping_id == "eancom-orders-d01b"


def test_missing_order_number_names_field_and_position():
    """Without BGM the error names the message, the field and the BGM 1004 element."""
    with pytest.raises(MappingError) as info:
        _order("DTM+137:20240105:102'\nLIN+1'\nQTY+21:1'")
    error = info.value
    assert error.reason == "ORDERS message M1 has no order number (BGM 1004)"
    assert error.field == "order_number" and error.position.message_ref == "M1"


def test_line_without_quantity_fails_naming_the_line():
    """OrderLine.quantity is required; the error says which line."""
    with pytest.raises(MappingError) as info:
        _order("BGM+220+PO+9'\nLIN+1'\nQTY+21:1'\nLIN+2'\nUNS+S'")
    assert "lines 2" in info.value.reason and info.value.field == "quantity"


def test_decimal_comma_from_una_is_accepted():
    """QTY 1,5 under 'UNA:+,? ' becomes Decimal('1.5')."""
    order = _order("BGM+220+PO+9'\nLIN+1'\nQTY+21:1,5'", una="UNA:+,? '").document
    assert order.lines[0].quantity == Decimal("1.5")


def test_datetime_format_203_gives_a_datetime():
    """DTM format 203 (CCYYMMDDHHMM) becomes a datetime."""
    order = _order("BGM+220+PO+9'\nDTM+137:202401051430:203'\nLIN+1'\nQTY+21:1'").document
    assert order.issue_date == dt.datetime(2024, 1, 5, 14, 30)


def test_unknown_date_format_fails_naming_field_and_segment():
    """A 2379 code edigw does not read is a MappingError at the DTM."""
    with pytest.raises(MappingError) as info:
        _order("BGM+220+PO+9'\nDTM+137:2024:602'\nLIN+1'\nQTY+21:1'")
    assert info.value.field == "issue_date" and info.value.position.tag == "DTM"
    assert "602" in info.value.reason


def test_invalid_gtin_is_left_empty_with_a_warning():
    """A wrong GTIN check digit does not fail the order; it is dropped and warned about."""
    mapped = _order("BGM+220+PO+9'\nLIN+1++4020000012343:EN'\nQTY+21:1'")
    assert mapped.document.lines[0].gtin is None
    assert any("wrong check digit" in w for w in mapped.warnings)


def test_unknown_function_code_is_kept_with_a_warning():
    """A BGM 1225 code outside the mapping's list is passed on as sent."""
    mapped = _order("BGM+220+PO+99'\nLIN+1'\nQTY+21:1'")
    assert mapped.document.function == "99"
    assert any("'99'" in w for w in mapped.warnings)


def test_free_text_components_are_joined_and_all_kept():
    """Every FTX becomes one note; its C108 components are joined by a space."""
    order = _order("BGM+220+PO+9'\nFTX+AAI+++one:two'\nFTX+AAI+++three'\nLIN+1'\nQTY+21:1'")
    assert order.document.notes == ["one two", "three"]


def test_segment_unknown_to_the_directory_is_rejected():
    """A tag that is not in the message's directory (XYZ) fails with code 15."""
    with pytest.raises(EdifactSyntaxError) as info:
        _order("BGM+220+PO+9'\nXYZ+1'\nLIN+1'\nQTY+21:1'")
    assert info.value.code == "15" and info.value.position.tag == "XYZ"


def test_no_mapping_for_an_unclaimed_version():
    """A message no mapping claims fails with 'no mapping for …'."""
    with pytest.raises(MappingError, match="no mapping for ORDERS D:99A:UN:EAN008"):
        _order("BGM+220+PO+9'", version="99A")


def test_partner_overlay_overrides_and_removes_fields():
    """The example overlay reads BP article numbers, DTM 69 and drops the notes."""
    body = ("BGM+220+PO+9'\nDTM+69:20240301:102'\nFTX+AAI+++x'\nLIN+1'\n"
            "PIA+1+ART-9:BP'\nQTY+21:1'")
    order = _order(body, mapping_id="example-orders-d96a").document
    assert order.lines[0].buyer_article == "ART-9" and order.notes == []
    assert order.requested_delivery_date == dt.date(2024, 3, 1)
    assert order.source.mapping == "example-orders-d96a"


def test_overlay_is_never_chosen_by_match():
    """Without a mapping id, the base mapping (not the overlay) is chosen."""
    assert _order("BGM+220+PO+9'\nLIN+1'\nQTY+21:1'").mapping_id == "eancom-orders-d96a"


@pytest.mark.parametrize(("value", "code", "expected"), [
    ("20240105", "102", dt.date(2024, 1, 5)),
    ("240105", "101", dt.date(2024, 1, 5)),
    ("202401051430", "203", dt.datetime(2024, 1, 5, 14, 30)),
    ("20240105143059", "204", dt.datetime(2024, 1, 5, 14, 30, 59)),
    ("20240105-20240110", "718", dt.date(2024, 1, 5)),
])
def test_date_formats(value, code, expected):
    """Each supported 2379 format converts; a range gives its start."""
    assert to_date(value, code)[0] == expected


def test_ccyymmdd_reads_as_strptime_does():
    """The fast CCYYMMDD (102) path agrees with strptime, for good dates and bad ones."""
    for value in ("20240229", "20230229", "20241231", "20241301", "20240100", "00010101",
                  "00000101", "99991231", "20240532", "2024011", "202401011", " 20240105"):
        try:
            expected: object = dt.datetime.strptime(value.strip(), "%Y%m%d").date()
        except ValueError:
            expected = ConversionError
        try:
            got: object = to_date(value, "102")[0]
        except ConversionError:
            got = ConversionError
        assert got == expected, value


def test_conversions_reject_garbage():
    """Bad decimals and dates raise ConversionError; bad GLN/GTIN give a warning."""
    with pytest.raises(ConversionError):
        to_decimal("1.000,5")
    with pytest.raises(ConversionError):
        to_date("20241399", "102")
    assert to_gln("5401234000012") == ("5401234000012", None)
    assert to_gln("540123400001")[0] is None and to_gtin("12345670") == ("12345670", None)


@pytest.mark.parametrize("value", ["5", "007.50", "5.", ".5", "12345678901234567890.1", "0"])
def test_plain_decimals_read_as_the_pattern_reads_them(value):
    """The shortcut for unsigned digits gives the very Decimal (digits and exponent) of the
    general path, which strips the value and replaces a comma first."""
    from gateway.formats.mapping import convert

    convert.known_decimals.clear()
    fast = to_decimal(value)
    convert.known_decimals.clear()
    general = to_decimal(f" {value} ")
    assert fast == general and str(fast) == str(general)


def test_gs1_check_digit_matches_the_weighted_sum_by_hand():
    """The check digit (GS1 General Specifications 7.9) against a plain per-digit sum."""
    from gateway.formats.mapping.convert import gs1_check_digit_ok

    def by_hand(digits: str) -> bool:
        body = [int(d) for d in digits[:-1]]
        total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
        return (10 - total % 10) % 10 == int(digits[-1])

    for n in range(0, 10**7, 7919):
        for digits in (f"{n:08d}", f"540{n:010d}", f"1{n:013d}"):
            assert gs1_check_digit_ok(digits) == by_hand(digits), digits


def test_a_bad_quantity_seen_for_the_first_time_fails_naming_field_and_place():
    """A decimal not in the cache and not a number is reported at its segment and element."""
    with pytest.raises(MappingError) as info:
        _order("BGM+220+PO+9'\nLIN+1'\nQTY+21:1x5'")
    assert info.value.field == "quantity" and info.value.position.tag == "QTY"
    assert info.value.position.element_pos == 1 and info.value.position.component_pos == 2


def test_an_invalid_gtin_is_warned_about_each_time_it_comes():
    """A GTIN with a wrong check digit warns in every order, even once it is remembered."""
    for _ in range(2):
        mapped = _order("BGM+220+PO+9'\nLIN+1++4020000012343:EN'\nQTY+21:1'")
        assert mapped.document.lines[0].gtin is None
        assert any("wrong check digit" in w for w in mapped.warnings)
