"""A canonical document as a support person reads it: who (parties with names and
identifiers), when (dates), what (lines: item, description, quantity, unit, price, amount)
and how much (totals: net, VAT, gross, currency).

``readable(payload)`` takes the canonical JSON (``core.canonical``: order, invoice, price
list, order response, despatch advice) and gives a ``Readable``; any other shape gets the
generic form (its plain fields, and its first list of records as the lines). Values are
shown as the document states them; only an order's total, which no order states, is the
sum of its line amounts (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

#: At most this many lines are shown; ``Readable.more_lines`` counts the others.
MAX_LINES = 500

_TITLES = {"edigw.order/1": "Order", "edigw.invoice/1": "Invoice",
           "edigw.price-list/1": "Price list", "edigw.order-response/1": "Order response",
           "edigw.despatch-advice/1": "Despatch advice"}
_NUMBERS = ("order_number", "invoice_number", "price_list_number", "response_number",
            "despatch_number")
_ROLES = {"buyer": "Buyer", "seller": "Seller", "supplier": "Supplier",
          "delivery_point": "Delivery", "delivery": "Delivery", "invoicee": "Invoicee",
          "payee": "Payee", "tax_representative": "Tax representative",
          "ship_from": "Ship from", "carrier": "Carrier"}
_DATES = {"issue_date": "Issued", "requested_delivery_date": "Delivery requested",
          "delivery_date": "Delivery", "due_date": "Due", "tax_point_date": "VAT point",
          "invoicing_period_start": "Period from", "invoicing_period_end": "Period to",
          "valid_from": "Valid from", "valid_to": "Valid to", "order_date": "Order date",
          "despatch_date": "Despatched", "preceding_invoice_date": "Preceding invoice date"}
_REFERENCES = {"order_reference": "Order", "order_number": "Order",
               "buyer_reference": "Buyer reference", "contract_reference": "Contract",
               "project_reference": "Project", "sales_order_reference": "Sales order",
               "despatch_reference": "Despatch advice",
               "preceding_invoice_reference": "Corrects invoice",
               "delivery_note_number": "Delivery note", "function": "Function",
               "order_type": "Type code", "invoice_type": "Type code",
               "price_list_type": "Type code", "status": "Answer"}
_INVOICE_TOTALS = (("line_total", "Sum of lines"), ("allowance_total", "Allowances"),
                   ("charge_total", "Charges"), ("tax_exclusive", "Net (without VAT)"),
                   ("tax_total", "VAT"), ("tax_inclusive", "Gross (with VAT)"),
                   ("prepaid", "Paid"), ("rounding", "Rounding"), ("payable", "Amount due"))


@dataclass(frozen=True, slots=True)
class Party:
    """One party: its role, name and identifiers (``GLN 540…``, ``VAT BE01…``), address."""

    role: str
    name: str
    identifiers: list[str]
    address: str
    contact: str


@dataclass(frozen=True, slots=True)
class Line:
    number: str
    item: str
    description: str
    quantity: str
    unit: str
    price: str
    amount: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Readable:
    """A document to read: a title (``Order PO-1``), facts (label, value), parties, lines,
    totals (label, value) in ``currency``, notes."""

    kind: str
    title: str
    number: str
    currency: str
    dates: list[tuple[str, str]]
    references: list[tuple[str, str]]
    parties: list[Party]
    lines: list[Line]
    totals: list[tuple[str, str]]
    notes: list[str]
    more_lines: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)
    source: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        shown = asdict(self)
        for key in ("dates", "references", "totals", "facts", "source"):
            shown[key] = [{"label": k, "value": v} for k, v in getattr(self, key)]
        return shown


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _party(role: str, p: dict[str, Any]) -> Party:
    ids = []
    if p.get("gln"):
        ids.append(f"GLN {p['gln']}")
    elif p.get("id"):
        ids.append(f"id {p['id']}" + (f" ({p['id_agency']})" if p.get("id_agency") else ""))
    for key, label in (("vat_id", "VAT"), ("legal_registration_id", "registration"),
                       ("tax_registration_id", "tax number")):
        if p.get(key):
            ids.append(f"{label} {p[key]}")
    town = " ".join(x for x in (p.get("postal_code"), p.get("city")) if x)
    address = ", ".join(x for x in (p.get("street"), town, p.get("region"), p.get("country"))
                        if x)
    contact = ", ".join(x for x in (p.get("contact_name"), p.get("phone"), p.get("email"))
                        if x)
    name = p.get("name") or p.get("trading_name") or ""
    if p.get("trading_name") and p.get("name") and p["trading_name"] != p["name"]:
        name += f" ({p['trading_name']})"
    return Party(role=_ROLES.get(role, role.replace("_", " ").capitalize()), name=name,
                 identifiers=ids, address=address, contact=contact)


def _parties(doc: dict[str, Any]) -> list[Party]:
    found = [_party(role, p) for role, p in (doc.get("parties") or {}).items()
             if isinstance(p, dict) and p]
    carrier = (doc.get("shipment") or {}).get("carrier")
    if isinstance(carrier, dict) and carrier:
        found.append(_party("carrier", carrier))
    return found


def _item(line: dict[str, Any]) -> str:
    code = line.get("gtin") or line.get("item_code")
    own = (line.get("supplier_article") or line.get("seller_item_id")
           or line.get("buyer_article") or line.get("buyer_item_id"))
    return " · ".join(x for x in (code, own) if x)


def _price(line: dict[str, Any]) -> str:
    price = line.get("unit_price") or line.get("net_price")
    if price is None:
        prices = line.get("prices") or []
        price = prices[0].get("amount") if prices and isinstance(prices[0], dict) else None
    basis = line.get("price_basis_quantity")
    if price is not None and basis not in (None, "1", "1.0"):
        return f"{price} per {basis}"
    return _text(price)


def _line(n: int, line: dict[str, Any]) -> Line:
    note = []
    if line.get("status") and line.get("status") != "accepted":
        note.append(str(line["status"]) + (f": {line['reason']}" if line.get("reason") else ""))
    if line.get("action"):
        note.append(str(line["action"]))
    if line.get("requested_delivery_date") or line.get("delivery_date"):
        note.append("delivery " + _text(line.get("requested_delivery_date")
                                        or line.get("delivery_date")))
    if line.get("vat_rate") is not None:
        note.append(f"VAT {line['vat_rate']} %")
    return Line(number=_text(line.get("line_number") or line.get("line_id") or n),
                item=_item(line), description=_text(line.get("description")),
                quantity=_text(line.get("quantity") if line.get("quantity") is not None
                               else line.get("minimum_quantity")),
                unit=_text(line.get("unit")), price=_price(line),
                amount=_text(line.get("line_amount") or line.get("line_net_amount")),
                note="; ".join(note))


def _lines_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    lines = [x for x in doc.get("lines") or doc.get("items") or [] if isinstance(x, dict)]
    for package in doc.get("packages") or []:
        if isinstance(package, dict):
            lines += [x for x in package.get("lines") or [] if isinstance(x, dict)]
    return lines


def _sum(values: list[Any]) -> str | None:
    total = Decimal(0)
    try:
        for v in values:
            if v is None:
                return None
            total += Decimal(str(v))
    except InvalidOperation:
        return None
    return str(total) if values else None


def _totals(doc: dict[str, Any], lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    totals = doc.get("totals")
    if isinstance(totals, dict):
        shown = [(label, _text(totals[key])) for key, label in _INVOICE_TOTALS
                 if totals.get(key) is not None]
        for vat in doc.get("vat_breakdown") or []:
            if isinstance(vat, dict) and vat.get("tax_amount") is not None:
                shown.append((f"VAT {vat.get('category') or ''} {vat.get('rate') or ''} %"
                              .replace("  ", " "),
                              f"{vat['tax_amount']} on {vat.get('taxable_amount') or '?'}"))
        return shown
    amounts = [x.get("line_amount") for x in lines]
    if any(a is not None for a in amounts):
        total = _sum(amounts)
        return [("Sum of line amounts (the order states no total)", total)] if total else []
    return []


def _facts(doc: dict[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    return [(key.replace("_", " ").capitalize(), _text(value)) for key, value in doc.items()
            if key not in skip and not isinstance(value, dict)
            and not (isinstance(value, list) and value and isinstance(value[0], dict))
            and value not in (None, "", [])]


def readable(doc: dict[str, Any], *, max_lines: int = MAX_LINES) -> Readable:
    """``doc`` (a canonical document's JSON) for a person to read."""
    schema = str(doc.get("schema") or "")
    kind = schema.removeprefix("edigw.").split("/")[0] or "document"
    number = next((str(doc[k]) for k in _NUMBERS if doc.get(k)), "")
    lines = _lines_of(doc)
    payment: dict[str, Any] = doc["payment"] if isinstance(doc.get("payment"), dict) else {}
    references = [(label, _text(doc[key])) for key, label in _REFERENCES.items()
                  if doc.get(key) and key not in _NUMBERS[:1] + _NUMBERS[2:]
                  and not (key == "order_number" and number == doc.get(key))]
    if payment:
        references += [(label, _text(payment[key])) for key, label in (
            ("terms", "Payment terms"), ("account_id", "IBAN / account"), ("bic", "BIC"),
            ("payment_reference", "Payment reference")) if payment.get(key)]
    source: dict[str, Any] = doc["source"] if isinstance(doc.get("source"), dict) else {}
    known = schema in _TITLES
    skip = {"schema", "message_id", "source", "parties", "lines", "items", "packages",
            "totals", "vat_breakdown", "notes", "currency", "partner", "payment", "shipment",
            "allowances", "charges", *_NUMBERS, *_DATES, *_REFERENCES}
    return Readable(
        kind=kind, title=_TITLES.get(schema, kind.replace("-", " ").capitalize()),
        number=number, currency=_text(doc.get("currency")),
        dates=[(label, _text(doc[key])) for key, label in _DATES.items() if doc.get(key)],
        references=references, parties=_parties(doc),
        lines=[_line(n, x) for n, x in enumerate(lines[:max_lines], start=1)],
        more_lines=max(0, len(lines) - max_lines), totals=_totals(doc, lines),
        notes=[_text(x) for x in doc.get("notes") or []],
        facts=_facts(doc, skip) if not known else _facts(doc, skip)[:20],
        source=[(k.replace("_", " "), _text(v)) for k, v in source.items() if v])


__all__ = ["MAX_LINES", "Line", "Party", "Readable", "readable"]
