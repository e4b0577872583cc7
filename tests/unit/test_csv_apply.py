"""CSV mappings applied to files: every option, and errors that name line and column."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.errors import MappingError, PayloadError
from gateway.formats.csv.apply import GroupResult, map_file
from gateway.formats.csv.mapping import CsvMapping
from gateway.formats.mapping import MappingSet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> MappingSet:
    return MappingSet.load(REPO / "mappings")


def load(tmp_path: Path, text: str) -> CsvMapping:
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    (folder / "m.yaml").write_text(text, encoding="utf-8")
    mapping = next(iter(MappingSet.load(folder)))
    assert isinstance(mapping, CsvMapping)
    return mapping


def run(mapping: CsvMapping, data: bytes | str, filename: str = "orders.csv"
        ) -> list[GroupResult]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return map_file(mapping, data, filename=filename, partner_id="acme", transmission_id=None)


def good(results: list[GroupResult]) -> list:
    assert all(r.error is None for r in results), [str(r.error) for r in results]
    return [r.document for r in results]


ORDER_YAML = """
id: t-orders
format: csv
document: order
delimiter: ";"
decimal: ","
thousands: "."
date_formats: ["%d.%m.%Y", "%d/%m/%Y", "%Y-%m-%d"]
group_by: order_number
fields:
  order_number: {column: ["Order No", "Bestellnummer", "N° commande"], required: true}
  issue_date: {column: ["Date", "Datum"]}
  lines.gtin: {column: GTIN}
  lines.quantity: {column: ["Qty", "Menge"]}
  lines.unit_price: {column: Price}
"""


# -- header names, aliases, positions -------------------------------------------------------


@pytest.mark.parametrize("header", [
    "Order No;Order Date;Buyer GLN;GTIN;Qty;Unit;Unit Price",
    "Bestellnummer;Bestelldatum;GLN Käufer;EAN;Menge;Einheit;Einzelpreis",
    "N° commande;Date commande;GLN acheteur;EAN;Quantité;Unité;Prix unitaire",
])
def test_english_german_and_french_headers_give_the_same_order(shipped, header):
    """csv-orders-generic finds each column by any of its aliases, whatever their case."""
    mapping = shipped.get("csv-orders-generic")
    text = (f"{header}\n" "A-1;05.03.2024;4012345000009;4000862141404;12;Stk;3,45\n"
            "A-1;05.03.2024;4012345000009;4006381333931;1.200;St;1,10\n")
    [order] = good(run(mapping, text.upper() if header.startswith("Order") else text))
    assert order.order_number == "A-1" and order.issue_date == dt.date(2024, 3, 5)
    assert order.parties.buyer.gln == "4012345000009"
    assert [(x.gtin, x.quantity, x.unit, x.unit_price) for x in order.lines] == [
        ("4000862141404", Decimal("12"), "PCE", Decimal("3.45")),
        ("4006381333931", Decimal("1200"), "PCE", Decimal("1.10"))]


def test_positions_read_a_file_without_header_after_skipped_rows(tmp_path):
    """header: false and skip_rows: the first rows (a title) are not data."""
    mapping = load(tmp_path, """
id: t-pos
format: csv
document: order
delimiter: ","
header: false
skip_rows: 2
date_formats: "%Y%m%d"
fields:
  order_number: {position: 1}
  issue_date: {position: 2}
  lines.gtin: {position: 3}
  lines.quantity: {position: 4}
