"""Canonical documents: what the ERP receives, whatever the partner sent.

Each type is versioned by its ``schema`` value (``edigw.order/1``). The JSON Schemas under
``schemas/canonical/`` are generated from these models (``edigw schemas write``) and a test
fails when the two drift. Amounts and quantities are decimals written as JSON strings so that
no precision is lost on the way to the ERP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# The types the ERP sends out, importable from here as before (their list is in ``status``).
from gateway.core.status import OUTBOUND_TYPES as OUTBOUND_TYPES

ORDER_SCHEMA: Final = "edigw.order/1"

#: A decimal travels as a JSON string so that no precision is lost. Its schema is spelled
#: out here rather than left to pydantic, whose generated pattern changes between releases.
Amount = Annotated[Decimal, WithJsonSchema(
    {"type": "string", "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)$",
     "description": "decimal number written as a string, '.' as decimal mark"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Party(_Strict):
    """A party named in a document (NAD in EDIFACT, with its RFF, CTA and COM)."""

    gln: str | None = Field(None, description="GS1 Global Location Number (13 digits, checked)")
    id: str | None = Field(None, description="Party identifier as sent (NAD C082 3039)")
    id_agency: str | None = Field(
        None, description="Who issued the id: EDIFACT 3055 (9 = GS1), or the ISO/IEC 6523 "
        "scheme (0088 = GLN) where EN 16931 puts it (NAD C082 1131)")
    name: str | None = Field(None, description="Name (EN 16931 BT-27 seller, BT-44 buyer)")
    trading_name: str | None = Field(None, description="Trading name (BT-28, BT-45)")
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = Field(None, description="Country subdivision (BT-39, BT-54)")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2")
    vat_id: str | None = Field(None, description="VAT identifier (BT-31 seller, BT-48 buyer)")
    tax_registration_id: str | None = Field(
        None, description="Local tax registration id, not VAT (BT-32)")
    legal_registration_id: str | None = Field(
        None, description="Legal registration id, e.g. company register number (BT-30, BT-47)")
    contact_name: str | None = Field(None, description="Contact point (BT-41, BT-56)")
    phone: str | None = Field(None, description="Contact telephone (BT-42, BT-57)")
    email: str | None = Field(None, description="Contact e-mail (BT-43, BT-58)")


class Parties(_Strict):
    """The parties of an order, by role."""

    buyer: Party | None = None
    supplier: Party | None = None
    delivery_point: Party | None = None
    invoicee: Party | None = None


class Source(_Strict):
    """Where a canonical document came from, for tracing back to the partner's file."""

    format: Literal["edifact", "xml", "csv", "sms", "erp"] = Field(
        description="What it was read from; ``erp`` for a document the ERP sent out")
    standard: str = Field(description="EANCOM, UN/EDIFACT, UBL …")
    version: str = Field(description="Directory or schema version, e.g. D96A")
    association: str | None = Field(None, description="Association assigned code, e.g. EAN008")
    mapping: str = Field(description="Mapping id that produced this document")
    sender_id: str | None = None
    sender_qualifier: str | None = None
    recipient_id: str | None = None
    interchange_ref: str | None = Field(None, description="UNB 0020 control reference")
    message_ref: str | None = Field(None, description="UNH 0062 message reference")
    filename: str | None = None
    transmission_id: str | None = None


class OrderLine(_Strict):
    """One ordered item."""

    line_number: str | None = None
    item_code: str | None = Field(
        None, description="The line's item number exactly as sent (EDIFACT LIN C212 7140), "
        "kept even when it is not a valid GTIN")
    item_code_type: str | None = Field(
        None, description="What item_code is (7143: EN/SRV = GTIN, SA = supplier's, IN = buyer's)")
    gtin: str | None = Field(None, description="GS1 GTIN (8, 12, 13 or 14 digits, checked)")
    supplier_article: str | None = None
    buyer_article: str | None = None
    description: str | None = None
    quantity: Amount
    unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit code")
    unit_price: Amount | None = None
    price_basis_quantity: Amount | None = None
    line_amount: Amount | None = None
    requested_delivery_date: dt.date | dt.datetime | None = None


