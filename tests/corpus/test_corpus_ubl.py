"""Every UBL row of the corpus through the XML reader the pipeline uses: documents or reasons.

Rows come from ``MANIFEST.tsv``: UBL in the document type, an ``.xml`` file, and a root
element (the manifest's ``auto: root``) that edigw maps: Invoice, CreditNote, Order or
Catalogue, whatever its prefix (the OASIS ``Bob:Invoice`` variants). Each goes through
``XmlReader.parse`` and ``XmlPayload.documents`` for a partner with the default profile,
exactly as ``Pipeline`` calls them, and must end in one of these outcomes:

- **mapped**: a canonical invoice, order or price list whose number, issue date, seller or
  buyer name, line count, totals and VAT breakdown count match a plain lxml reading of the
  same file (``naive_reading`` below, which shares no code with the gateway);
- **failed**: a ``FailedMessage`` at stage ``validate`` (XSD or UBL code list) or ``map``
  whose reason names a line; only the rows listed in ``EXPECTED_FAILURES`` (documents that
  really are invalid upstream, each with why) and the ``NEGATIVE`` rows may end so;
- no other exception may escape.

A ``NEGATIVE`` row is rejected for the reason its manifest label gives (``NEGATIVE_WORDS``).
``BIS3_Invoice_negativ.XML`` is not one: its notes say "negative" means negative amounts, and
it must map with them.

The other UBL documents of the corpus (OrderResponse, DespatchAdvice …) must end UNSUPPORTED
naming their root. The schematron unit-test sets (``<testSet>`` files of EN 16931 and Peppol)
are included too, but differently: the wrapper itself is not a business document (it ends
UNSUPPORTED), and the documents embedded in its tests are deliberately partial fragments
written to trigger one schematron business rule each, which edigw does not evaluate; each of
them must end mapped or failed with a positioned reason, never crash, and is counted.

The counts per outcome are printed at the end of the run by ``summary_lines``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from gateway.config import Partner
from gateway.core.ports import FailedMessage, MappedDocument
from gateway.formats.mapping import MappingSet
from gateway.formats.xml.reader import XmlReader
from gateway.formats.xml.safe import XmlError
from tests.conftest import manifest_rows, require_corpus

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]
PARTNER = Partner(id="corpus", name="Corpus partner")
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS = {"cbc": CBC, "cac": CAC}
MAPPED_ROOTS = {"Invoice", "CreditNote", "Order", "Catalogue"}

OUTCOMES: Counter[str] = Counter()

#: Positive rows that end failed, and why that is right.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    # The OASIS "trivial" instance has only UBL's mandatory elements: its line has no
    # InvoicedQuantity, which EN 16931 (BT-129) and the canonical invoice require.
    "oasis-ubl-2.1/xml/UBL-Invoice-2.1-Example-Trivial.xml": ("map", r"line 1 .* has no quantity"),
    # The Greek national examples put AdditionalDocumentReference after the customer party,
    # where the UBL 2.1 Invoice schema does not allow it: they are not valid UBL.
    "peppol-bis-invoice-3/rules/national-examples/GR/GR-base-example-correct.xml":
        ("validate", r"AdditionalDocumentReference': This element is not expected"),
    "peppol-bis-invoice-3/rules/national-examples/GR/GR-base-example-TaxRepresentative.xml":
        ("validate", r"AdditionalDocumentReference': This element is not expected"),
}

#: What a NEGATIVE row's rejection must say, found from its manifest document type.
NEGATIVE_WORDS: list[tuple[str, str, str]] = [
    (r"XSD-invalid", "validate", r"not valid against UBL-Order-2\.1\.xsd: line \d+: "
                                 r"Element '\{ubl:CommonBasicComponents-2\}ChannelCod'"),
    (r"code-list-invalid", "validate", r"ChannelCode 'LA' is not in the UBL 2\.1 ChannelCode "
                                       r"code list"),
]


def _root_of(row: dict[str, str]) -> str | None:
    found = re.search(r"auto: root (\S+)", row["notes"])
    return found.group(1).split(":")[-1] if found else None


def _is_ubl_document(row: dict[str, str]) -> bool:
    kind = row["document_type"]
    return ("UBL" in kind and row["local_path"].lower().endswith(".xml")
            and not re.search(r"^XSD:|^Genericode|^Schematron:|schematron unit test|signature",
                              kind))


ALL_ROWS = manifest_rows()
ROWS = [r for r in ALL_ROWS if _is_ubl_document(r) and _root_of(r) in MAPPED_ROOTS]
OTHER_ROWS = [r for r in ALL_ROWS if _is_ubl_document(r) and _root_of(r) not in MAPPED_ROOTS
              and not r["document_type"].startswith("Factur-X")]
TESTSET_ROWS = [r for r in ALL_ROWS if "schematron unit test set" in r["document_type"]]


@pytest.fixture(scope="module")
def reader() -> XmlReader:
    return XmlReader(MappingSet.load(REPO / "mappings"))


def naive_reading(data: bytes) -> dict[str, object]:
    """Key fields read with plain lxml ElementPath, as a person would check them."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    name = etree.QName(root).localname

    def text(node: etree._Element | None, path: str) -> str | None:
        found = node.findtext(path, namespaces=NS) if node is not None else None
        return found.strip() if found and found.strip() else None

    def names(path: str) -> set[str]:
        party = root.find(path, NS)
        return {t for t in (text(party, "cac:PartyLegalEntity/cbc:RegistrationName"),
                            text(party, "cac:PartyName/cbc:Name")) if t}

    line_path = {"Invoice": "cac:InvoiceLine", "CreditNote": "cac:CreditNoteLine",
                 "Order": "cac:OrderLine/cac:LineItem", "Catalogue": "cac:CatalogueLine"}[name]
    sender = {"Invoice": "cac:AccountingSupplierParty/cac:Party",
              "CreditNote": "cac:AccountingSupplierParty/cac:Party",
              "Order": "cac:BuyerCustomerParty/cac:Party",
              "Catalogue": "cac:ProviderParty"}[name]
    totals = root.find("cac:LegalMonetaryTotal", NS)
    return {
        "root": name, "number": text(root, "cbc:ID"), "issue_date": text(root, "cbc:IssueDate"),
        "lines": len(root.findall(line_path, NS)), "sender_names": names(sender),
        "payable": text(totals, "cbc:PayableAmount"),
        "tax_exclusive": text(totals, "cbc:TaxExclusiveAmount"),
        "vat_subtotals": len(root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)),
    }


