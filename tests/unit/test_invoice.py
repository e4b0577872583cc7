"""Canonical invoices: the model, and the INVOIC mappings on small synthetic messages.

The INVOIC mappings cut a message with one-level groups (see the comments at the top of
``mappings/edifact/eancom-invoic-d96a.yaml``); these tests pin down what that cut must get
right: which TAX opens a VAT breakdown entry, which ALC is a document allowance, which MOA is
a total, and that a line's allowance does not lend its TAX to the line.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from gateway.core.canonical import CANONICAL_MODELS, Invoice, json_schema
from gateway.core.errors import MappingError
from gateway.core.ids import message_id
from gateway.formats.edifact import read_interchanges
from gateway.formats.edifact.reader import DOCUMENT_TYPES
from gateway.formats.mapping import MappingSet, map_message

MAPPINGS = MappingSet.load(Path(__file__).resolve().parents[2] / "mappings")


def _invoice(body: str, *, version: str = "96A", association: str = "EAN008",
             una: str = "UNA:+.? '"):
    """Map one INVOIC message with ``body`` (segments between UNH and UNT, one a line)."""
    segments = [s for s in body.strip().splitlines() if s]
    unh = f"INVOIC:D:{version}:UN" + (f":{association}" if association else "")
    text = (f"{una}UNB+UNOC:3+4012345000009:14+4000001000005:14+240315:1030+IC7'"
            f"UNH+M1+{unh}'" + "".join(segments) + f"UNT+{len(segments) + 2}+M1'UNZ+1+IC7'")
    interchange = read_interchanges(text.encode("latin-1"))[0]
    message = interchange.messages[0]
    return map_message(MAPPINGS.find(message), interchange, message, partner_id="acme",
                       filename="inv.edi")


EANCOM = """
BGM+380+INV-1+9'
DTM+137:20240315:102'
NAD+SU+4012345000009::9++Seller GmbH+Weg 1+Hamburg++20095+DE'
FII+RB+DE02120300000000202051:Seller GmbH+BYLADEM1001:25:5'
RFF+VA:DE123456789'
NAD+BY+4000001000005::9'
TAX+7+VAT+++:::19+S'
CUX+2:EUR:4'
PAT+1++5:3:D:30'
DTM+13:20240414:102'
PAI+::42'
ALC+A++++DI'
MOA+8:10.00'
TAX+7+VAT+++:::19+S'
LIN+1++4012345678901:EN'
QTY+47:10:PCE'
MOA+203:100.00'
PRI+AAA:10.00'
TAX+7+VAT+++:::19+S'
ALC+A++++DI'
MOA+204:5.00'
TAX+7+VAT+++:::7+S'
ALC+C++++PC'
MOA+23:2.50'
LIN+2++4012345678918:EN'
QTY+12:3'
MOA+203:30.00'
UNS+S'
MOA+79:130.00'
MOA+77:142.80'
MOA+9:142.80'
TAX+7+VAT+++:::19+S'
MOA+125:120.00'
MOA+124:22.80'
ALC+A++++DI'
MOA+131:10.00'
"""


def _minimal_invoice(**changes: object) -> Invoice:
    data: dict[str, object] = {
        "message_id": "m", "partner": "acme", "invoice_number": "INV-1",
        "source": {"format": "edifact", "standard": "EANCOM", "version": "D96A",
                   "mapping": "eancom-invoic-d96a"},
        "lines": [{"quantity": Decimal("2.50"), "net_price": Decimal("4.10")}],
        "totals": {"payable": Decimal("10.25")},
    }
    data.update(changes)
    return Invoice.model_validate(data)


def test_invoice_json_validates_against_its_schema():
    """An invoice as the ERP receives it is valid against the committed schema, decimals as strings."""
    data = json.loads(_minimal_invoice().to_json_bytes())
    jsonschema.validate(data, json_schema("invoice"))
    assert data["schema"] == "edigw.invoice/1"
    assert data["lines"][0]["quantity"] == "2.50" and data["totals"]["payable"] == "10.25"
    assert CANONICAL_MODELS["invoice"] is Invoice and DOCUMENT_TYPES["INVOIC"] == "invoice"


def test_invoice_refuses_unknown_fields_and_an_empty_number():
    """The model is strict, and the invoice number (BT-1) is its business number."""
    assert _minimal_invoice().business_number == "INV-1"
    assert Invoice.business_field == "invoice_number"
    with pytest.raises(ValidationError):
        _minimal_invoice(colour="red")
    with pytest.raises(ValidationError):
        _minimal_invoice(invoice_number="")
    with pytest.raises(ValidationError):
        _minimal_invoice(lines=[{"net_price": "1"}])  # a line has a quantity (BT-129)


def test_eancom_header_parties_payment_and_message_id():
    """Number, type, dates, seller with its bank account, payment means and terms merge."""
    mapped = _invoice(EANCOM)
    invoice = mapped.document
    assert (invoice.invoice_number, invoice.invoice_type, invoice.function) == (
        "INV-1", "380", "original")
    assert invoice.issue_date == dt.date(2024, 3, 15) and invoice.due_date == dt.date(2024, 4, 14)
    assert invoice.parties.seller.gln == "4012345000009"
    assert invoice.parties.seller.vat_id == "DE123456789"
    assert invoice.parties.buyer.gln == "4000001000005"
    payment = invoice.payment
    assert (payment.account_id, payment.bic, payment.means_code) == (
        "DE02120300000000202051", "BYLADEM1001", "42")
    assert mapped.mapping_id == "eancom-invoic-d96a" and mapped.document_type == "invoice"
    assert invoice.message_id == message_id("acme", "invoice", "4012345000009", "IC7", "M1",
                                            "INV-1")


def test_header_tax_after_the_parties_is_not_a_vat_breakdown_entry():
    """SG6 TAX (one rate for the whole invoice) stays with the parties; only SG50 makes BG-23."""
    invoice = _invoice(EANCOM).document
    assert [(v.category, v.rate, v.taxable_amount, v.tax_amount)
            for v in invoice.vat_breakdown] == [
        ("S", Decimal("19"), Decimal("120.00"), Decimal("22.80"))]


def test_summary_allowance_is_not_a_second_document_allowance():
    """The ALC after UNS (a total per allowance type) is not read as another BG-20 entry."""
    invoice = _invoice(EANCOM).document
    assert [(a.amount, a.reason_code, a.vat_rate) for a in invoice.allowances] == [
        (Decimal("10.00"), "DI", Decimal("19"))]
    assert invoice.charges == []


def test_line_allowances_by_qualifier_and_the_line_keeps_its_own_tax():
    """Line MOA 204 / 23 are the line's allowances and charges; the allowance's TAX 7 % is
    not the line's VAT rate; a line with only QTY 12 is invoiced for what was despatched."""
    first, second = _invoice(EANCOM).document.lines
    assert first.allowance_amounts == [Decimal("5.00")]
    assert first.charge_amounts == [Decimal("2.50")]
    assert (first.vat_category, first.vat_rate) == ("S", Decimal("19"))
    assert first.gtin == "4012345678901" and first.line_net_amount == Decimal("100.00")
    assert second.quantity == Decimal("3") and second.allowance_amounts == []


