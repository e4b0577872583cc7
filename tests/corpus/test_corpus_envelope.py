"""Every EDIFACT row of the shared corpus through ``read_interchanges``: read, or refused precisely.

Rows are chosen from ``MANIFEST.tsv``: a document type naming EDIFACT or EANCOM or an
envelope segment, or notes that found a UNA or a UNB (the synthetic UNG/UNE files), minus
XML renderings and the UN directory packages. For each row exactly one of these holds, and nothing but
``EdifactSyntaxError`` is ever raised:

- the file raises, with a reason, a 0085 code and a position that names the line;
- it reads, and every error it carries (``Interchange.error``, ``Message.error``) has a
  reason, a code and a position. Errors appear only where the manifest says something is
  wrong: the rows in ``EXPECTED`` (with the level, code and words of their error), the rows
  whose notes say the UNT count is wrong (a message error), and no other.

A row whose notes count messages (``msg(s)``, i.e. real EDIFACT) must read unless
``EXPECTED`` says the file fails; rows of other formats filed under EDIFACT (schemas, code
lists, a CSV, a flat file, a message body without UNH) must raise "not EDIFACT".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import Interchange, read_interchanges
from tests.conftest import manifest_rows, require_corpus

pytestmark = pytest.mark.corpus

_SMOOKS = "smooks-edi-cartridge/edi-sax/src/test/java/org/smooks/edi/edisax/unedifact/"


@dataclass(frozen=True)
class Expected:
    """Where the row's error is (file, interchange or message), its code and some words."""

    level: str
    code: str
    words: str


EXPECTED = {
    # Junk before UNB and a proprietary preamble before UNA: not EDIFACT.
    "bots-plugins/demo/preprocessing/botssys/infile/edifact_xml/edifact/0T0000000004.edi":
        Expected("file", "13", "not EDIFACT"),
    "pydifact/tests/data/sage_coala.ped": Expected("file", "13", "'DOC+01="),
    # UNB then backtick-delimited lab records: the first one is no segment tag.
    "pydifact/tests/data/hl7.lab": Expected("file", "12", "a segment tag is three"),
    # Truncated files.
    "pydifact/tests/data/order.edi": Expected("file", "13", "has no UNZ"),
    "pydifact/tests/data/order2.edi": Expected("file", "13", "has no UNZ"),
    "pydifact/tests/data/patient3.edi": Expected("file", "13", "has no UNT"),
    # Functional groups (synthetic Smooks files; their 'BBBB' tags fail each message too).
    _SMOOKS + "with_ung/unedifact-msg-01.edi": Expected("interchange", "30", "outside any "
                                                                            "functional group"),
    _SMOOKS + "with_ung/unedifact-msg-02.edi": Expected("interchange", "30", "outside any "
                                                                            "functional group"),
    _SMOOKS + "with_ung/unedifact-msg-03.edi": Expected("interchange", "13", "no functional "
                                                                            "group reference"),
    _SMOOKS + "with_ung/unedifact-msg-04.edi": Expected("message", "12", "'BBBB'"),
    _SMOOKS + "with_ung/unedifact-msg-05.edi": Expected("interchange", "33",
                                                        "service segment UCD"),
    # Filed for their UNZ reference (a warning by policy); their UNZ count (1 for 3
    # messages) rejects them anyway.
    _SMOOKS + "no_ung/unedifact-msg-01.edi": Expected("interchange", "29", "UNZ control count"),
    _SMOOKS + "no_ung/unedifact-msg-02.edi": Expected("interchange", "29", "UNZ control count"),
    # Not in the manifest's notes, but true of the file: both messages are UNH+111425.
    "bots-plugins/demo/xml_enveloping/botssys/infile/demo_xml_envelope/edifact/invoic01.edi":
        Expected("message", "26", "'111425' is used twice"),
}

#: Manifest notes that announce a wrong UNT count.
_UNT_WRONG = "UNT COUNT MISMATCH"