""")
    [order] = good(run(mapping, "Export of 2024-03-05\nshop 7\nP1,20240305,4000862141404,2\n"
                                "P1,20240305,4006381333931,5\n"))
    assert order.order_number == "P1" and [x.quantity for x in order.lines] == [2, 5]


def test_a_header_without_a_required_column_fails_the_file_and_lists_the_columns(tmp_path):
    """No quantity column at all: every order would fail alike, so the file does."""
    mapping = load(tmp_path, ORDER_YAML)
    with pytest.raises(MappingError) as err:
        run(mapping, "Order No;GTIN;Amount\nA;4000862141404;3\n")
    assert err.value.position.line == 1
    assert 'no column for lines.quantity (looked for "Qty", "Menge")' in err.value.reason
    assert "Order No; GTIN; Amount" in err.value.reason


def test_a_file_with_only_a_header_has_no_data_rows(tmp_path):
    """An empty export is a file-level failure, not zero documents."""
    with pytest.raises(MappingError, match="no data rows"):
        run(load(tmp_path, ORDER_YAML), "Order No;Qty\n\n")


# -- numbers, dates, GS1 keys: errors name line and column ---------------------------------


def test_decimal_comma_and_thousands_separator(tmp_path):
    """'1.234,50' with decimal ',' and thousands '.' is 1234.50; spaces between thousands
    (no-break too) are dropped."""
    mapping = load(tmp_path, ORDER_YAML)
    [order] = good(run(mapping, "Order No;Qty;Price\nA;1.234,50;-0,5\nA;1\u00a0000;,75\n"))
    assert [(x.quantity, x.unit_price) for x in order.lines] == [
        (Decimal("1234.50"), Decimal("-0.5")), (Decimal("1000"), Decimal("0.75"))]


def test_a_bad_number_names_line_column_name_and_position(tmp_path):
    """The reason reads like the issue asks: line, column name, its position, the value."""
    mapping = load(tmp_path, ORDER_YAML)
    [result] = run(mapping, "Order No;GTIN;Qty\nA;4000862141404;2\nA;4006381333931;ten\n")
    error = result.error
    assert error.reason == "line 3, column \"Qty\" (3): 'ten' is not a number"
    p = error.position
    assert (p.line, p.column, p.element, error.field) == (3, 3, "Qty", "lines.quantity")


def test_a_point_where_a_comma_is_the_decimal_mark_is_not_guessed(tmp_path):
    """Without a declared thousands separator, '1.234' under decimal ',' is refused."""
    mapping = load(tmp_path, ORDER_YAML.replace('thousands: "."\n', ""))
    [result] = run(mapping, "Order No;Qty\nA;1.234\n")
    assert "'1.234' is not a number (decimal mark ',')" in result.error.reason


@pytest.mark.parametrize("text", ["05.03.2024", "05/03/2024", "2024-03-05"])
def test_every_listed_date_format_is_tried(tmp_path, text):
    """date_formats: the first format that reads the cell whole wins."""
    [order] = good(run(load(tmp_path, ORDER_YAML), f"Order No;Date;Qty\nA;{text};1\n"))
    assert order.issue_date == dt.date(2024, 3, 5)


def test_a_bad_date_names_its_formats(tmp_path):
    """31.02. is no date in any format: the reason lists the formats tried."""
    [result] = run(load(tmp_path, ORDER_YAML), "Order No;Date;Qty\nA;31.02.2024;1\n")
    assert result.error.reason == ("line 2, column \"Date\" (2): '31.02.2024' is not a date "
                                   "(formats %d.%m.%Y, %d/%m/%Y, %Y-%m-%d)")


def test_a_format_with_a_time_gives_a_datetime(tmp_path):
    """%H%M in the format: the canonical value keeps the time."""
    mapping = load(tmp_path, ORDER_YAML.replace(
        'issue_date: {column: ["Date", "Datum"]}',
        'issue_date: {column: Date, format: "%Y%m%d%H%M"}'))
    [order] = good(run(mapping, "Order No;Date;Qty\nA;202403051230;1\n"))
    assert order.issue_date == dt.datetime(2024, 3, 5, 12, 30)


def test_a_missing_required_value_names_the_field(tmp_path):
    """An empty quantity cell fails the line's order (quantity is required canonically)."""
    [result] = run(load(tmp_path, ORDER_YAML), "Order No;GTIN;Qty\nA;4000862141404;\n")
    assert result.error.reason == ('line 2, column "Qty" (3): no value for lines.quantity, '
                                   "which is required")


def test_a_gtin_with_a_wrong_check_digit_fails_its_row(tmp_path):
    """A typo in an article number would order the wrong article: the order fails."""
    [result] = run(load(tmp_path, ORDER_YAML), "Order No;GTIN;Qty\nA;4000862141405;1\n")
    assert result.error.reason == ('line 2, column "GTIN" (2): GTIN 4000862141405 has a wrong '
                                   "check digit")


def test_invalid_warn_leaves_a_bad_gtin_empty_with_a_warning(tmp_path):
    """invalid: warn keeps the order; the item code as sent stays for the ERP."""
    mapping = load(tmp_path, ORDER_YAML.replace(
        "lines.gtin: {column: GTIN}",
        "lines.gtin: {column: GTIN, invalid: warn}\n  lines.item_code: GTIN"))
    [result] = run(mapping, "Order No;GTIN;Qty\nA;4000862141405;1\n")
    line = result.document.lines[0]
    assert (line.gtin, line.item_code) == (None, "4000862141405")
    assert result.warnings == ['line 2, column "GTIN" (2): GTIN 4000862141405 has a wrong check '
                               "digit; lines.gtin left empty"]


