"""Every EDIFACT row of the corpus through the reader the pipeline uses: documents or reasons.

Rows come from ``MANIFEST.tsv`` (the same selection as ``test_corpus_envelope``: EDIFACT or
EANCOM in the document type, or notes that found a UNA/UNB). Each goes through
``EdifactReader.parse`` and ``EdifactPayload.documents`` for a partner with the default
policy, exactly as ``Pipeline`` calls them, and must end in one of these outcomes:

- **mapped**: a canonical order, invoice or price list whose number and line count match a
  naive reading of the same message (``tests/integration/naive_edifact.py``, which shares
  no code with the gateway);
- **failed**: the message is kept with a reason naming its position (segment or line);
- **unsupported**: a message type or version edigw has no mapping for, said so;
- **file rejected**: ``EdifactSyntaxError`` with a reason (and a position, but for an empty
  or non-EDIFACT file at its first line).

No other exception may escape. A ``NEGATIVE`` row must not map cleanly: it is rejected
(file, interchange or message) with the reason its manifest notes give (``NEGATIVE_WORDS``).
The counts per outcome are printed at the end of the run (``pytest_terminal_summary`` in
``tests/conftest.py``).

Rows labelled valid by their source project but invalid under the UN directory (the rsedi
fixtures that omit the mandatory UNS or carry a wrong UNT count) end FAILED with that
reason: the gateway rejects them precisely rather than guessing.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from gateway.config import Partner
from gateway.core.errors import EdifactSyntaxError
from gateway.core.ports import FailedMessage, MappedDocument
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from tests.conftest import require_corpus
from tests.corpus.test_corpus_envelope import EXPECTED, ROWS
from tests.integration.naive_edifact import NaiveMessage, naive_messages

pytestmark = pytest.mark.corpus

REPO = Path(__file__).resolve().parents[2]

#: What a NEGATIVE row's rejection must say, found from its manifest document type and notes.
NEGATIVE_WORDS: list[tuple[str, str]] = [
    (r"UNT count wrong|UNT count off", r"UNT segment count"),
    (r"truncated", r"truncated|has no UNT|has no UNZ"),
    (r"garbage|preamble", r"not EDIFACT"),
    (r"wrapping a non-EDIFACT", r"segment tag is three"),
    (r"missing_bgm", r"BGM is missing"),
    (r"missing_element", r"missing|not allowed here"),
    (r"unknown_segment", r"segment XYZ is unknown"),
    (r"line_without_qty", r"QTY|group 5|not allowed here"),
    (r"orders_with_errors", r"BGM is missing"),
    (r"excessive segment repetition", r"DTM|repetition|UNT segment count"),
    (r"UNG without group reference", r"no functional group reference"),
    (r"stray UCD", r"service segment UCD"),
    (r"OUTSIDE any group|CUSTOM separators UNA\*@", r"outside any functional group|UNZ control"),
    (r"UNZ ref != UNB ref", r"UNZ control"),
]

OUTCOMES: Counter[str] = Counter()
#: Rows per outcome kind, for the summary.
ROWS_BY: dict[str, set[str]] = defaultdict(set)


@pytest.fixture(scope="module")
def reader() -> EdifactReader:
    return EdifactReader(MappingSet.load(REPO / "mappings"))


PARTNER = Partner(id="corpus", name="Corpus")


def _number(msg: NaiveMessage) -> str | None:
    bgm = msg.first("BGM")
    if bgm is None or len(bgm) < 3:
        return None
    return bgm[2][0] or None


def _check_document(doc: MappedDocument, msg: NaiveMessage | None) -> None:
    document = doc.document
    if msg is None:
        return
    OUTCOMES["(documents checked against a naive reading)"] += 1
    assert doc.business_number == _number(msg), (doc.business_number, _number(msg))
    lin = sum(1 for seg in msg.segments if seg[0][0] == "LIN")
    items = getattr(document, "lines", None)
    if items is None:
        items = getattr(document, "items", None)
    if items is not None and not getattr(document, "part_count", None):
        assert len(items) == lin, f"{len(items)} lines for {lin} LIN"


def _has_position(text: str) -> bool:
    return bool(re.search(r"\bsegment \d+|\bline \d+", text))


@pytest.mark.parametrize("row", ROWS or [None], ids=lambda r: r["local_path"] if r else "none")
def test_row_ends_in_documents_or_precise_reasons(row, reader):
    folder = require_corpus()
    if row is None:
        pytest.fail("the manifest lists no EDIFACT row")
    path = row["local_path"]
    negative = row["document_type"].startswith("NEGATIVE")
    data = (folder / path).read_bytes()
    texts: list[str] = []
    try:
        parsed = reader.parse(data, filename=path)
    except EdifactSyntaxError as exc:
        OUTCOMES["file rejected"] += 1
        ROWS_BY["file rejected"].add(path)
        assert exc.reason
        assert exc.position is not None or "empty" in exc.reason
        texts.append(str(exc))
    except Exception as exc:  # the point: nothing else escapes
        pytest.fail(f"{path}: {type(exc).__name__} escaped the reader: {exc}")
    else:
        try:
            results = parsed.documents(partner=PARTNER, transmission_id=None, filename=path)
        except Exception as exc:
            pytest.fail(f"{path}: {type(exc).__name__} escaped documents(): {exc}")
        naive: dict[tuple[str | None, str], list[NaiveMessage]] = defaultdict(list)
        try:
            for m in naive_messages(data):
                naive[(m.interchange_ref, m.message_ref)].append(m)
        except Exception:  # the naive reading does not know every syntax (UNOB, several UNAs)
            naive.clear()
        assert results, f"{path}: read but neither documents nor failures"
        for result in results:
            key = (result.interchange_ref, result.message_ref or "")
            msg = naive[key].pop(0) if naive.get(key) else None
            if isinstance(result, FailedMessage):
                kind = "unsupported" if result.status == "UNSUPPORTED" else "failed"
                OUTCOMES[f"message {kind}"] += 1
                ROWS_BY[f"message {kind}"].add(path)
                texts.append(result.reason)
                if kind == "failed":
                    assert _has_position(result.reason), result.reason
                else:
                    assert re.search(r"unsupported message type|no mapping for", result.reason)
            else:
                OUTCOMES[f"{result.doc_type} mapped"] += 1
                ROWS_BY["mapped"].add(path)
                _check_document(result, msg)
        texts += parsed.warnings
    if negative:
        joined = "\n".join(texts)
        assert path not in ROWS_BY["mapped"] or any(
            path in ROWS_BY[k] for k in ("message failed", "file rejected")), \
            f"NEGATIVE row {path} mapped cleanly"
        label = f"{row['document_type']} {row['notes']}"
        wanted = [words for pattern, words in NEGATIVE_WORDS if re.search(pattern, label)]
        expected = EXPECTED.get(path)
        if expected is not None:
            wanted.append(re.escape(expected.words))
        assert wanted, f"NEGATIVE row {path}: add what its rejection must say to NEGATIVE_WORDS"
        assert any(re.search(w, joined) for w in wanted), f"{path}: {joined[:500]}"


def summary_lines() -> list[str]:
    """The counts per outcome, for the terminal summary (empty when the test did not run)."""
    if not OUTCOMES:
        return []
    files = set().union(*ROWS_BY.values())
    lines = [f"{len(files)} EDIFACT rows: {len(ROWS_BY['mapped'])} gave documents, "
             f"{len(ROWS_BY['file rejected'])} were rejected whole, "
             f"{len(files - ROWS_BY['mapped'] - ROWS_BY['file rejected'])} only failed or "
             "unsupported messages"]
    lines += [f"  {kind:<22} {n:>5} {'file(s)' if kind == 'file rejected' else 'message(s)'}"
              for kind, n in sorted(OUTCOMES.items())]
    return lines
