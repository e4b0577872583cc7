"""Every EDIFACT message of the shared corpus, validated against its UN/EDIFACT directory.

Rows are chosen from ``MANIFEST.tsv`` by ``document_type``, so a new row is tested without
a code change:

- positive rows (EDIFACT or EANCOM files not labelled NEGATIVE): each message whose
  directory and type are tabled validates without error, unless the file is in
  ``KNOWN_VIOLATIONS`` with the rule it breaks (then it must break exactly that rule);
  messages of untabled directories (MEDRPT 1:901, IATA PAORES, the synthetic S:93A MSG1)
  are reported unchecked by ``is_known``;
- NEGATIVE rows whose note names a message-level fault: each yields the error its note
  gives (``EXPECTED_REJECTIONS``); every other NEGATIVE row still validates without
  crashing.

Rows labelled EANCOM but without the association code in UNH (the rsedi fixtures) are
checked with ``subset="EANCOM"``, as a partner profile saying "EANCOM" would.

The reader is read with ``read_interchanges``; message-level envelope faults (a wrong UNT
count) are stored on ``Message.error`` by the reader, or raised by older readers: then the
messages are rebuilt from the tokenizer so that their structure is still checked.
"""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import Message, Source, read_interchanges
from gateway.formats.edifact.charset import decode
from gateway.formats.edifact.structure import is_known, validate_message
from gateway.formats.edifact.tokenizer import tokenize
from tests.conftest import manifest_rows, require_corpus

pytestmark = pytest.mark.corpus

#: Positive-labelled files that break a UN/EDIFACT rule: path -> (0085 code, reason part)
#: of an error they must give. Each entry says why, so a fix upstream shows up as a failure.
KNOWN_VIOLATIONS: dict[str, tuple[str, str]] = {
    # bots demo data: DTM+7:199708301200:102 (time given under CCYYMMDD), 2379 code '84'.
    "bots-plugins/demo/one-on-one_edifact_order_xml/botssys/infile/edifactorder2xml/edi/"
    "orders02.edi": ("12", "'199708301200' is not a valid value for format 102"),
    # pydifact: DTM+137:199910060000:102 (twelve digits under CCYYMMDD).
    "pydifact/tests/data/invoice1.edi": ("12", "is not a valid value for format 102"),
    "pydifact/tests/data/invoice_with_colon_at_end.edi":
        ("12", "is not a valid value for format 102"),
    # smooks RECADV: a released apostrophe makes NAD C080 3036 38 characters (an..35).
    "smooks-edi-cartridge/edg/src/test/resources/recadv/recadv.txt":
        ("39", "NAD/C080/3036"),
    # rsedi fixtures labelled valid: UN D96A ORDERS, ORDRSP and INVOIC require UNS ...
    "rsedi/testdata/edi/orders_valid.edi": ("13", "mandatory segment UNS is missing"),
    "rsedi/testdata/edi/valid_orders_d96a_minimal.edi":
        ("13", "mandatory segment UNS is missing"),
    "rsedi/testdata/edi/valid_ordrsp_d96a_minimal.edi":
        ("13", "mandatory segment UNS is missing"),
    "rsedi/testdata/edi/valid_ordrsp_d96a_full.edi": ("13", "mandatory segment UNS is missing"),
    "rsedi/testdata/edi/valid_ordrsp_d96a_with_cnt.edi":
        ("13", "mandatory segment UNS is missing"),
    # ... a line's MOA comes before its PRI group (SG26/SG27 MOA, then SG28 PRI) ...
    "rsedi/testdata/edi/orders_acme.edi": ("15", "segment MOA is not allowed here"),
    "rsedi/testdata/edi/valid_orders_d96a_full.edi": ("15", "segment MOA is not allowed here"),
    "rsedi/testdata/edi/valid_invoic_d96a_full.edi": ("15", "segment MOA is not allowed here"),
    "rsedi/testdata/edi/valid_invoic_d96a_minimal.edi":
        ("15", "segment MOA is not allowed here"),
    # ... DESADV lines belong in the CPS group (SG10), which this fixture leaves out ...
    "rsedi/testdata/edi/valid_desadv_d96a_minimal.edi":
        ("15", "segment LIN is not allowed here"),
    # ... SLSRPT reports lines per location: segment group 5 (LOC) is mandatory ...
    "rsedi/testdata/edi/valid_slsrpt_d96a_minimal.edi":
        ("13", "mandatory segment group 5 (LOC) is missing"),
    "rsedi/testdata/edi/valid_slsrpt_d96a_full.edi":
        ("13", "mandatory segment group 5 (LOC) is missing"),
    # ... and 'IMD+F++:::Product with ?? special ?+ chars ?' releases its own terminator.
    "rsedi/testdata/edi/edge_special_chars.edi":
        ("16", "IMD/7383 is a simple data element but has 2 components"),
}