class Order(_Strict):
    """A purchase order (``edigw.order/1``)."""

    schema_: Literal["edigw.order/1"] = Field(ORDER_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    order_number: str = Field(min_length=1)
    order_type: str | None = Field(None, description="Document name code (BGM 1001), e.g. 220")
    function: str | None = Field(None, description="original, replace, cancel, copy … (BGM 1225)")
    issue_date: dt.date | dt.datetime | None = None
    requested_delivery_date: dt.date | dt.datetime | None = None
    currency: str | None = Field(None, description="ISO 4217")
    parties: Parties = Field(default_factory=Parties)
    lines: list[OrderLine] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    source: Source

    #: The field that holds the document's business number (what support staff search by).
    business_field: ClassVar[str] = "order_number"

    @property
    def business_number(self) -> str:
        return self.order_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


PRICE_LIST_SCHEMA: Final = "edigw.price-list/1"


class Price(_Strict):
    """One price of a price-list item (EDIFACT: a PRI group with its CUX, RNG and DTM).

    An item may carry several (net and gross, price breaks by quantity, future prices), each
    with its own basis quantity, so prices are a list rather than fields of the item.
    """

    type: str = Field(description="Price qualifier as sent (EDIFACT 5125: AAA calculation net, "
                      "AAB calculation gross, AAE/AAF information price with/without tax, "
                      "INF information …)")
    type_name: str | None = Field(
        None, description="Readable name of type (net, gross, information_incl_tax, "
        "information_excl_tax …); the code as sent when the mapping does not know it")
    amount: Amount = Field(description="Price per basis quantity (EDIFACT 5118)")
    price_type: str | None = Field(
        None, description="Price type code as sent (5375: CA catalogue, CT contract, "
        "AE range dependent …)")
    specification: str | None = Field(
        None, description="Price specification code as sent (5387: SRP suggested retail, "
        "RTP retail, PRP promotional …)")
    basis_quantity: Amount | None = Field(
        None, description="Quantity the amount is for (5284); absent means one unit")
    basis_unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit of "
                                   "basis_quantity (6411)")
    currency: str | None = Field(None, description="ISO 4217, only when it differs from the "
                                 "price list's currency (CUX in the price group)")
    quantity_from: Amount | None = Field(None, description="Lower bound of the quantity range "
                                         "the price applies to (RNG), for price breaks")
    quantity_to: Amount | None = Field(None, description="Upper bound of the quantity range")
    valid_from: dt.date | dt.datetime | None = None
    valid_to: dt.date | dt.datetime | None = None


class PriceListItem(_Strict):
    """One article of a price list, with what the receiver must do with it (``action``)."""

    line_number: str | None = None
    action: str | None = Field(
        None, description="What to do with the item in the receiver's catalogue: add, change, "
        "delete, no_change … (EDIFACT LIN 1229); an unknown code is kept as sent")
    item_code: str | None = Field(
        None, description="The item number exactly as sent (EDIFACT LIN C212 7140), kept even "
        "when it is not a valid GTIN")
    item_code_type: str | None = Field(
        None, description="What item_code is (7143: EN/SRV = GTIN, SA = supplier's …)")
    gtin: str | None = Field(None, description="GS1 GTIN (8, 12, 13 or 14 digits, checked)")
    supplier_article: str | None = None
    buyer_article: str | None = None
    description: str | None = None
    unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit the item is "
                             "ordered in, when it is not pieces (QTY/MEA 6411)")
    minimum_quantity: Amount | None = Field(None, description="Minimum order quantity "
                                            "(EANCOM QTY 6063 = 53)")
    prices: list[Price] = Field(default_factory=list)
    valid_from: dt.date | dt.datetime | None = Field(
        None, description="First day the item's data applies, when the item says so")
    valid_to: dt.date | dt.datetime | None = None


class PriceListParties(_Strict):
    """The parties of a price list, by role."""

    supplier: Party | None = None
    buyer: Party | None = None