# -- grouping --------------------------------------------------------------------------------


def test_rows_are_grouped_by_order_number_in_order_of_first_appearance(tmp_path):
    """Interleaved rows of two orders give two orders, each with its own lines."""
    text = "Order No;GTIN;Qty\nA;4000862141404;1\nB;4006381333931;2\nA;4012345999990;3\n"
    orders = good(run(load(tmp_path, ORDER_YAML), text))
    assert [(o.order_number, [x.quantity for x in o.lines]) for o in orders] == [
        ("A", [1, 3]), ("B", [2])]


def test_a_bad_row_fails_its_order_alone(tmp_path):
    """Order B's bad row fails B; orders A and C are mapped."""
    text = ("Order No;GTIN;Qty\nA;4000862141404;1\nB;4006381333931;zwei\n"
            "C;4012345999990;3\nB;4000862141404;4\n")
    results = run(load(tmp_path, ORDER_YAML), text)
    assert [(r.number, r.error is None) for r in results] == [("A", True), ("B", False),
                                                              ("C", True)]
    assert results[1].description == "order B (lines 3-5)"
    assert results[1].error.position.line == 3


def test_a_row_without_order_number_fails_alone(tmp_path):
    """The group key is empty: that row belongs to no order and fails by itself."""
    results = run(load(tmp_path, ORDER_YAML), "Order No;Qty\nA;1\n;2\nA;3\n")
    assert [r.error is None for r in results] == [True, False]
    assert results[1].error.reason == ('line 3, column "Order No" (1): no order number, so the '
                                       "row belongs to no order")
    assert len(results[0].document.lines) == 2


def test_a_header_field_that_changes_within_an_order_is_warned(tmp_path):
    """Two rows of order A with different dates: the first is kept, a warning says so."""
    [result] = run(load(tmp_path, ORDER_YAML),
                   "Order No;Date;Qty\nA;05.03.2024;1\nA;06.03.2024;2\n")
    assert result.document.issue_date == dt.date(2024, 3, 5)
    assert result.warnings == ["line 3, column \"Date\" (2): '06.03.2024' differs from the first "
                               "row of its order (line 2: '05.03.2024'); the first is kept"]


def test_without_group_by_the_file_is_one_document(tmp_path):
    """No group_by: every row is a line of one order (here a file per order)."""
    mapping = load(tmp_path, ORDER_YAML.replace("group_by: order_number\n", ""))
    [order] = good(run(mapping, "Order No;Qty\nA;1\nA;2\n"))
    assert len(order.lines) == 2


def test_skip_row_leaves_a_bad_row_out_with_a_warning(tmp_path):
    """bad_rows: skip-row maps the rest of the order and names the row left out."""
    mapping = load(tmp_path, ORDER_YAML + "bad_rows: skip-row\n")
    [result] = run(mapping, "Order No;Qty\nA;1\nA;x\nA;3\n")
    assert [x.quantity for x in result.document.lines] == [1, 3]
    assert result.warnings == ["line 3, column \"Qty\" (2): 'x' is not a number; row left out "
                               "(bad_rows: skip-row)"]


def test_skip_row_still_fails_an_order_whose_every_row_is_bad(tmp_path):
    """Nothing left to send: the order fails with the first row's reason."""
    mapping = load(tmp_path, ORDER_YAML + "bad_rows: skip-row\n")
    [result] = run(mapping, "Order No;Qty\nA;x\nA;y\n")
    assert "'x' is not a number" in result.error.reason


# -- record types (header and detail in one file) ------------------------------------------

RECORDS_YAML = """
id: t-hd
format: csv
document: order
delimiter: ";"
header: false
date_formats: "%Y%m%d"
records: {type: 1, document: H, line: D, ignore: [T]}
fields:
  order_number: {position: 2}
  issue_date: {position: 3}
  lines.gtin: {position: 2}
  lines.quantity: {position: 3}
"""


def test_header_and_detail_records_in_one_file(tmp_path):
    """An H record starts an order, the D records after it are its lines; T is ignored."""
    text = ("H;PO1;20240305\nD;4000862141404;2\nD;4006381333931;1\n"
            "H;PO2;20240306\nD;4012345999990;7\nT;5\n")
    orders = good(run(load(tmp_path, RECORDS_YAML), text))
    assert [(o.order_number, o.issue_date.day, [x.quantity for x in o.lines])
            for o in orders] == [("PO1", 5, [2, 1]), ("PO2", 6, [7])]