def test_totals_come_from_the_summary_only():
    """BG-22 from the MOA after UNS: a line's MOA 203 is never a total."""
    totals = _invoice(EANCOM).document.totals
    assert (totals.line_total, totals.tax_inclusive, totals.payable) == (
        Decimal("130.00"), Decimal("142.80"), Decimal("142.80"))
    assert totals.prepaid is None and totals.tax_total is None


def test_credit_note_names_the_invoice_it_corrects():
    """Type 381 with RFF+IV gives the preceding invoice reference (BT-25)."""
    invoice = _invoice("""
BGM+381+CN-9+9'
DTM+137:20240320:102'
RFF+IV:INV-1'
LIN+1'
QTY+47:1'
UNS+S'
MOA+77:11.90'
""").document
    assert invoice.invoice_type == "381" and invoice.preceding_invoice_reference == "INV-1"
    assert invoice.totals.tax_inclusive == Decimal("11.90") and invoice.totals.payable is None


def test_missing_invoice_number_names_field_and_position():
    """No BGM 1004: MappingError naming the field and the BGM segment."""
    with pytest.raises(MappingError) as info:
        _invoice("BGM+380'\nDTM+137:20240315:102'\nLIN+1'\nQTY+47:1'")
    error = info.value
    assert error.field == "invoice_number" and "invoice number" in error.reason
    assert error.position.tag == "BGM" and error.position.message_ref == "M1"


def test_line_without_a_quantity_fails_naming_the_line():
    """BT-129 is required: a line without QTY 47 or 12 fails at map with the line's segment."""
    with pytest.raises(MappingError) as info:
        _invoice("BGM+380+INV-2+9'\nLIN+1'\nQTY+21:4'\nLIN+2'\nQTY+47:1'")
    assert info.value.field == "quantity" and "lines 1" in info.value.reason


def test_bad_amount_fails_naming_field_and_segment():
    """A total that is not a number fails the message with the MOA's position."""
    with pytest.raises(MappingError) as info:
        _invoice("BGM+380+INV-3+9'\nLIN+1'\nQTY+47:1'\nUNS+S'\nMOA+77:12,3.4'")
    assert info.value.field == "tax_inclusive" and info.value.position.tag == "MOA"