class PriceList(_Strict):
    """A price list or sales catalogue (``edigw.price-list/1``).

    A very large list is published in parts (issue 3, streaming): each part is a PriceList
    with the same ``message_id`` and ``price_list_number``, its own ``items`` and the
    ``part_number`` / ``part_count`` fields set; a list sent whole has neither.
    """

    schema_: Literal["edigw.price-list/1"] = Field(PRICE_LIST_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    price_list_number: str = Field(min_length=1)
    price_list_type: str | None = Field(None, description="Document name code (BGM 1001), "
                                        "e.g. 9 = price/sales catalogue")
    function: str | None = Field(None, description="original, replace, cancel, copy … (BGM 1225)")
    issue_date: dt.date | dt.datetime | None = None
    valid_from: dt.date | dt.datetime | None = Field(
        None, description="Start of the list's validity period")
    valid_to: dt.date | dt.datetime | None = Field(
        None, description="End of the list's validity period")
    currency: str | None = Field(None, description="ISO 4217")
    parties: PriceListParties = Field(default_factory=PriceListParties)
    items: list[PriceListItem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    part_number: int | None = Field(
        None, ge=1, description="Which part this is (1-based) when the list is published in "
        "parts; absent when the list is sent whole")
    part_count: int | None = Field(
        None, ge=1, description="How many parts the list is published in; absent when whole")
    source: Source

    #: The field that holds the document's business number (what support staff search by).
    business_field: ClassVar[str] = "price_list_number"

    @property
    def business_number(self) -> str:
        return self.price_list_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


INVOICE_SCHEMA: Final = "edigw.invoice/1"


class InvoiceParties(_Strict):
    """The parties of an invoice, by role (EN 16931 BG-4, BG-7, BG-10, BG-11, BG-13)."""

    seller: Party | None = Field(None, description="BG-4 seller (EDIFACT NAD+SE, EANCOM NAD+SU)")
    buyer: Party | None = Field(None, description="BG-7 buyer (NAD+BY)")
    payee: Party | None = Field(None, description="BG-10 payee, when not the seller (NAD+PE)")
    tax_representative: Party | None = Field(
        None, description="BG-11 seller's tax representative (NAD+LC or NAD+AE)")
    invoicee: Party | None = Field(
        None, description="Party the invoice is addressed to, when not the buyer (NAD+IV)")
    delivery: Party | None = Field(
        None, description="BG-13 deliver-to party: BT-70 name, BT-71 location id, BG-15 "
        "address (NAD+DP or NAD+ST)")


class PaymentTerms(_Strict):
    """How to pay: payment terms (BT-20) and payment instructions (BG-16).

    The due date is the invoice's ``due_date`` (BT-9), not repeated here.
    """

    terms: str | None = Field(None, description="BT-20 payment terms, as text")
    means_code: str | None = Field(
        None, description="BT-81 payment means (UNCL 4461: 30 credit transfer, 58 SEPA credit "
        "transfer, 49 direct debit, 48 card …)")
    payment_reference: str | None = Field(
        None, description="BT-83 remittance information the payer quotes (RFF+PQ)")
    account_id: str | None = Field(
        None, description="BT-84 payment account identifier: the IBAN for SEPA credit "
        "transfers, else the account number as sent (FII+RB C078 3194)")
    account_name: str | None = Field(None, description="BT-85 payment account name")
    bic: str | None = Field(
        None, description="BT-86 payment service provider identifier, BIC (FII C088 3433)")
    mandate_reference: str | None = Field(
        None, description="BT-89 direct debit mandate reference (RFF+AVS)")
    debited_account_id: str | None = Field(
        None, description="BT-91 account to be debited by a direct debit (FII+BI)")
    discount_percent: Amount | None = Field(
        None, description="Settlement discount percentage offered for early payment "
        "(EANCOM PAT with PCD+12); not an EN 16931 term, kept for the ERP")


class InvoiceLine(_Strict):
    """One invoice line (EN 16931 BG-25)."""

    line_id: str | None = Field(None, description="BT-126 invoice line identifier (LIN 1082)")
    note: str | None = Field(None, description="BT-127 invoice line note")
    order_line_reference: str | None = Field(
        None, description="BT-132 referenced purchase order line (RFF+ON 1156)")
    item_code: str | None = Field(
        None, description="The line's item number exactly as sent (EDIFACT LIN C212 7140), "
        "kept even when it is not a valid GTIN")
    item_code_type: str | None = Field(
        None, description="What item_code is (7143: EN/SRV = GTIN, SA = supplier's, IN = buyer's)")
    gtin: str | None = Field(
        None, description="BT-157 item standard identifier: GS1 GTIN (8, 12, 13 or 14 digits, "
        "checked)")
    seller_item_id: str | None = Field(None, description="BT-155 item seller's identifier")
    buyer_item_id: str | None = Field(None, description="BT-156 item buyer's identifier")
    description: str | None = Field(None, description="BT-153 item name")
    quantity: Amount = Field(description="BT-129 invoiced quantity (negative on a return line)")
    unit: str | None = Field(
        None, description="BT-130 unit of measure (UN/ECE Recommendation 20 code)")
    net_price: Amount | None = Field(None, description="BT-146 item net price")
    gross_price: Amount | None = Field(None, description="BT-148 item gross price")
    price_discount: Amount | None = Field(
        None, description="BT-147 item price discount (gross price minus net price)")
    price_basis_quantity: Amount | None = Field(
        None, description="BT-149 item price base quantity (the price is per this many units)")
    price_basis_unit: str | None = Field(
        None, description="BT-150 unit of the price base quantity")
    line_net_amount: Amount | None = Field(
        None, description="BT-131 invoice line net amount (after line allowances and charges)")
    vat_category: str | None = Field(
        None, description="BT-151 invoiced item VAT category (UNCL 5305: S, Z, E, AE, K, G, O, "
        "L, M)")
    vat_rate: Amount | None = Field(None, description="BT-152 invoiced item VAT rate, percent")
    allowance_amounts: list[Amount] = Field(
        default_factory=list, description="BT-136 amount of each line allowance (BG-27)")
    charge_amounts: list[Amount] = Field(
        default_factory=list, description="BT-141 amount of each line charge (BG-28)")
    period_start: dt.date | dt.datetime | None = Field(None, description="BT-134 line period start")
    period_end: dt.date | dt.datetime | None = Field(None, description="BT-135 line period end")


class AllowanceCharge(_Strict):
    """A document-level allowance (EN 16931 BG-20) or charge (BG-21)."""

    amount: Amount | None = Field(None, description="BT-92 / BT-99 amount, without VAT")
    base_amount: Amount | None = Field(None, description="BT-93 / BT-100 base amount")
    percentage: Amount | None = Field(None, description="BT-94 / BT-101 percentage")
    vat_category: str | None = Field(None, description="BT-95 / BT-102 VAT category (UNCL 5305)")
    vat_rate: Amount | None = Field(None, description="BT-96 / BT-103 VAT rate, percent")
    reason: str | None = Field(None, description="BT-97 / BT-104 reason, as text")
    reason_code: str | None = Field(
        None, description="BT-98 / BT-105 reason code (UNCL 5189 allowances, UNCL 7161 charges)")


class VatBreakdown(_Strict):
    """The VAT of one category and rate (EN 16931 BG-23)."""

    category: str | None = Field(None, description="BT-118 VAT category code (UNCL 5305)")
    rate: Amount | None = Field(None, description="BT-119 VAT category rate, percent")
    taxable_amount: Amount | None = Field(None, description="BT-116 VAT category taxable amount")
    tax_amount: Amount | None = Field(None, description="BT-117 VAT category tax amount")
    exemption_reason: str | None = Field(None, description="BT-120 VAT exemption reason text")
    exemption_reason_code: str | None = Field(
        None, description="BT-121 VAT exemption reason code")


class InvoiceTotals(_Strict):
    """Document totals (EN 16931 BG-22) as the partner sent them; none is computed here."""

    line_total: Amount | None = Field(None, description="BT-106 sum of invoice line net amounts")
    allowance_total: Amount | None = Field(
        None, description="BT-107 sum of allowances on document level")
    charge_total: Amount | None = Field(None, description="BT-108 sum of charges on document level")
    tax_exclusive: Amount | None = Field(None, description="BT-109 invoice total without VAT")
    tax_total: Amount | None = Field(None, description="BT-110 invoice total VAT amount")
    tax_total_accounting_currency: Amount | None = Field(
        None, description="BT-111 invoice total VAT amount in the VAT accounting currency (BT-6)")
    tax_inclusive: Amount | None = Field(None, description="BT-112 invoice total with VAT")
    prepaid: Amount | None = Field(None, description="BT-113 paid amount")
    rounding: Amount | None = Field(None, description="BT-114 rounding amount")
    payable: Amount | None = Field(
        None, description="BT-115 amount due for payment, only when the partner states it "
        "(EDIFACT MOA+9); many EANCOM invoices state only tax_inclusive")


class Invoice(_Strict):
    """An invoice or credit note (``edigw.invoice/1``), shaped after the EN 16931 business
    terms so that EDIFACT, UBL, CII and Factur-X invoices land in the same form.
    """

    schema_: Literal["edigw.invoice/1"] = Field(INVOICE_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    invoice_number: str = Field(min_length=1, description="BT-1 invoice number")
    invoice_type: str | None = Field(
        None, description="BT-3 invoice type code (UNCL 1001: 380 commercial invoice, 381 credit "
        "note, 383 debit note, 384 corrected invoice, 386 prepayment invoice, 389 self-billed "
        "invoice …)")
    function: str | None = Field(None, description="original, replace, cancel, copy … (BGM 1225)")
    issue_date: dt.date | dt.datetime | None = Field(None, description="BT-2 invoice issue date")
    tax_point_date: dt.date | dt.datetime | None = Field(None, description="BT-7 VAT point date")
    due_date: dt.date | dt.datetime | None = Field(None, description="BT-9 payment due date")
    invoicing_period_start: dt.date | dt.datetime | None = Field(
        None, description="BT-73 invoicing period start")
    invoicing_period_end: dt.date | dt.datetime | None = Field(
        None, description="BT-74 invoicing period end")
    delivery_date: dt.date | dt.datetime | None = Field(
        None, description="BT-72 actual delivery date")
    currency: str | None = Field(None, description="BT-5 invoice currency (ISO 4217)")
    tax_currency: str | None = Field(
        None, description="BT-6 VAT accounting currency, when not the invoice currency")
    buyer_reference: str | None = Field(None, description="BT-10 buyer reference")
    project_reference: str | None = Field(None, description="BT-11 project reference")
    contract_reference: str | None = Field(None, description="BT-12 contract reference")
    order_reference: str | None = Field(None, description="BT-13 purchase order reference")
    sales_order_reference: str | None = Field(None, description="BT-14 sales order reference")
    receiving_advice_reference: str | None = Field(
        None, description="BT-15 receiving advice reference")
    despatch_reference: str | None = Field(
        None, description="BT-16 despatch advice reference, or the delivery note number when "
        "that is what the supplier quotes")
    preceding_invoice_reference: str | None = Field(
        None, description="BT-25 preceding invoice reference (what a credit note corrects)")
    preceding_invoice_date: dt.date | dt.datetime | None = Field(
        None, description="BT-26 preceding invoice issue date")
    parties: InvoiceParties = Field(default_factory=lambda: InvoiceParties.model_validate({}))
    payment: PaymentTerms | None = None
    notes: list[str] = Field(default_factory=list, description="BT-22 invoice notes")
    vat_exemption_reason: str | None = Field(
        None, description="BT-120 VAT exemption reason where the syntax gives one for the whole "
        "invoice (EDIFACT FTX+AGM) rather than one per VAT breakdown")
    lines: list[InvoiceLine] = Field(default_factory=list, description="BG-25 invoice lines")
    allowances: list[AllowanceCharge] = Field(
        default_factory=list, description="BG-20 document level allowances")
    charges: list[AllowanceCharge] = Field(
        default_factory=list, description="BG-21 document level charges")
    vat_breakdown: list[VatBreakdown] = Field(
        default_factory=list, description="BG-23 VAT breakdown, one per category and rate")
    totals: InvoiceTotals = Field(default_factory=lambda: InvoiceTotals.model_validate({}))
    source: Source

    #: The field that holds the document's business number (what support staff search by).
    business_field: ClassVar[str] = "invoice_number"

    @property
    def business_number(self) -> str:
        return self.invoice_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


ORDER_RESPONSE_SCHEMA: Final = "edigw.order-response/1"


class OrderResponseLine(_Strict):
    """What the supplier answers for one ordered line."""

    line_number: str | None = Field(None, description="The order line it answers (LIN 1082)")
    status: Literal["accepted", "changed", "rejected"] = Field(
        "accepted", description="accepted as ordered, changed (quantity, date or price), or "
        "rejected (EDIFACT LIN 1229: 5, 3, 7)")
    gtin: str | None = Field(None, description="GS1 GTIN (8, 12, 13 or 14 digits)")
    item_code: str | None = None
    item_code_type: str | None = None
    supplier_article: str | None = None
    buyer_article: str | None = None
    description: str | None = None
    ordered_quantity: Amount | None = Field(None, description="Quantity ordered (QTY 21)")
    quantity: Amount = Field(description="Quantity confirmed (QTY 113); 0 when rejected")
    unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit code")
    unit_price: Amount | None = None
    delivery_date: dt.date | dt.datetime | None = Field(
        None, description="Delivery date confirmed for this line")
    reason: str | None = Field(None, description="Why the line was changed or rejected, text")
    reason_code: str | None = Field(None, description="The reason as a code (EDIFACT 4295 …)")


class OrderResponse(_Strict):
    """The supplier's answer to an order (``edigw.order-response/1``): accepted, accepted
    with changes or rejected, line by line. EANCOM ORDRSP, UBL OrderResponse."""

    schema_: Literal["edigw.order-response/1"] = Field(ORDER_RESPONSE_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    response_number: str = Field(min_length=1, description="This response's number (BGM 1004)")
    order_number: str = Field(min_length=1, description="The order it answers (RFF+ON)")
    order_date: dt.date | dt.datetime | None = None
    status: Literal["accepted", "accepted-with-changes", "rejected"] = Field(
        description="For the whole order (EANCOM BGM 1225: 29, 4, 27)")
    issue_date: dt.date | dt.datetime | None = None
    delivery_date: dt.date | dt.datetime | None = Field(
        None, description="Delivery date confirmed for the whole order")
    currency: str | None = Field(None, description="ISO 4217")
    reason: str | None = Field(None, description="Why the order was rejected or changed")
    parties: Parties = Field(default_factory=Parties)
    lines: list[OrderResponseLine] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    source: Source

    #: Support staff look an answer up by the order it answers.
    business_field: ClassVar[str] = "order_number"

    @property
    def business_number(self) -> str:
        return self.order_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


DESPATCH_ADVICE_SCHEMA: Final = "edigw.despatch-advice/1"


class DespatchLine(_Strict):
    """One article shipped."""

    line_number: str | None = None
    gtin: str | None = Field(None, description="GS1 GTIN (8, 12, 13 or 14 digits)")
    item_code: str | None = None
    item_code_type: str | None = None
    supplier_article: str | None = None
    buyer_article: str | None = None
    description: str | None = None
    quantity: Amount = Field(description="Quantity despatched (QTY 12)")
    ordered_quantity: Amount | None = Field(None, description="Quantity ordered (QTY 21)")
    unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit code")
    order_number: str | None = Field(None, description="The order of this line, when the "
                                     "advice covers several (RFF+ON)")
    order_line_reference: str | None = None
    batch: str | None = Field(None, description="Batch or lot number (PIA/GIN BX)")
    best_before: dt.date | None = Field(None, description="Best before date (DTM 361)")


class Package(_Strict):
    """One package (pallet, parcel) with its SSCC and the lines packed in it."""

    sscc: str | None = Field(None, description="GS1 SSCC, 18 digits (GIN+BJ)")
    package_type: str | None = Field(None, description="Package type code (PAC 7065: 201 "
                                     "pallet ISO 1, CT carton …)")
    parent_sscc: str | None = Field(None, description="The SSCC of the package it is in")
    gross_weight: Amount | None = Field(None, description="Kilograms")
    lines: list[DespatchLine] = Field(default_factory=list)


class Shipment(_Strict):
    """How the goods travel."""

    carrier: Party | None = Field(None, description="The carrier (NAD+CA)")
    transport_reference: str | None = Field(None, description="Consignment or tracking "
                                            "number (RFF+CN, TDT 8028)")
    transport_mode: str | None = Field(None, description="UN/ECE Recommendation 19 (30 road …)")
    vehicle_id: str | None = None
    package_count: int | None = Field(None, ge=0, description="Number of packages (CPS/PAC)")
    gross_weight: Amount | None = Field(None, description="Kilograms")


class DespatchParties(_Strict):
    buyer: Party | None = None
    supplier: Party | None = None
    delivery_point: Party | None = None
    ship_from: Party | None = None


class DespatchAdvice(_Strict):
    """Goods sent to a client (``edigw.despatch-advice/1``): the shipment, its packages
    with their SSCC, and the lines. EANCOM DESADV, UBL DespatchAdvice."""

    schema_: Literal["edigw.despatch-advice/1"] = Field(DESPATCH_ADVICE_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    despatch_number: str = Field(min_length=1, description="Despatch advice number (BGM 1004)")
    order_number: str | None = Field(None, description="The order shipped (RFF+ON)")
    order_date: dt.date | dt.datetime | None = None
    issue_date: dt.date | dt.datetime | None = None
    despatch_date: dt.date | dt.datetime | None = Field(None, description="DTM 11")
    delivery_date: dt.date | dt.datetime | None = Field(None, description="Estimated (DTM 17)")
    delivery_note_number: str | None = Field(None, description="RFF+DQ")
    parties: DespatchParties = Field(default_factory=DespatchParties)
    shipment: Shipment = Field(default_factory=Shipment)
    packages: list[Package] = Field(default_factory=list)
    lines: list[DespatchLine] = Field(
        default_factory=list, description="Lines not packed in a listed package")
    notes: list[str] = Field(default_factory=list)
    source: Source

    business_field: ClassVar[str] = "despatch_number"

    @property
    def business_number(self) -> str:
        return self.despatch_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


CANONICAL_MODELS: dict[str, type[BaseModel]] = {"order": Order, "price-list": PriceList,
                                               "invoice": Invoice,
                                               "order-response": OrderResponse,
                                               "despatch-advice": DespatchAdvice}



def document_type_of(model: BaseModel) -> str:
    """The canonical type name (``order``) of a document instance."""
    for name, cls in CANONICAL_MODELS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"not a canonical document: {type(model).__name__}")


def json_schema(doc_type: str) -> dict[str, Any]:
    """The JSON Schema of a canonical type, as written under ``schemas/canonical/``."""
    model = CANONICAL_MODELS[doc_type]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    version = model.model_fields["schema_"].default
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://edigw.dev/schemas/{version}"
    return schema


def json_schema_text(doc_type: str) -> str:
    return json.dumps(json_schema(doc_type), indent=2, sort_keys=True) + "\n"


#: What ``content_digest`` leaves out: the ids, and the ``source`` block (file name,
#: interchange and message references, transmission id) — where and when it came from,
#: not what it says.
_ID_KEY = b'"message_id":"'
_SOURCE_KEY = b',"source":{'


def content_bytes(payload: bytes) -> bytes:
    """The canonical JSON ``payload`` (as ``to_json_bytes`` writes it) without its
    ``message_id`` value and without its ``source`` block: what the document says.

    Works on the bytes already made rather than dumping the model again: ``message_id``
    is a string near the start (its value is an id: no quote or backslash inside), and
    ``source`` is every model's last field, so its block runs to the closing brace (a
    quote inside a string is escaped, so ``,"source":{`` cannot occur inside a value).
    A test checks both assumptions on every canonical model."""
    start = payload.find(_ID_KEY)
    if start >= 0:
        start += len(_ID_KEY)
        end = payload.index(b'"', start)
        head = payload[:start] + payload[end:]
    else:
        head = payload
    cut = head.rfind(_SOURCE_KEY)
    return head[:cut] + b"}" if cut >= 0 else head


def content_digest(payload: bytes) -> str:
    """SHA-256 (hex) of ``content_bytes(payload)``: equal for two documents exactly when
    they say the same thing, whatever their ids, files and references. (Hashed in
    pieces, without copying the payload: it runs once per document made.)"""
    view = memoryview(payload)
    digest = hashlib.sha256()
    start = payload.find(_ID_KEY)
    rest = 0
    if start >= 0:
        start += len(_ID_KEY)
        digest.update(view[:start])
        rest = payload.index(b'"', start)
    cut = payload.rfind(_SOURCE_KEY, rest)
    if cut < 0:
        digest.update(view[rest:])
    else:
        digest.update(view[rest:cut])
        digest.update(b"}")
    return digest.hexdigest()


def content_view(document: dict[str, Any]) -> dict[str, Any]:
    """A parsed canonical document without its ids and ``source`` (what is compared)."""
    return {k: v for k, v in document.items() if k not in ("message_id", "source")}
