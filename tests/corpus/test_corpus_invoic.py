"""Every EDIFACT INVOIC file of the shared corpus, read and mapped, checked against its source.

Rows are chosen from ``MANIFEST.tsv`` by ``document_type`` (it names INVOIC and EDIFACT or
EANCOM, and is not an XML rendering), so a new row is tested without a code change. What each
invoice must match (number, line count, line amounts, VAT breakdown entries, payable and
total amounts) is computed from the file with plain string splits, not with edigw's reader.

Policies (decided here, on purpose):
- INVOIC D97A maps through ``un-invoic-d97a`` and D03B through ``un-invoic-d03b`` (overlays
  of the EANCOM D96A and D01B rules). The two D97A files state the invoice date
  ``DTM+137:199910060000:102``: twelve digits under format 102 (CCYYMMDD) is not a date, so
  the message fails at map naming the DTM (KNOWN_REJECTIONS).
- bots' ``demo_xml_envelope/edifact/invoic01.edi`` sends the same message twice under the
  same reference (111425): the first maps, the second is rejected as a duplicate message
  reference.
- rsedi's ``valid_invoic_d96a_full`` and ``_minimal`` have no UNS (mandatory in INVOIC):
  without it nothing tells the MOA+86 after the last line from a line amount, so they map
  with no totals (WITHOUT_SUMMARY); every other file must give a total.
- An EN 16931 example that carries a UNO/UNP object package after UNT (EXAMPLE2, EXAMPLE5)
  is read without the package; should the reader reject the package instead, the test
  xfails naming it.
- A NEGATIVE row fails for the reason its label gives, whether the reader raises, keeps the
  error on the interchange or message (``error``), or the mapping rejects the message.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.errors import EdifactSyntaxError, MappingError
from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping import MappingSet, map_message
from tests.conftest import manifest_rows, require_corpus

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]

_BAD_DATE = "'199910060000' is not a date in format 102"
#: Positive-labelled rows with messages edigw rejects on purpose: message number (from 0)
#: -> the reason it gives.
KNOWN_REJECTIONS = {
    "pydifact/tests/data/invoice1.edi": {0: _BAD_DATE},
    "pydifact/tests/data/invoice_with_colon_at_end.edi": {0: _BAD_DATE},
    "bots-plugins/demo/xml_enveloping/botssys/infile/demo_xml_envelope/edifact/invoic01.edi":
        {1: "message reference '111425' is used twice"},
}
#: Positive rows without UNS: no summary section, so no totals.
WITHOUT_SUMMARY = {
    "rsedi/testdata/edi/valid_invoic_d96a_full.edi",
    "rsedi/testdata/edi/valid_invoic_d96a_minimal.edi",
}
#: What a NEGATIVE row's label says is wrong -> a text its rejection reason must contain.
NEGATIVE_REASONS = {"UNT count": "UNT segment count", "missing_bgm": "BGM",
                    "missing_element": "BGM"}

_INVOIC = re.compile(r"invoic(?!e)", re.IGNORECASE)  # INVOIC, invoic_d96a; not "invoice"


@dataclass(frozen=True)
class Row:
    path: str
    document_type: str

    def __str__(self) -> str:
        return self.path


def _is_edifact_invoic(document_type: str) -> bool:
    return (bool(_INVOIC.search(document_type)) and "XML" not in document_type.upper()
            and ("EDIFACT" in document_type or "EANCOM" in document_type))


ROWS = [Row(r["local_path"], r["document_type"]) for r in manifest_rows()
        if _is_edifact_invoic(r["document_type"])]
NEGATIVE = [r for r in ROWS if r.document_type.startswith("NEGATIVE")]
EDGE = [r for r in ROWS if r.document_type.startswith("Edge")]
POSITIVE = [r for r in ROWS if r not in NEGATIVE and r not in EDGE]


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet.load(REPO / "mappings")


def test_corpus_is_present_and_has_invoic_rows():
    """The manifest lists INVOIC rows of each kind."""
    require_corpus()
    assert POSITIVE and NEGATIVE and EDGE
    assert {"D96A", "D14B", "D97A", "D03B"} <= {
        v for r in POSITIVE for v in re.findall(r"D\d\d[AB]", r.document_type)}


# -- an independent reading of the source, with plain splits (no edigw code) ---------------

def _plain_messages(data: bytes) -> list[list[list[list[str]]]]:
    """Messages (UNH to UNT) as segments of elements of components, the release character
    honoured; a character-by-character split, nothing shared with edigw's tokenizer."""
    text = data.decode("latin-1").lstrip("\ufeff\r\n ")
    comp, elem, release, term = ":", "+", "?", "'"
    if text.startswith("UNA"):
        comp, elem, release, term = text[3], text[4], text[6], text[8]
        text = text[9:]
    segments: list[list[list[str]]] = []
    seg: list[list[str]] = [[""]]
    escaped = False
    for char in text:
        if escaped:
            seg[-1][-1] += char
            escaped = False
        elif char == release:
            escaped = True
        elif char == term:
            segments.append(seg)
            seg = [[""]]
        elif char == elem:
            seg.append([""])
        elif char == comp:
            seg[-1].append("")
        elif char not in "\r\n" or seg != [[""]]:
            seg[-1][-1] += char
    messages, current = [], None
    for seg in segments:
        tag = seg[0][0].strip()
        if tag == "UNH":
            current = []
        if current is not None:
            current.append(seg)
        if tag == "UNT" and current is not None:
            messages.append(current)
            current = None
    return messages


