"""Which XML standard a document follows, from its root element, namespace and profile ids.

UBL names the document by its root and namespace (``Invoice`` in
``urn:oasis:names:specification:ubl:schema:xsd:Invoice-2``) and the rules it follows by
``cbc:CustomizationID`` and ``cbc:ProfileID`` (Peppol BIS, EN 16931 CIUS). CII and Order-X
put the same in ``ExchangedDocumentContext``: the guideline (Factur-X, ZUGFeRD, XRechnung
profile) and the business process. Anything else is plain XML that only a partner's own
mapping can read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

UBL_PREFIX = "urn:oasis:names:specification:ubl:schema:xsd:"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CII = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
ORDER_X = "urn:un:unece:uncefact:data:SCRDMCCBDACIOMessageStructure:100"
ZUGFERD_1 = "urn:ferd:CrossIndustryDocument:invoice:1p0"

#: Canonical document type of each UBL root edigw maps.
UBL_DOCUMENTS = {"Invoice": "invoice", "CreditNote": "invoice", "Order": "order",
                 "Catalogue": "price-list"}

# Profiles by a part of their customization (guideline) id, most specific first.
_PROFILES: tuple[tuple[str, str], ...] = (
    ("urn:fdc:peppol.eu:2017:poacc:billing:3.0", "Peppol BIS Billing 3.0"),
    ("urn:fdc:peppol.eu:poacc:trns:order:3", "Peppol BIS Ordering 3"),
    ("urn:fdc:peppol.eu:poacc:trns:catalogue:3", "Peppol BIS Catalogue 3"),
    ("urn:fdc:peppol.eu:poacc:trns:punch_out:3", "Peppol BIS Punch Out 3"),
    ("urn:xeinkauf.de:kosit:xrechnung", "XRechnung"),
    ("urn:cen.eu:en16931:2017", "EN 16931"),
    ("urn:www.cenbii.eu:transaction", "CEN BII"),
)
# Factur-X / ZUGFeRD 2 guideline ids (Factur-X 1.0 specification, table of profiles).
_FACTURX = (
    ("urn:factur-x.eu:1p0:minimum", "MINIMUM"),
    ("urn:factur-x.eu:1p0:basicwl", "BASIC WL"),
    ("urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic", "BASIC"),
    ("urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended", "EXTENDED"),
    ("urn:cen.eu:en16931:2017#conformant#urn:zugferd.de:2p0:extended", "EXTENDED"),
    ("urn:cen.eu:en16931:2017", "EN16931"),
)
_ORDER_X = re.compile(r"urn:order-x\.eu:1p0:(\w+)")
_ZUGFERD_1 = re.compile(r"urn:ferd:CrossIndustryDocument:invoice:1p0:(\w+)")


@dataclass(frozen=True, slots=True)
class XmlKind:
    """What an XML document is.

    ``kind`` is ``ubl`` (any UBL 2.x document), ``cii`` (CrossIndustryInvoice, Factur-X,
    ZUGFeRD 2), ``order-x``, ``zugferd-1`` or ``xml`` (anything else). ``doc_type`` is the
    canonical type when edigw maps this document, else None. ``schema`` names the XSD in
    ``gateway.formats.xml.schemas`` it is validated against (None: not validated).
    """

    kind: str
    root: str
    namespace: str | None
    doc_type: str | None
    standard: str
    version: str | None = None
    customization: str | None = None
    profile: str | None = None
    schema: str | None = None

    def describe(self) -> str:
        """``UBL 2.1 Invoice (Peppol BIS Billing 3.0)``, ``XML message``."""
        if self.kind == "ubl":
            base = f"UBL {self.version or '2.1'} {self.root}"
            return base + (f" ({self.standard})" if self.standard != "UBL" else "")
        if self.kind == "xml":
            where = f" in namespace {self.namespace}" if self.namespace else " (no namespace)"
            return f"XML document {self.root}{where}"
        return f"{self.standard} {self.root}"

    def unsupported_reason(self) -> str:
        """Why edigw cannot map this document without a partner mapping."""
        if self.kind == "xml":
            return (f"unsupported XML document {self.root} in namespace "
                    f"{self.namespace or '(none)'}: no mapping under mappings/ claims it "
                    "(a partner XML mapping with a matching 'match' would)")
        if self.kind == "ubl" and self.doc_type is None:
            return (f"unsupported UBL document {self.root}: edigw maps UBL "
                    f"{', '.join(UBL_DOCUMENTS)}")
        return f"unsupported {self.describe()}: no mapping under mappings/ claims it"


def _text(root: etree._Element, path: str, namespaces: dict[str, str]) -> str | None:
    found = root.find(path, namespaces)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _profile_name(customization: str | None) -> str | None:
    if not customization:
        return None
    for marker, name in _PROFILES:  # "urn:cen.eu:en16931:2017#compliant#<peppol id>"
        if marker in customization:
            return name
    return None


def detect(root: etree._Element) -> XmlKind:
    """The kind of the document whose root element is ``root`` (never raises)."""
    qname = etree.QName(root)
    name, ns = qname.localname, qname.namespace
    if ns and ns.startswith(UBL_PREFIX) and ns == f"{UBL_PREFIX}{name}-2":
        return _ubl(root, name, ns)
    if ns == CII and name == "CrossIndustryInvoice":
        return _cii(root, name, ns)
    if ns == ORDER_X and name == "SCRDMCCBDACIOMessageStructure":
        return _order_x(root, name, ns)
    if ns == ZUGFERD_1 and name == "CrossIndustryDocument":
        guideline = _guideline(root, ns)
        found = _ZUGFERD_1.search(guideline or "")
        profile = found.group(1).upper() if found else None
        return XmlKind("zugferd-1", name, ns, None,
                       f"ZUGFeRD 1.0 {profile}" if profile else "ZUGFeRD 1.0", "1.0",
                       guideline, None, "zugferd-1")
    return XmlKind("xml", name, ns, None, "XML")


def _ubl(root: etree._Element, name: str, ns: str) -> XmlKind:
    cbc = {"cbc": CBC}
    customization = _text(root, "cbc:CustomizationID", cbc)
    profile = _text(root, "cbc:ProfileID", cbc)
    version = _text(root, "cbc:UBLVersionID", cbc) or "2.1"
    standard = _profile_name(customization) or "UBL"
    # Every UBL 2.0 and 2.1 document is valid against the 2.1 schemas (2.1 only added).
    return XmlKind("ubl", name, ns, UBL_DOCUMENTS.get(name), standard, version,
                   customization, profile, f"ubl-2.1:{name}")


def _guideline(root: etree._Element, ns: str) -> str | None:
    # The context's guideline id, whatever prefix the document gives the ram namespace.
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        if local == "GuidelineSpecifiedDocumentContextParameter":
            for child in element:
                if isinstance(child.tag, str) and etree.QName(child).localname == "ID":
                    return (child.text or "").strip() or None
        if local in ("ExchangedDocument", "HeaderExchangedDocument"):
            break
    return None


def _business_process(root: etree._Element) -> str | None:
    for element in root.iter():
        if (isinstance(element.tag, str) and etree.QName(element).localname
                == "BusinessProcessSpecifiedDocumentContextParameter"):
            for child in element:
                if isinstance(child.tag, str) and etree.QName(child).localname == "ID":
                    return (child.text or "").strip() or None
        if isinstance(element.tag, str) and etree.QName(element).localname == "ExchangedDocument":
            break
    return None


def _cii(root: etree._Element, name: str, ns: str) -> XmlKind:
    guideline = _guideline(root, ns)
    standard, schema = "CII D16B", "cii-d16b"
    if guideline and "xrechnung" in guideline:
        standard = "XRechnung CII"
    elif guideline == "urn:cen.eu:en16931:2017":
        # Also the Factur-X EN16931 profile's id: the container (a PDF) tells them apart.
        standard = "CII D16B (EN 16931)"
    elif guideline:
        for prefix, label in _FACTURX:
            if guideline.startswith(prefix):
                standard = f"Factur-X {label}"
                schema = "factur-x:" + label.lower().replace(" ", "")
                break
    return XmlKind("cii", name, ns, "invoice", standard, "D16B", guideline,
                   _business_process(root), schema)


def _order_x(root: etree._Element, name: str, ns: str) -> XmlKind:
    guideline = _guideline(root, ns)
    found = _ORDER_X.search(guideline or "")
    profile = found.group(1).upper() if found else None
    standard = f"Order-X {profile}" if profile else "Order-X"
    schema = f"order-x:{profile.lower()}" if profile else "order-x:extended"
    return XmlKind("order-x", name, ns, "order", standard, "D20B", guideline,
                   _business_process(root), schema)