def _rows() -> list[dict[str, str]]:
    out = []
    for row in manifest_rows():
        kind, path = row["document_type"], row["local_path"]
        if path.endswith(".xml") or "directory package" in kind:
            continue
        named = re.search(r"EDIFACT|EANCOM", kind) or re.search(r"\bUN[BGHZ]\b", kind)
        # The manifest's automatic notes say "| UNB UNOA:3", "| NO UNB" or "UNA present".
        enveloped = re.search(r"\| (UNB|NO UNB)\b|UNA present", row["notes"])
        if named or enveloped:
            out.append(row)
    return out


ROWS = _rows()


def _read(row: dict[str, str]) -> list[Interchange] | EdifactSyntaxError:
    data = (require_corpus() / row["local_path"]).read_bytes()
    try:
        return read_interchanges(data, filename=row["local_path"])
    except EdifactSyntaxError as exc:
        return exc
    except Exception as exc:  # the point of the test: nothing else may escape
        pytest.fail(f"{row['local_path']}: {type(exc).__name__} escaped the reader: {exc}")


def _well_formed(error: EdifactSyntaxError, *, message_ref: str | None = None) -> None:
    assert error.reason and error.code and error.position is not None
    assert error.position.line is not None and error.position.segment is not None
    if message_ref:
        assert error.position.message_ref == message_ref


def test_manifest_lists_the_envelope_rows():
    """The corpus is present and the rows this test relies on are still in it."""
    require_corpus()
    paths = {row["local_path"] for row in ROWS}
    assert set(EXPECTED) <= paths and len(ROWS) > 80


@pytest.mark.parametrize("row", ROWS or [None], ids=lambda r: r["local_path"] if r else "none")
def test_row_reads_or_is_refused_with_a_position(row):
    """Each row: an EdifactSyntaxError naming the position, or interchanges whose errors are
    exactly where the manifest says something is wrong."""
    require_corpus()
    if row is None:
        pytest.fail("the manifest lists no EDIFACT row")
    path, notes = row["local_path"], row["notes"]
    expected = EXPECTED.get(path)
    outcome = _read(row)
    if isinstance(outcome, EdifactSyntaxError):
        _well_formed(outcome)
        if expected is not None:
            assert expected.level == "file", f"{path} should read: {outcome}"
            assert outcome.code == expected.code and expected.words in outcome.reason
        else:
            assert "msg(s)" not in notes, f"{path} is EDIFACT and should read: {outcome}"
            assert outcome.code == "13" and outcome.reason.startswith("not EDIFACT")
        return
    assert expected is None or expected.level != "file", f"{path} should fail as a whole"
    interchanges = outcome
    assert interchanges and all(i.messages for i in interchanges)
    rejected = [i.error for i in interchanges if i.error is not None]
    failed = [m for i in interchanges for m in i.messages if m.error is not None]
    for error in rejected:
        _well_formed(error)
    for message in failed:
        _well_formed(message.error, message_ref=message.ref)
    if expected is not None and expected.level == "interchange":
        first = rejected[0]
        assert first.code == expected.code and expected.words in first.reason
    elif expected is not None:
        assert not rejected
        assert any(m.error.code == expected.code and expected.words in m.error.reason
                   for m in failed)
    elif _UNT_WRONG in notes:
        assert not rejected and failed
        assert all(m.error.code == "29" and "UNT segment count" in m.error.reason
                   for m in failed)
    else:
        assert not rejected and not failed, f"{path}: {rejected or failed[0].error}"


def test_group_messages_carry_their_group_reference():
    """The UNG file with every element populated gives its message the UNG 0048."""
    require_corpus()
    [row] = [r for r in ROWS if r["local_path"] == _SMOOKS + "with_ung/unedifact-msg-04.edi"]
    [interchange] = _read(row)
    assert [m.group_ref for m in interchange.messages] == ["groupref11111"]


def test_syntax_4_package_is_skipped_in_the_en16931_examples():
    """EN 16931 examples 2 and 5 attach a PDF as a UNO..UNP package after the message."""
    require_corpus()
    for name in ("EDIFACT_EXAMPLE2.TXT", "EDIFACT_EXAMPLE5.TXT"):
        [row] = [r for r in ROWS if r["local_path"].endswith(name)]
        [interchange] = _read(row)
        assert interchange.error is None and len(interchange.messages) == 1
        assert any("package 'P1'" in w for w in interchange.warnings)