def _tag(seg: list[list[str]]) -> str:
    return seg[0][0].strip()


def _amount(value: str) -> Decimal:
    return Decimal(value.replace(",", "."))


def _line_amounts(message: list[list[list[str]]]) -> list[Decimal | None]:
    """Per LIN, its first MOA 203 (line item amount) before the next LIN or the UNS."""
    amounts: list[Decimal | None] = []
    for seg in message:
        tag = _tag(seg)
        if tag == "LIN":
            amounts.append(None)
        elif tag == "UNS":
            break
        elif tag == "MOA" and amounts and amounts[-1] is None and seg[1][0] == "203":
            amounts[-1] = _amount(seg[1][1])
    return amounts


def _summary(message: list[list[list[str]]]) -> list[list[list[str]]]:
    tags = [_tag(seg) for seg in message]
    return message[tags.index("UNS"):] if "UNS" in tags else []


def _expected_totals(message: list[list[list[str]]]) -> tuple[Decimal | None, Decimal | None]:
    """(payable, total with VAT) from the MOA after UNS: 9, then the first of 388, 77, 86."""
    found: dict[str, Decimal] = {}
    for seg in _summary(message):
        if _tag(seg) == "MOA":
            found.setdefault(seg[1][0], _amount(seg[1][1]))
    total = next((found[q] for q in ("388", "77", "86") if q in found), None)
    return found.get("9"), total


def _outcomes(data: bytes, path: str, mappings: MappingSet) -> list:
    """Per message, its invoice or the error that rejected it; an error of the whole file or
    interchange is raised."""
    outcomes: list = []
    for interchange in read_interchanges(data, filename=path):
        if interchange.error is not None:
            raise interchange.error
        for message in interchange.messages:
            if getattr(message, "error", None) is not None:
                outcomes.append(message.error)
                continue
            try:
                outcomes.append(map_message(mappings.find(message), interchange, message,
                                            partner_id="corpus", filename=path).document)
            except (EdifactSyntaxError, MappingError) as exc:
                outcomes.append(exc)
    return outcomes


def _map_all(data: bytes, path: str, mappings: MappingSet) -> list:
    """The invoices of every message; the first rejection is raised."""
    outcomes = _outcomes(data, path, mappings)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    return outcomes