def test_detail_before_any_header_fails_alone_and_unknown_records_are_warned(tmp_path):
    """D rows before the first H belong to no order; an X record is named in a warning."""
    mapping = load(tmp_path, RECORDS_YAML)
    text = "D;4000862141404;2\nH;PO1;20240305\nX;what\nD;4006381333931;1\n"
    [orphan, order] = run(mapping, text)
    assert orphan.error.reason == ("line 1: record D comes before the first H record, so it "
                                   "belongs to no document")
    assert order.error is None and len(order.document.lines) == 1
    from gateway.formats.csv.apply import FileMapper, decode_for, read_table
    mapper = FileMapper(mapping, read_table(mapping, decode_for(mapping, text.encode())),
                        filename="x.csv")
    mapper.map(partner_id="acme", transmission_id=None)
    assert mapper.warnings == ["record type 'X' is not in mapping t-hd; 1 row(s) ignored (first "
                               "at line 3); list it under records.ignore"]


SEGMENTS_YAML = """
id: t-flat
format: csv
document: order
delimiter: "|"
quote: null
header: false
records: {type: 1, document: ORD, line: LIN}
fields:
  order_number: {position: 2}
  currency: {record: CUX, position: 2}
  lines.gtin: {position: 2}
  lines.quantity: {record: QTY, position: 3, where: {"2": "21"}}
  lines.unit_price: {record: PRI, position: 3, where: {"2": [AAA, NET]}}
"""


def test_segment_like_records_join_the_current_document_or_line(tmp_path):
    """CUX joins the order; QTY and PRI join the line opened by LIN; 'where' picks the
    record whose qualifier matches."""
    text = ("ORD|1\nCUX|EUR\nLIN|4000862141404\nQTY|59|1\nQTY|21|4\nPRI|AAB|2.5\nPRI|AAA|2\n"
            "LIN|4006381333931\nPRI|NET|9\nQTY|21|1\n")
    [order] = good(run(load(tmp_path, SEGMENTS_YAML), text))
    assert order.currency == "EUR"
    assert [(x.quantity, x.unit_price) for x in order.lines] == [(4, 2), (1, 9)]


def test_a_line_missing_its_qualified_record_names_what_was_looked_for(tmp_path):
    """No QTY with 21 in the second line: the reason names the record and the condition."""
    text = "ORD|1\nLIN|4000862141404\nQTY|21|4\nLIN|4006381333931\nQTY|59|1\n"
    [result] = run(load(tmp_path, SEGMENTS_YAML), text)
    assert result.error.reason == "lines 4-5: no QTY record with column 2 = 21 gives lines.quantity"
    assert result.error.position.line == 4


def test_a_line_record_before_any_line_fails_its_document(tmp_path):
    """A QTY before the first LIN of its order cannot be placed."""
    [result] = run(load(tmp_path, SEGMENTS_YAML), "ORD|1\nQTY|21|4\nLIN|4000862141404\n")
    assert result.error.reason == "line 2: record QTY comes before any LIN record of its document"


# -- price lists -----------------------------------------------------------------------------

PRICES_YAML = """
id: t-prices
format: csv
document: price-list
delimiter: ";"
decimal: ","
date_formats: "%d-%m-%Y"
fields:
  price_list_number: {source: filename}
  currency: {value: EUR}
  items.gtin: EAN
  items.description: Name
  items.prices:
    - {type: {value: AAA}, amount: Net}
    - {type: {value: AAE}, specification: {value: PRP}, amount: Promo, valid_to: Until}
"""


def test_a_price_list_has_one_item_per_row_and_one_price_per_filled_price_column(tmp_path):
    """Net and promotion prices come from their columns; an empty promotion is no price."""
    text = "EAN;Name;Net;Promo;Until\n4000862141404;Kaffee;3,45;2,99;31-03-2024\n" \
           "4006381333931;Tee;1,10;;\n"
    [result] = run(load(tmp_path, PRICES_YAML), text, filename="prices_2024-03.csv")
    plist = result.document
    assert plist.price_list_number == "prices_2024-03" and plist.currency == "EUR"
    assert [[(p.type, p.amount, p.valid_to) for p in i.prices] for i in plist.items] == [
        [("AAA", Decimal("3.45"), None), ("AAE", Decimal("2.99"), dt.date(2024, 3, 31))],
        [("AAA", Decimal("1.10"), None)]]
    assert plist.items[0].prices[1].specification == "PRP"