#: NEGATIVE rows whose note names a message-level fault: path -> (code, reason part).
EXPECTED_REJECTIONS: dict[str, tuple[str, str]] = {
    "rsedi/testdata/edi/invalid_orders_missing_bgm.edi":
        ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/invalid_ordrsp_d96a_missing_bgm.edi":
        ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/invalid_invoic_d96a_missing_bgm.edi":
        ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/invalid_desadv_d96a_missing_bgm.edi":
        ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/invalid_slsrpt_d96a_missing_bgm.edi":
        ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/orders_with_errors.edi": ("13", "mandatory segment BGM is missing"),
    "rsedi/testdata/edi/invalid_invoic_d96a_missing_element.edi":
        ("13", "BGM/1004 is missing"),
    "rsedi/testdata/edi/invalid_orders_unknown_segment.edi":
        ("15", "segment XYZ is unknown"),
    "rsedi/testdata/edi/invalid_slsrpt_d96a_line_without_qty.edi":
        ("13", "segment group 7 (LIN) starting here has no QTY segment"),
    "smooks-edi-cartridge/edifact-cartridge/src/test/resources/data/"
    "BAD_ORDERS_D.03B_Interchange.txt": ("35", "segment DTM occurs more than 35 times"),
}

_NOT_EDIFACT = ("EDIFACT-as-XML", "directory", "Schematron", "XSD", "XML", "FLAT file", "CSV")
_SUMMARY: Counter[str] = Counter()


def _edifact_rows() -> list[dict[str, str]]:
    rows = []
    for row in manifest_rows():
        kind = row["document_type"]
        if ("EDIFACT" in kind or "EANCOM" in kind) and not any(x in kind for x in _NOT_EDIFACT):
            rows.append(row)
    return rows


ROWS = _edifact_rows()
POSITIVE = [r for r in ROWS if not r["document_type"].startswith("NEGATIVE")]
NEGATIVE = [r for r in ROWS if r["document_type"].startswith("NEGATIVE")]


def _path(row: dict[str, str] | None) -> str:
    return row["local_path"] if row else "none"


# -- reading -------------------------------------------------------------------------------

def _messages(data: bytes, path: str) -> list[tuple[Message, str]] | None:
    """(message, decimal mark) for each message of the file; None when the file is not
    EDIFACT at all (its envelope is the reader's business)."""
    try:
        interchanges = read_interchanges(data, filename=path)
    except EdifactSyntaxError:
        return _messages_from_tokens(data, path)
    return [(m, i.decimal_mark) for i in interchanges for m in i.messages]


