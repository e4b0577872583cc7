"""Factur-X renderer (syntax ``pdf``): a readable invoice PDF with its CII XML attached,
as PDF/A-3 (Factur-X 1.0 / ZUGFeRD 2.x, profile EN 16931).

The mapping declares the CII template and XSD key as an XML mapping does (see
``gateway.formats.render.xml``), usually sharing ``xml/cii-invoice-out.xml.j2``::

    id: factur-x-invoice
    document: invoice
    syntax: pdf
    aliases: [factur-x]
    schema: factur-x:en16931
    template: xml/cii-invoice-out.xml.j2   # looked up beside the YAML, then one folder up
    params: {guideline: "urn:cen.eu:en16931:2017"}
    level: en16931                           # the Factur-X level written in the XMP
    fonts: [/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf]   # first one found is embedded
    labels: {title: Invoice, credit_note: Credit note, ...}   # optional, the page's words

The XML is rendered and validated first (a ``RenderError`` stops everything there); the
page is then drawn with fpdf2 from the same canonical document (seller, buyer, number,
dates, lines, VAT breakdown, totals, payment), and the ``factur-x`` library attaches the
XML and writes the PDF/A-3 metadata. PDF/A wants embedded fonts: the first TrueType font
of ``fonts`` that exists is embedded; without one the page falls back to the PDF core font
Helvetica (text reduced to Latin-1) and the file is not strictly PDF/A.

The creation date is ``ctx.now`` so that renderings are as stable as the PDF libraries
allow; they still write ids and times of their own, hence ``sample_equal``, which compares
the attached XML and the page text rather than bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway.core.errors import MappingDefinitionError
from gateway.formats.mapping.yamlsrc import Lines
from gateway.formats.render import Body, OutboundMapping, RenderContext, RenderError
from gateway.formats.render.xml import XmlTemplate, aliases_of, document_of, load_template

_LEVELS = ("minimum", "basicwl", "basic", "en16931", "extended")

#: The words of the page; a mapping may give its own (``labels``).
DEFAULT_LABELS: dict[str, str] = {
    "title": "Invoice", "credit_note": "Credit note", "number": "Number",
    "issue_date": "Issue date", "due_date": "Due date", "delivery_date": "Delivery date",
    "order": "Order", "seller": "Seller", "buyer": "Buyer", "vat_id": "VAT id",
    "line": "#", "item": "Item", "quantity": "Quantity", "unit": "Unit",
    "price": "Net price", "vat": "VAT %", "amount": "Amount",
    "vat_breakdown": "VAT breakdown", "category": "Category", "rate": "Rate",
    "taxable": "Taxable amount", "tax": "VAT amount",
    "line_total": "Sum of lines", "allowances": "Allowances", "charges": "Charges",
    "tax_exclusive": "Total without VAT", "tax_total": "Total VAT",
    "tax_inclusive": "Total with VAT", "prepaid": "Paid", "payable": "Amount due",
    "payment": "Payment", "iban": "IBAN", "bic": "BIC", "reference": "Reference",
    "notes": "Notes"}


@dataclass(slots=True)
class PdfBody:
    """A Factur-X PDF; the control reference is not part of it."""

    data: bytes
    content_type: str = "application/pdf"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return self.data


@dataclass(slots=True)
class FacturxMapping:
    """An outbound Factur-X mapping (``OutboundMapping``)."""

    id: str
    document: str
    aliases: tuple[str, ...]
    file: str
    xml: XmlTemplate
    level: str
    font: Path | None
    labels: dict[str, str] = field(default_factory=dict)
    syntax: str = "pdf"
    uses_control_ref: bool = False
    suffix: str = ".pdf"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> PdfBody:
        xml = self.xml.render_xml(document, ctx)
        try:
            page = _Page(document, self.labels, self.font, ctx.now).build()
        except RenderError as exc:
            raise RenderError(exc.reason, mapping=self.id, path=exc.path) from None
        except Exception as exc:  # fpdf2 raises plain exceptions for what it cannot draw
            raise RenderError(f"the PDF cannot be drawn: {type(exc).__name__}: {exc}",
                              mapping=self.id) from exc
        return PdfBody(self._attach(page, xml, document, ctx))

    def _attach(self, pdf: bytes, xml: bytes, document: dict[str, Any],
                ctx: RenderContext) -> bytes:
        import facturx

        seller = (document.get("parties") or {}).get("seller") or {}
        metadata = {"author": str(seller.get("name") or ""),
                    "keywords": "Factur-X, invoice",
                    "title": f"{_title(document, self.labels)} {document.get('invoice_number')}",
                    "subject": f"Factur-X invoice {document.get('invoice_number')}"}
        try:
            with _quiet():
                out = facturx.generate_from_binary(
                    pdf, xml, flavor="factur-x", level=self.level, check_xsd=False,
                    pdf_metadata=metadata, lang="en")
        except Exception as exc:  # the library raises plain exceptions
            raise RenderError(f"factur-x cannot attach the XML: {type(exc).__name__}: {exc}",
                              mapping=self.id) from exc
        data: bytes = out
        return data

    def sample_equal(self, rendered: bytes, expected: bytes) -> bool:
        """Whether two renderings say the same: the same attached XML and the same page
        text (PDF bytes carry ids and times the libraries choose)."""
        return _content(rendered) == _content(expected)


def _content(pdf: bytes) -> tuple[bytes | None, list[str]] | None:
    import facturx
    from pypdf import PdfReader

    try:
        with _quiet():
            _name, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=False)
            text = [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]
    except Exception:  # not a readable PDF: equal to nothing
        return None
    return xml, text


class _quiet:
    """fpdf2, pypdf and factur-x log at INFO/WARNING on every file; held at ERROR here."""

    _names = ("fpdf", "fontTools", "pypdf", "facturx", "facturx.facturx")

    def __enter__(self) -> None:
        self._levels = [(lg, lg.level) for lg in map(logging.getLogger, self._names)]
        for lg, _ in self._levels:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for lg, level in self._levels:
            lg.setLevel(level)


def _title(document: dict[str, Any], labels: dict[str, str]) -> str:
    credit = str(document.get("invoice_type") or "") in ("381", "396")
    return labels["credit_note"] if credit else labels["title"]


def _money(value: Any) -> str:
    if value in (None, ""):
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{number:,.2f}".replace(",", "\u202f") if abs(number) >= 1000 else f"{number:.2f}"


def _plain(value: Any) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
        return value[:10]
    return str(value)


class _Page:
    """The readable invoice, drawn with fpdf2 (A4, one column, page breaks as needed)."""

    def __init__(self, document: dict[str, Any], labels: dict[str, str], font: Path | None,
                 now: dt.datetime) -> None:
        from fpdf import FPDF

        self.doc = document
        self.labels = labels
        self.currency = str(document.get("currency") or "")
        pdf = FPDF(format="A4", unit="mm")
        pdf.set_creation_date(now if now.tzinfo else now.replace(tzinfo=dt.UTC))
        pdf.set_auto_page_break(auto=True, margin=15)
        pdf.set_margins(15, 15, 15)
        if font is not None:
            pdf.add_font("Body", "", str(font))
            bold = font.with_name(font.stem + "-Bold" + font.suffix)
            pdf.add_font("Body", "B", str(bold if bold.exists() else font))
            self.family, self.unicode = "Body", True
        else:
            self.family, self.unicode = "Helvetica", False
        self.pdf = pdf

    def text(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if not self.unicode:
            text = text.replace("\u202f", " ").encode("latin-1", "replace").decode("latin-1")
        return text

    def font(self, size: float, bold: bool = False) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)

    def build(self) -> bytes:
        with _quiet():
            return self._build()

    def _build(self) -> bytes:
        pdf, doc, lab = self.pdf, self.doc, self.labels
        pdf.add_page()
        self.font(18, bold=True)
        pdf.cell(0, 10, self.text(f"{_title(doc, lab)} {doc.get('invoice_number', '')}"),
                 new_x="LMARGIN", new_y="NEXT")
        self.font(9)
        facts = [(lab["number"], doc.get("invoice_number")),
                 (lab["issue_date"], _plain(doc.get("issue_date"))),
                 (lab["due_date"], _plain(doc.get("due_date"))),
                 (lab["delivery_date"], _plain(doc.get("delivery_date"))),
                 (lab["order"], doc.get("order_reference"))]
        for name, value in facts:
            if value:
                pdf.cell(35, 5, self.text(name + ":"))
                pdf.cell(0, 5, self.text(value), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        parties = doc.get("parties") or {}
        top = pdf.get_y()
        bottom = top
        for column, (role, key) in enumerate(((lab["seller"], "seller"),
                                              (lab["buyer"], "buyer"))):
            pdf.set_xy(15 + column * 92, top)
            bottom = max(bottom, self._party(role, parties.get(key) or {}, 15 + column * 92))
        pdf.set_xy(15, bottom + 4)
        self._lines()
        self._vat()
        self._totals()
        self._payment()
        notes = doc.get("notes") or []
        if notes:
            pdf.ln(3)
            self.font(9, bold=True)
            pdf.cell(0, 5, self.text(lab["notes"]), new_x="LMARGIN", new_y="NEXT")
            self.font(9)
            for note in notes:
                pdf.multi_cell(0, 4.5, self.text(note), new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())

    def _party(self, role: str, party: dict[str, Any], x: float) -> float:
        pdf = self.pdf
        self.font(9, bold=True)
        pdf.cell(88, 5, self.text(role), new_x="LEFT", new_y="NEXT")
        self.font(9)
        rows = [party.get("name"), party.get("street"),
                " ".join(str(v) for v in (party.get("postal_code"), party.get("city"))
                         if v),
                party.get("country")]
        if party.get("vat_id"):
            rows.append(f"{self.labels['vat_id']}: {party['vat_id']}")
        for row in rows:
            if row:
                pdf.set_x(x)
                pdf.cell(88, 4.5, self.text(row), new_x="LEFT", new_y="NEXT")
        y: float = pdf.get_y()
        return y

    def _table(self, widths: list[float], header: list[str], rows: list[list[str]],
               align: str) -> None:
        pdf = self.pdf
        self.font(8.5, bold=True)
        for width, name, how in zip(widths, header, align, strict=True):
            pdf.cell(width, 6, self.text(name), border="B", align="R" if how == "R" else "L")
        pdf.ln()
        self.font(8.5)
        for row in rows:
            if pdf.get_y() > 270:
                pdf.add_page()
            for width, value, how in zip(widths, row, align, strict=True):
                text = self.text(value)
                while text and pdf.get_string_width(text) > width - 1.5:
                    text = text[:-1]
                pdf.cell(width, 5.5, text, align="R" if how == "R" else "L")
            pdf.ln()
        pdf.ln(3)

    def _lines(self) -> None:
        lab = self.labels
        rows = []
        for index, line in enumerate(self.doc.get("lines") or [], start=1):
            rows.append([str(line.get("line_id") or index), str(line.get("description") or ""),
                         _plain(line.get("quantity")), str(line.get("unit") or ""),
                         _money(line.get("net_price")), _plain(line.get("vat_rate")),
                         _money(line.get("line_net_amount"))])
        self._table([10, 78, 20, 12, 22, 14, 24],
                    [lab["line"], lab["item"], lab["quantity"], lab["unit"], lab["price"],
                     lab["vat"], f"{lab['amount']} {self.currency}".strip()], rows, "LLRLRRR")

    def _vat(self) -> None:
        lab = self.labels
        rows = [[str(v.get("category") or ""), _plain(v.get("rate")),
                 _money(v.get("taxable_amount")), _money(v.get("tax_amount"))]
                for v in self.doc.get("vat_breakdown") or []]
        if rows:
            self.font(9, bold=True)
            self.pdf.cell(0, 6, self.text(lab["vat_breakdown"]), new_x="LMARGIN",
                          new_y="NEXT")
            self._table([25, 20, 40, 40], [lab["category"], lab["rate"], lab["taxable"],
                                           lab["tax"]], rows, "LRRR")

    def _totals(self) -> None:
        pdf, lab = self.pdf, self.labels
        totals = self.doc.get("totals") or {}
        shown = [("line_total", False), ("allowance_total", False), ("charge_total", False),
                 ("tax_exclusive", False), ("tax_total", False), ("tax_inclusive", True),
                 ("prepaid", False), ("payable", True)]
        names = {"allowance_total": "allowances", "charge_total": "charges"}
        for key, bold in shown:
            value = totals.get(key)
            if value in (None, ""):
                continue
            self.font(9.5, bold=bold)
            pdf.set_x(105)
            pdf.cell(55, 5.5, self.text(lab[names.get(key, key)]))
            pdf.cell(35, 5.5, self.text(f"{_money(value)} {self.currency}".strip()),
                     align="R", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)

    def _payment(self) -> None:
        pdf, lab = self.pdf, self.labels
        pay = self.doc.get("payment") or {}
        rows = [(None, pay.get("terms")), (lab["iban"], pay.get("account_id")),
                (lab["bic"], pay.get("bic")), (lab["reference"], pay.get("payment_reference"))]
        if not any(value for _, value in rows):
            return
        self.font(9, bold=True)
        pdf.cell(0, 5, self.text(lab["payment"]), new_x="LMARGIN", new_y="NEXT")
        self.font(9)
        for name, value in rows:
            if value:
                pdf.multi_cell(0, 4.5, self.text(f"{name}: {value}" if name else value),
                               new_x="LMARGIN", new_y="NEXT")


def compile_facturx_renderer(data: dict[str, Any], file: str, lines: Lines) -> FacturxMapping:
    """Compile an outbound Factur-X mapping (see the module docstring)."""
    level = str(data.get("level") or "en16931")
    if level not in _LEVELS:
        raise MappingDefinitionError(f"'level' must be one of {', '.join(_LEVELS)}",
                                     file=file, line=lines.get(("level",)))
    fonts = data.get("fonts") or []
    if not isinstance(fonts, list):
        raise MappingDefinitionError("'fonts' is a list of TrueType font files", file=file,
                                     line=lines.get(("fonts",)))
    base = Path(file).parent
    found = next((p for p in ((base / str(f)) for f in fonts) if p.is_file()), None)
    labels = data.get("labels") or {}
    if not isinstance(labels, dict):
        raise MappingDefinitionError("'labels' maps a label name to its text", file=file,
                                     line=lines.get(("labels",)))
    unknown = sorted(set(labels) - set(DEFAULT_LABELS))
    if unknown:
        raise MappingDefinitionError(f"unknown label(s) {', '.join(unknown)}", file=file,
                                     line=lines.get(("labels",)))
    return FacturxMapping(
        id=str(data["id"]), document=document_of(data, file, lines),
        aliases=aliases_of(data, file, lines), file=file,
        xml=load_template(data, file, lines), level=level, font=found,
        labels={**DEFAULT_LABELS, **{str(k): str(v) for k, v in labels.items()}})


def _conforms(mapping: FacturxMapping, body: PdfBody) -> tuple[OutboundMapping, Body]:
    """Never called: mypy checks here that the classes keep the render contract."""
    return mapping, body
