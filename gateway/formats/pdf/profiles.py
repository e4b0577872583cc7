"""Which Factur-X / ZUGFeRD / Order-X profile a CII document declares.

The profile is the guideline id of the document context (CII BT-24,
``ExchangedDocumentContext/GuidelineSpecifiedDocumentContextParameter/ID``; ZUGFeRD 1.0
``SpecifiedExchangedDocumentContext``). The ids are those of the Factur-X 1.0 / ZUGFeRD 2.x
specification, Order-X 1.0, ZUGFeRD 1.0 and XRechnung.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    """A document's family (``Factur-X``, ``Order-X``, ``ZUGFeRD 1.0``) and profile."""

    family: str
    name: str
    guideline: str | None

    @property
    def standard(self) -> str:
        """What ``Source.standard`` says: ``Factur-X EN 16931``."""
        return f"{self.family} {self.name}"


# Checked in this order; the first pattern found in the guideline id wins. Factur-X BASIC
# and EXTENDED ids start with the EN 16931 id, so they come before the bare EN 16931 one.
_PATTERNS: list[tuple[str, str, str]] = [
    (r"urn:factur-x\.eu:1p0:minimum$", "Factur-X", "MINIMUM"),
    (r"urn:factur-x\.eu:1p0:basicwl$", "Factur-X", "BASIC WL"),
    (r"urn:factur-x\.eu:1p0:basic$", "Factur-X", "BASIC"),
    (r"urn:factur-x\.eu:1p0:extended$", "Factur-X", "EXTENDED"),
    (r"urn\.cpro\.gouv\.fr:1p0:extended-ctc-fr$", "Factur-X", "EXTENDED-CTC-FR"),
    (r"xrechnung", "Factur-X", "XRECHNUNG"),
    (r"^urn:order-x\.eu:1p0:(basic|comfort|extended)$", "Order-X", ""),
    (r"^urn:ferd:CrossIndustryDocument:invoice:1p0:(basic|comfort|extended)$",
     "ZUGFeRD 1.0", ""),
    (r"^urn:cen\.eu:en16931:2017$", "Factur-X", "EN 16931"),
]


def profile_of(guideline: str | None, *, root: str | None = None) -> Profile | None:
    """The profile a guideline id names, or None for an id that is not a Factur-X,
    ZUGFeRD or Order-X one. ``root`` (the root element's local name) tells an Order-X
    document from an invoice when the id alone does not."""
    text = (guideline or "").strip()
    for pattern, family, name in _PATTERNS:
        found = re.search(pattern, text, flags=re.IGNORECASE)
        if found:
            if not name:
                name = found.group(1).upper()
            return Profile(family, name, text)
    if root == "SCRDMCCBDACIOMessageStructure":
        return Profile("Order-X", "BASIC", text or None)
    return None