@pytest.mark.parametrize("row", POSITIVE, ids=str)
def test_positive_invoic_file_maps_every_message(row, mappings):
    """Each UNH becomes one invoice whose number, lines, line amounts, VAT breakdown and
    totals match the source (or is rejected for the reason KNOWN_REJECTIONS gives)."""
    folder = require_corpus()
    data = (folder / row.path).read_bytes()
    try:
        outcomes = _outcomes(data, row.path, mappings)
    except EdifactSyntaxError as exc:
        if "UNO" in exc.reason and b"UNO+" in data:
            pytest.xfail(f"the reader rejects the UNO/UNP object package: {exc.reason}")
        raise
    plain = _plain_messages(data)
    assert len(outcomes) == len(plain) > 0
    rejected = KNOWN_REJECTIONS.get(row.path, {})
    for number, (outcome, message) in enumerate(zip(outcomes, plain, strict=True)):
        if number in rejected:
            assert isinstance(outcome, (EdifactSyntaxError, MappingError)), outcome
            assert rejected[number] in outcome.reason and outcome.position is not None
            continue
        if isinstance(outcome, Exception):
            raise outcome
        invoice = outcome
        bgm = next(seg for seg in message if _tag(seg) == "BGM")
        assert invoice.invoice_number == bgm[2][0]
        assert invoice.source.message_ref == message[0][1][0]
        assert [line.line_net_amount for line in invoice.lines] == _line_amounts(message)
        summary = _summary(message)
        assert len(invoice.vat_breakdown) == sum(1 for seg in summary if _tag(seg) == "TAX")
        payable, total = _expected_totals(message)
        assert (invoice.totals.payable, invoice.totals.tax_inclusive) == (payable, total)
        if row.path in WITHOUT_SUMMARY:
            assert not summary and invoice.totals.model_dump(exclude_none=True) == {}
        else:
            assert payable is not None or total is not None


@pytest.mark.parametrize("row", NEGATIVE, ids=str)
def test_negative_invoic_file_fails_with_its_reason(row, mappings):
    """A NEGATIVE row fails with EdifactSyntaxError or MappingError naming a position and the
    fault its label gives; never with another exception."""
    folder = require_corpus()
    data = (folder / row.path).read_bytes()
    with pytest.raises((EdifactSyntaxError, MappingError)) as info:
        _map_all(data, row.path, mappings)
    error = info.value
    assert error.reason and error.position is not None
    wanted = [text for key, text in NEGATIVE_REASONS.items()
              if key in row.document_type or key in row.path]
    assert wanted, f"no expected reason is known for {row.document_type!r}"
    assert any(text in error.reason for text in wanted), error.reason
    if "UNT segment count" in wanted:
        assert error.code == "29"


@pytest.mark.parametrize("row", EDGE, ids=str)
def test_edge_invoic_file_maps_or_fails_with_a_position(row, mappings):
    """An edge row (a bare message body …) never crashes: it maps, or fails with a position."""
    folder = require_corpus()
    data = (folder / row.path).read_bytes()
    try:
        invoices = _map_all(data, row.path, mappings)
    except (EdifactSyntaxError, MappingError) as exc:
        assert exc.reason and exc.position is not None
    else:
        assert all(invoice.invoice_number for invoice in invoices)


def test_invoic_corpus_summary(mappings, capsys):
    """Counts per outcome over every INVOIC row, printed with the test run; no row crashes."""
    folder = require_corpus()
    outcomes: Counter[str] = Counter()
    for row in ROWS:
        data = (folder / row.path).read_bytes()
        try:
            for outcome in _outcomes(data, row.path, mappings):
                outcomes["message rejected" if isinstance(outcome, Exception)
                         else "invoice mapped"] += 1
        except (EdifactSyntaxError, MappingError):
            outcomes["file or interchange rejected"] += 1
    with capsys.disabled():
        print(f"\nINVOIC corpus, {len(ROWS)} files: "
              + ", ".join(f"{what} {n}" for what, n in sorted(outcomes.items())))
    rejections = sum(len(r) for r in KNOWN_REJECTIONS.values())
    assert outcomes["message rejected"] >= rejections
    assert outcomes["invoice mapped"] >= len(POSITIVE) - rejections