def test_en16931_d14b_binding():
    """D14B as EN 16931 writes it: seller NAD+SE with the GLN under scheme 0088, region in C819,
    trading name, two PYT groups read as one payment block, BT-6, BT-111 and the charge's
    reason code in C214."""
    mapped = _invoice("""
BGM+380+SI-1+9'
DTM+137:20240610:102'
FTX+AAB+++Net 30 days'
RFF+PQ:RF18539007547034'
NAD+SE+4012345000016:0088++Seller AS:Seller+Gate 1+Oslo+:::Oslo+0155+NO'
FII+RB+NO8330001234567+DNBANOKKXXX'
RFF+VA:NO999888777MVA'
RFF+GN:999888777'
NAD+BY+4000001000005:0088++Buyer AS'
CUX+2:NOK'
CUX+6:EUR'
PYT+1'
DTM+13:20240710:102'
PYT+1'
PAI+::30'
ALC+C+Freight+++FC'
MOA+23:100'
TAX+7+VAT+++:::25+S'
LIN+1'
PIA+5+SRV-1:SA'
IMD+F++:::Service hour'
QTY+47:4:HUR'
MOA+203:400'
PRI+AAA:100'
TAX+7+VAT+++:::25+S'
UNS+S'
MOA+79:400'
MOA+259:100'
MOA+389:500'
MOA+176:125'
MOA+2:10.80'
MOA+388:625'
MOA+9:625'
TAX+7+VAT+++:::25+S'
MOA+125:500'
MOA+124:125'
""", version="14B", association="", una="UNA:+.?*'")
    invoice = mapped.document
    assert mapped.mapping_id == "un-invoic-d14b"
    seller = invoice.parties.seller
    assert (seller.gln, seller.id_agency, seller.name, seller.trading_name, seller.region) == (
        "4012345000016", "0088", "Seller AS", "Seller", "Oslo")
    assert seller.legal_registration_id == "999888777"
    assert (invoice.currency, invoice.tax_currency) == ("NOK", "EUR")
    assert invoice.due_date == dt.date(2024, 7, 10)
    assert (invoice.payment.terms, invoice.payment.means_code, invoice.payment.account_id,
            invoice.payment.payment_reference) == (
        "Net 30 days", "30", "NO8330001234567", "RF18539007547034")
    assert [(c.amount, c.reason, c.reason_code) for c in invoice.charges] == [
        (Decimal("100"), "Freight", "FC")]
    assert invoice.lines[0].seller_item_id == "SRV-1"
    assert invoice.lines[0].description == "Service hour"
    totals = invoice.totals
    assert (totals.charge_total, totals.tax_exclusive, totals.tax_total_accounting_currency,
            totals.tax_inclusive, totals.payable) == (
        Decimal("100"), Decimal("500"), Decimal("10.80"), Decimal("625"), Decimal("625"))


@pytest.mark.parametrize(("version", "association", "mapping_id"), [
    ("96A", "EAN008", "eancom-invoic-d96a"),
    ("96A", "", "eancom-invoic-d96a"),
    ("01B", "EAN010", "eancom-invoic-d01b"),
    ("97A", "", "un-invoic-d97a"),
    ("03B", "", "un-invoic-d03b"),
    ("14B", "", "un-invoic-d14b"),
])
def test_each_invoic_release_has_its_mapping(version, association, mapping_id):
    """INVOIC D96A, D01B, D97A, D03B and D14B each find a mapping by match."""
    mapped = _invoice("BGM+380+INV-4+9'\nDTM+137:20240315:102'\nLIN+1'\nQTY+47:1'",
                      version=version, association=association)
    assert mapped.mapping_id == mapping_id and mapped.document.invoice_number == "INV-4"


def test_d03b_payment_terms_come_from_pyt():
    """D03B has no PAT: the overlay reads the terms text from PYT (or FTX+AAB)."""
    invoice = _invoice("BGM+380+INV-5+9'\nPYT+1+:::45 days net'\nDTM+13:20240704:102'\n"
                       "LIN+1'\nQTY+47:1'", version="03B", association="").document
    assert invoice.payment.terms == "45 days net" and invoice.due_date == dt.date(2024, 7, 4)


def test_account_in_the_payment_terms_group_wins_over_the_sellers():
    """An FII in SG8 (with PAT) names the account for this payment; the seller's is a default."""
    body = EANCOM.replace("PAI+::42'", "PAI+::42'\nFII+RB+DE89370400440532013000+COBADEFFXXX'")
    payment = _invoice(body).document.payment
    assert (payment.account_id, payment.bic) == ("DE89370400440532013000", "COBADEFFXXX")


def test_invoicing_period_given_as_a_range():
    """DTM+263 with a 718 range gives both ends of the invoicing period (BT-73, BT-74)."""
    invoice = _invoice("BGM+380+INV-6+9'\nDTM+263:20240201-20240229:718'\nLIN+1'\nQTY+47:1'"
                       ).document
    assert (invoice.invoicing_period_start, invoice.invoicing_period_end) == (
        dt.date(2024, 2, 1), dt.date(2024, 2, 29))