def _check_document(result: MappedDocument, naive: dict[str, object], path: str) -> None:
    doc = result.document
    assert result.business_number == naive["number"], path
    assert doc.issue_date.isoformat()[:10] == naive["issue_date"], path
    if naive["root"] in ("Invoice", "CreditNote"):
        assert doc.invoice_type == "381" or naive["root"] == "Invoice", path
        assert len(doc.lines) == naive["lines"], path
        seller = doc.parties.seller
        assert naive["sender_names"] == set() or (seller and seller.name in naive["sender_names"])
        payable = doc.totals.payable
        assert (str(payable) if payable is not None else None) == naive["payable"], path
        tax_exclusive = doc.totals.tax_exclusive
        assert (str(tax_exclusive) if tax_exclusive is not None else None) == \
            naive["tax_exclusive"], path
        assert len(doc.vat_breakdown) == naive["vat_subtotals"], path
    elif naive["root"] == "Order":
        assert len(doc.lines) == naive["lines"], path
        buyer = doc.parties.buyer
        assert naive["sender_names"] == set() or (buyer and buyer.name in naive["sender_names"])
    else:
        assert len(doc.items) == naive["lines"], path
    OUTCOMES["(documents checked against a plain lxml reading)"] += 1


@pytest.mark.parametrize("row", ROWS or [None], ids=lambda r: r["local_path"] if r else "none")
def test_ubl_row_maps_to_matching_documents_or_fails_for_its_reason(row, reader):
    """Each UBL invoice, credit note, order or catalogue ends mapped (key fields equal to a
    plain reading) or, when listed or NEGATIVE, failed for the reason expected."""
    folder = require_corpus()
    if row is None:
        pytest.fail("the manifest lists no UBL invoice, credit note, order or catalogue")
    path = row["local_path"]
    data = (folder / path).read_bytes()
    try:
        payload = reader.parse(data, filename=path)
        results = payload.documents(partner=PARTNER, transmission_id=None, filename=path)
    except XmlError as exc:
        pytest.fail(f"{path}: refused at parse: {exc}")
    except Exception as exc:  # the point: nothing else escapes
        pytest.fail(f"{path}: {type(exc).__name__} escaped the reader: {exc}")
    assert len(results) == 1
    result = results[0]
    label = f"{row['document_type']} {row['notes']}"
    negative = row["document_type"].startswith("NEGATIVE")
    wanted = [(stage, words) for pattern, stage, words in NEGATIVE_WORDS
              if re.search(pattern, label)] if negative else []
    if path in EXPECTED_FAILURES:
        wanted.append(EXPECTED_FAILURES[path])
    if isinstance(result, FailedMessage):
        OUTCOMES[f"{result.doc_type or 'document'} failed at {result.stage}"] += 1
        assert wanted, f"{path} failed: {result.reason}"
        assert result.status == "FAILED" and re.search(r"\bline \d+", result.reason)
        assert any(stage == result.stage and re.search(words, result.reason)
                   for stage, words in wanted), f"{path}: {result.reason}"
        assert result.business_number == naive_reading(data)["number"]
        return
    assert not wanted, f"{path} should have failed ({wanted}) but mapped"
    OUTCOMES[f"{result.doc_type} mapped"] += 1
    if payload.senders:
        OUTCOMES["(sender identified by GLN, SIREN, SIRET, VAT or e-mail)"] += 1
    _check_document(result, naive_reading(data), path)


