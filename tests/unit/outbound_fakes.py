"""Outbound mappings for tests of the ways in (CLI, API, bus) that do not depend on a real
renderer: the ``edifact`` syntax writes a line of text (with the control reference), the
``pdf`` syntax bytes that are not UTF-8 (as a PDF's are). ``install`` puts both in place of
the real renderers and writes their mapping files under a mappings root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.formats.render import RENDERERS, RenderContext, RenderError

BINARY_HEAD = b"%PDF-1.7\n\x00\xff\xfe binary"


@dataclass
class Body:
    data: bytes
    content_type: str
    uses_ref: bool
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return (f"REF {control_ref}\n".encode() if self.uses_ref else b"") + self.data


@dataclass
class Mapping:
    id: str
    document: str
    syntax: str
    aliases: tuple[str, ...]
    uses_control_ref: bool
    file: str
    suffix: str

    def render(self, document: dict[str, Any], ctx: RenderContext) -> Body:
        number = str(document.get("invoice_number") or document.get("order_number")
                     or document.get("price_list_number"))
        if number == "BAD":
            raise RenderError("cannot render BAD", mapping=self.id, path="invoice_number")
        if self.syntax == "pdf":
            return Body(BINARY_HEAD + number.encode(), "application/pdf", False)
        return Body(f"{self.document.upper()} {number} for {ctx.recipient_id}".encode(),
                    "application/EDIFACT", True)


def compile_mapping(data: dict[str, Any], file: str, lines: Any) -> Mapping:
    binary = data["syntax"] == "pdf"
    return Mapping(id=data["id"], document=data["document"], syntax=data["syntax"],
                   aliases=tuple(data.get("aliases", ())), uses_control_ref=not binary,
                   file=file, suffix=".pdf" if binary else ".edi")


MAPPINGS = {
    "plain-invoice.yaml": "id: plain-invoice\nsyntax: edifact\ndocument: invoice\n"
                          "aliases: [edifact]\n",
    "binary-invoice.yaml": "id: binary-invoice\nsyntax: pdf\ndocument: invoice\n"
                           "aliases: [factur-x]\n",
    "plain-pricelist.yaml": "id: plain-pricelist\nsyntax: edifact\ndocument: price-list\n"
                            "aliases: [edifact]\n",
}


def install(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Register the fake syntaxes and write their mappings under ``root/outbound``."""
    for syntax in ("edifact", "pdf"):
        monkeypatch.setitem(RENDERERS, syntax, "tests.unit.outbound_fakes:compile_mapping")
    folder = root / "outbound"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in MAPPINGS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return root


def invoice(number: str = "INV-1", **extra: Any) -> dict[str, Any]:
    return {"schema": "edigw.invoice/1", "invoice_number": number, "currency": "EUR",
            "lines": [{"quantity": "2", "line_net_amount": "10.00"}],
            "totals": {"tax_exclusive": "10.00", "tax_inclusive": "12.00"}, **extra}


def price_list(number: str = "PL-1") -> dict[str, Any]:
    return {"schema": "edigw.price-list/1", "price_list_number": number, "currency": "EUR",
            "items": [{"line_number": "1", "gtin": "4012345678901",
                       "prices": [{"amount": "1.50", "type": "AAA"}]}]}
