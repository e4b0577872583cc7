"""CSV mapping files load strictly: a mistake stops with the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.errors import MappingDefinitionError
from gateway.formats.csv.mapping import CsvMapping
from gateway.formats.mapping import MappingSet

REPO = Path(__file__).resolve().parents[2]

BASE = """\
id: t
format: csv
document: order
delimiter: ";"
fields:
  order_number: {column: Order}
  lines.quantity: {column: Qty}
"""


def load_text(tmp_path: Path, text: str, name: str = "t") -> MappingSet:
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return MappingSet.load(folder, strict=True)


def refused(tmp_path: Path, text: str) -> MappingDefinitionError:
    with pytest.raises(MappingDefinitionError) as err:
        load_text(tmp_path, text)
    assert err.value.file.endswith("t.yaml")
    return err.value


def test_the_shipped_csv_mappings_load_with_their_options():
    """Every mapping under mappings/csv compiles; the generic one reads what its doc says."""
    mappings = MappingSet.load(REPO / "mappings")
    csv = {m.id: m for m in mappings.of_format("csv")}
    assert {"csv-orders-generic", "csv-pricelist-articledata", "csv-orders-header-detail",
            "csv-orders-ediwin-d96a", "csv-orders-flat30"} <= set(csv)
    generic = csv["csv-orders-generic"]
    assert isinstance(generic, CsvMapping)
    assert (generic.delimiter, generic.decimal, generic.thousands, generic.encoding,
            generic.fallback_encoding, generic.header) == (";", ",", ".", "auto",
                                                           "windows-1252", True)
    assert generic.group_by is not None and generic.group_by.name == "order_number"
    assert generic.auto_match and generic.sample_suffix == ".csv"
    assert csv["csv-orders-header-detail"].records.document == frozenset({"H"})


@pytest.mark.parametrize(("addition", "words"), [
    ("colour: red\n", "unknown key 'colour'"),
    ("  order_colour: {column: X}\n", "'order_colour' is not a field of the canonical Order"),
    ("  lines.colour: {column: X}\n", "'lines.colour' is not a field of the canonical "
                                         "OrderLine"),
    ("  parties.buyer: {column: X}\n", "is an object: map its fields"),
    ("  message_id: {column: X}\n", "'message_id' is not a field"),
    ("  currency: {column: X, position: '2'}\n", "exactly one of column, position"),
    ("  currency: {column: X, colour: red}\n", "unknown key 'colour' in rule 'currency'"),
    ("  issue_date: {column: X, type: decimal}\n", "type 'decimal' does not fit"),
    ("  issue_date: {column: X, format: '%d.%m.%Q'}\n", "unknown directive(s) %Q"),
    ("  issue_date: {column: X, format: 'dd.mm.yyyy'}\n", "not a strftime format"),
    ("  lines.unit_price: {value: 'cheap'}\n", "'cheap' is not a number"),
    ("  lines.unit_price: {column: X, codes: {a: b}}\n", "'codes' translate text"),
    ("  lines.gtin: {column: X, invalid: maybe}\n", "invalid 'maybe'"),
    ("  currency: {column: X, record: H}\n", "'record' of 'currency' needs 'records'"),
    ("  currency: {source: clock}\n", "only 'filename'"),
    ("  lines.prices: {column: X}\n", "'lines.prices' is not a field"),
    ("encoding: klingon\n", "not an encoding"),
    ("fallback_encoding: utf-8\n", "one-byte encoding"),
    ("delimiter: ';;'\n", "key 'delimiter' appears twice"),
    ("decimal: ';'\n", "decimal ';'"),
    ("thousands: ','\ndecimal: ','\n", "thousands ','"),
    ("bad_rows: ignore\n", "bad_rows 'ignore'"),
    ("skip_rows: two\n", "not a whole number"),
    ("header: false\n", "'header' is false: use 'position'"),
    ("group_by: lines.quantity\n", "group_by 'lines.quantity'"),
    ("match: {}\n", "'match' is a mapping"),
    ("match: {filename: '*.csv', size: 3}\n", "unknown key 'size' in match"),
    ("match: {first_line: '(('}\n", "not a regular expression"),
    ("sender: {field: lines.quantity, scheme: gln}\n", "not a document field"),
    ("sender: {field: order_number, scheme: duns}\n", "sender scheme 'duns'"),
    ("records: {type: '1', document: H}\n", "records 'line'"),
])
def test_a_mistake_names_file_line_and_reason(tmp_path, addition, words):
    """Unknown keys, fields, types, formats and impossible combinations stop the load at
    the line of the offending key (a field rule at line 8, a top-level key at line 5)."""
    if addition.startswith("  "):
        text, line = BASE + addition, 8
    else:
        text, line = BASE.replace("fields:\n", addition + "fields:\n"), 5
    err = refused(tmp_path, text)
    assert words in err.reason, err.reason
    assert err.line == line, (err.line, err.reason)


def test_a_canonical_field_the_model_requires_must_be_mapped(tmp_path):
    """An order mapping without the line quantity is refused at 'fields'."""
    err = refused(tmp_path, BASE.replace("  lines.quantity: {column: Qty}\n", ""))
    assert "requires lines.quantity" in err.reason and err.line == 5


def test_a_price_entry_needs_a_type_and_an_amount(tmp_path):
    """Price.type and Price.amount are required: an entry that maps neither is refused."""
    text = """\
id: t
format: csv
document: price-list
fields:
  price_list_number: {source: filename}
  items.prices:
    - {amount: Net}
"""
    err = refused(tmp_path, text)
    assert "needs 'type'" in err.reason and err.line == 7


def test_only_orders_and_price_lists(tmp_path):
    """Invoices do not come as CSV here (XML, Factur-X and EDIFACT carry them)."""
    err = refused(tmp_path, BASE.replace("document: order", "document: invoice"))
    assert "order or price-list" in err.reason and err.line == 3


def test_records_and_group_by_exclude_each_other(tmp_path):
    """With record types, each document record starts a document: no group key."""
    text = BASE.replace("fields:", "header: true\nrecords: {type: '1', document: H, line: D}\n"
                                   "group_by: order_number\nfields:")
    assert "exclude each other" in refused(tmp_path, text).reason


def test_a_record_read_by_document_and_line_fields_is_refused(tmp_path):
    """A record belongs to the document or to a line, never both."""
    text = """\
id: t
format: csv
document: order
header: false
records: {type: '1', document: H, line: D}
fields:
  order_number: {position: '2'}
  currency: {record: X, position: '2'}
  lines.quantity: {record: X, position: '3'}
"""
    assert "read by both document and line fields" in refused(tmp_path, text).reason


def test_an_overlay_changes_one_option_and_one_field(tmp_path):
    """extends: a partner's overlay changes the delimiter and one alias list only."""
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "base.yaml").write_text(BASE.replace("id: t", "id: base")
                                      + "match: {columns: [Order, Qty]}\n", encoding="utf-8")
    (folder / "acme.yaml").write_text(
        "id: acme\nextends: base\ndelimiter: ','\nfields:\n"
        "  lines.quantity: {column: [Menge, Qty]}\n", encoding="utf-8")
    mappings = MappingSet.load(folder)
    acme, base = mappings.get("acme"), mappings.get("base")
    assert (acme.delimiter, base.delimiter) == (",", ";")
    assert acme.rule("lines.quantity").cell.names == ("Menge", "Qty")
    assert acme.rule("order_number").cell.names == ("Order",)
    # An overlay without its own match is chosen by id only (the partner's profile).
    assert base.auto_match and not acme.auto_match