def test_the_negative_amounts_invoice_maps_with_its_negative_amounts(reader):
    """BIS3_Invoice_negativ.XML is a valid invoice whose amounts are all negative."""
    folder = require_corpus()
    data = (folder / "en16931/ubl/examples/BIS3_Invoice_negativ.XML").read_bytes()
    payload = reader.parse(data, filename="BIS3_Invoice_negativ.XML")
    result = payload.documents(partner=PARTNER, transmission_id=None, filename=None)[0]
    assert isinstance(result, MappedDocument)
    assert result.document.totals.payable < 0
    assert all(line.quantity < 0 for line in result.document.lines)


@pytest.mark.parametrize("row", OTHER_ROWS or [None],
                         ids=lambda r: r["local_path"] if r else "none")
def test_other_ubl_documents_are_unsupported_by_name(row, reader):
    """An OrderResponse, DespatchAdvice … is recorded UNSUPPORTED naming its root."""
    folder = require_corpus()
    if row is None:
        pytest.skip("no other UBL document in the manifest")
    path = row["local_path"]
    payload = reader.parse((folder / path).read_bytes(), filename=path)
    result = payload.documents(partner=PARTNER, transmission_id=None, filename=path)[0]
    assert isinstance(result, FailedMessage) and result.status == "UNSUPPORTED"
    assert payload.kind.root in result.reason
    OUTCOMES["other UBL document unsupported"] += 1


@pytest.mark.parametrize("row", TESTSET_ROWS or [None],
                         ids=lambda r: r["local_path"] if r else "none")
def test_schematron_test_sets_and_their_fragments_never_crash(row, reader):
    """The wrapper is unsupported XML; each embedded fragment ends mapped or positioned."""
    folder = require_corpus()
    if row is None:
        pytest.skip("no schematron test set in the manifest")
    path = row["local_path"]
    data = (folder / path).read_bytes()
    wrapper = reader.parse(data, filename=path)
    result = wrapper.documents(partner=PARTNER, transmission_id=None, filename=path)[0]
    assert result.status == "UNSUPPORTED" and "testSet" in result.reason
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    for test in root:
        for fragment in test:
            if not isinstance(fragment.tag, str) or etree.QName(fragment).localname in (
                    "assert", "description", "scope"):
                continue
            try:
                payload = reader.parse(etree.tostring(fragment), filename=path)
                outcome = payload.documents(partner=PARTNER, transmission_id=None,
                                            filename=path)[0]
            except XmlError as exc:
                pytest.fail(f"{path}: a fragment was refused at parse: {exc}")
            except Exception as exc:
                pytest.fail(f"{path}: {type(exc).__name__} escaped the reader: {exc}")
            if isinstance(outcome, FailedMessage):
                if outcome.status == "FAILED":
                    assert re.search(r"\bline \d+", outcome.reason), outcome.reason
                OUTCOMES[f"test-set fragment {outcome.status.lower()} at {outcome.stage}"] += 1
            else:
                OUTCOMES["test-set fragment mapped"] += 1


def summary_lines() -> list[str]:
    """The counts per outcome, for the terminal summary (empty when the tests did not run)."""
    if not OUTCOMES:
        return []
    lines = [f"{len(ROWS)} UBL invoice, credit note, order and catalogue rows, "
             f"{len(OTHER_ROWS)} other UBL documents, {len(TESTSET_ROWS)} schematron test sets"]
    lines += [f"  {kind:<58} {n:>5}" for kind, n in sorted(OUTCOMES.items())]
    return lines