def test_a_bad_item_fails_the_whole_price_list_by_default(tmp_path):
    """A list without one article would leave its old price in the ERP unnoticed."""
    text = "EAN;Name;Net;Promo;Until\n4000862141404;Kaffee;3,45;;\n4006381333931;Tee;gratis;;\n"
    [result] = run(load(tmp_path, PRICES_YAML), text, filename="p.csv")
    assert result.document is None
    assert result.error.reason == "line 3, column \"Net\" (3): 'gratis' is not a number"


def test_a_price_list_may_skip_bad_items_when_the_mapping_says_so(tmp_path):
    """bad_rows: skip-row: the item is left out, the warning names line and column."""
    text = "EAN;Name;Net;Promo;Until\n4000862141404;Kaffee;3,45;;\n4006381333931;Tee;gratis;;\n"
    [result] = run(load(tmp_path, PRICES_YAML + "bad_rows: skip-row\n"), text, filename="p.csv")
    assert len(result.document.items) == 1
    assert result.warnings[0].startswith("line 3, column \"Net\" (3)")


# -- codes, constants, defaults -----------------------------------------------------------


def test_codes_translate_and_an_unknown_code_is_kept_with_one_warning(tmp_path):
    """codes map the partner's units to Recommendation 20; 'Sack' is kept, warned once."""
    mapping = load(tmp_path, ORDER_YAML + "  lines.unit: {column: Unit, codes: {Stk: PCE}}\n")
    [result] = run(mapping, "Order No;Qty;Unit\nA;1;Stk\nA;2;Sack\nA;3;Sack\n")
    assert [x.unit for x in result.document.lines] == ["PCE", "Sack", "Sack"]
    assert result.warnings == ["line 3, column \"Unit\" (3): lines.unit code 'Sack' is not in the "
                               "mapping's code list; kept as sent"]


def test_codes_with_invalid_fail_refuse_an_unknown_code(tmp_path):
    """A list of allowed codes with invalid: fail makes an unknown code a row error."""
    mapping = load(tmp_path, ORDER_YAML
                   + "  currency: {column: Cur, codes: [EUR, CHF], invalid: fail}\n")
    [result] = run(mapping, "Order No;Qty;Cur\nA;1;USD\n")
    assert result.error.reason == ("line 2, column \"Cur\" (3): 'USD' is not a code currency "
                                   "knows (CHF, EUR)")


def test_default_fills_an_empty_cell(tmp_path):
    """default: applies to an empty cell (or a column the file lacks), not to a filled one."""
    mapping = load(tmp_path, ORDER_YAML + "  currency: {column: Cur, default: EUR}\n")
    orders = good(run(mapping, "Order No;Qty;Cur\nA;1;\nB;1;CHF\n"))
    assert [o.currency for o in orders] == ["EUR", "CHF"]
    [order] = good(run(mapping, "Order No;Qty\nA;1\n"))
    assert order.currency == "EUR"


# -- identity --------------------------------------------------------------------------------


def test_message_id_is_stable_and_follows_the_content(tmp_path):
    """The same rows give the same id; a changed quantity or another partner a new one."""
    mapping = load(tmp_path, ORDER_YAML)
    text = "Order No;Date;Qty\nA;05.03.2024;1\n"
    first = run(mapping, text)[0].message_id
    assert run(mapping, text)[0].message_id == first
    assert run(mapping, text.replace(";1\n", ";2\n"))[0].message_id != first
    other = map_file(mapping, text.encode(), filename="x.csv", partner_id="beta",
                     transmission_id=None)[0].message_id
    assert other != first


def test_windows_1252_file_maps_with_its_accents_and_euro_sign(tmp_path):
    """encoding auto: a Windows-1252 export maps, its text intact."""
    mapping = load(tmp_path, ORDER_YAML + "  notes: Note\n")
    data = "Order No;Qty;Note\nA;1;Crème brûlée à 5 €\n".encode("cp1252")
    [order] = good(run(mapping, data))
    assert order.notes == ["Crème brûlée à 5 €"]


def test_a_declared_encoding_that_does_not_fit_is_a_payload_error(tmp_path):
    """encoding: utf-8 and a Windows-1252 byte: the file fails at that line."""
    mapping = load(tmp_path, ORDER_YAML + "encoding: utf-8\n")
    with pytest.raises(PayloadError) as err:
        run(mapping, "Order No;Qty;Note\nA;1;Café\n".encode("cp1252"))
    assert err.value.position.line == 2