def _messages_from_tokens(data: bytes, path: str) -> list[tuple[Message, str]] | None:
    """UNH..UNT runs straight from the tokenizer, for a reader that raises on a message's
    envelope fault instead of keeping it on ``Message.error``."""
    try:
        text = decode(data)[0]
    except Exception:
        return None
    source = Source(text, path)
    found: list[tuple[Message, str]] = []
    for chunk in tokenize(text):
        current: list | None = None
        for segment in chunk.segments:
            if segment.tag == "UNH":
                current = [segment]
            elif current is not None:
                current.append(segment)
                if segment.tag == "UNT":
                    unh = current[0]
                    ident = (unh.elements[1] if len(unh.elements) > 1 else []) + [""] * 5
                    found.append((Message(
                        ref=unh.get(0), type=ident[0], version=ident[1], release=ident[2],
                        agency=ident[3], association=ident[4] or None, segments=current,
                        index=unh.index, source=source), chunk.separators.decimal))
                    current = None
    return found or None


def _subset(row: dict[str, str]) -> str | None:
    return "EANCOM" if "EANCOM" in row["document_type"] else None


def _validate(row: dict[str, str]) -> list[tuple[Message, list[EdifactSyntaxError]]]:
    folder = require_corpus()
    data = (folder / row["local_path"]).read_bytes()
    messages = _messages(data, row["local_path"]) or []
    # As the reader calls it: the repetition separator is read from the interchange's text.
    return [(m, validate_message(m, decimal_mark=mark, subset=_subset(row)))
            for m, mark in messages]


# -- tests ---------------------------------------------------------------------------------

def test_corpus_lists_the_rows_this_test_expects():
    """Every file named in the two tables is a manifest row of the matching kind."""
    require_corpus()
    positive = {r["local_path"] for r in POSITIVE}
    negative = {r["local_path"] for r in NEGATIVE}
    assert set(KNOWN_VIOLATIONS) <= positive, set(KNOWN_VIOLATIONS) - positive
    assert set(EXPECTED_REJECTIONS) <= negative, set(EXPECTED_REJECTIONS) - negative


@pytest.mark.parametrize("row", POSITIVE or [None], ids=_path)
def test_positive_file_validates(row):
    """Each tabled message validates without error, or breaks exactly its known rule."""
    require_corpus()
    if row is None:
        pytest.fail("the manifest lists no positive EDIFACT row")
    results = _validate(row)
    known = KNOWN_VIOLATIONS.get(row["local_path"])
    found = [e for _, errors in results for e in errors]
    for message, errors in results:
        if not is_known(message):
            assert errors == []
            _SUMMARY["positive message, not tabled"] += 1
        else:
            _SUMMARY["positive message, " + ("known violation" if errors else "valid")] += 1
    if known is None:
        assert found == [], "\n".join(str(e) for e in found)
    else:
        code, part = known
        assert any(e.code == code and part in e.reason for e in found), (
            f"expected {code} {part!r}; got:\n" + "\n".join(f"{e.code} {e}" for e in found))
    for error in found:
        assert error.position is not None and error.position.segment is not None
        assert error.code and error.position.message_ref is not None


@pytest.mark.parametrize("row", NEGATIVE or [None], ids=_path)
def test_negative_file_fails_for_its_reason(row):
    """A NEGATIVE row of a message-level kind gives the error its note names; any other
    NEGATIVE row is still validated without an exception."""
    require_corpus()
    if row is None:
        pytest.fail("the manifest lists no NEGATIVE EDIFACT row")
    results = _validate(row)
    expected = EXPECTED_REJECTIONS.get(row["local_path"])
    if expected is None:
        _SUMMARY["negative, envelope or syntax kind"] += 1
        return
    code, part = expected
    found = [e for _, errors in results for e in errors]
    match = [e for e in found if e.code == code and part in e.reason]
    assert match, f"expected {code} {part!r}; got:\n" + "\n".join(f"{e.code} {e}" for e in found)
    position = match[0].position
    assert position is not None and position.segment and position.line and position.tag
    _SUMMARY["negative, rejected as noted"] += 1


def test_zz_print_summary():
    """Print how many messages were checked, valid, known violations and unchecked."""
    require_corpus()
    print("\nstructure validation over the corpus:", dict(sorted(_SUMMARY.items())))
