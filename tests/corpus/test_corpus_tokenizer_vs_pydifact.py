"""Our tokenizer against pydifact's parser, on every EDIFACT file of the shared corpus.

pydifact is the reference EDIFACT parser of this project (and the benchmark baseline); the
gateway tokenizes with its own code for speed, so this differential test checks that both
read the same segments and values. The same comparison on generated files (several UNAs,
released characters anywhere), which needs no corpus, is
``tests/unit/test_tokenizer_vs_pydifact.py``, with the normalisation both use.
"""

from __future__ import annotations

import warnings

import pytest

from gateway.formats.edifact.tokenizer import tokenize
from tests.conftest import manifest_rows, require_corpus
from tests.unit.test_tokenizer_vs_pydifact import _norm

# EDIFACT rows; the manifest also files the XML renderings of EDIFACT examples under it.
ROWS = [r for r in manifest_rows()
        if r["document_type"].startswith("EDIFACT") and not r["local_path"].endswith(".xml")]


@pytest.mark.corpus
@pytest.mark.parametrize("row", ROWS or [None], ids=lambda r: r["local_path"] if r else "none")
def test_tokenizer_reads_what_pydifact_reads(row):
    """Every segment pydifact reads from a corpus file, the gateway reads with the same values."""
    folder = require_corpus()
    if row is None:
        pytest.fail("the manifest lists no EDIFACT file")
    from pydifact.parser import Parser

    text = (folder / row["local_path"]).read_bytes().decode("latin-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            theirs = list(Parser().parse(text))
        except Exception:
            theirs = None
    ours = [s for chunk in tokenize(text) for s in chunk.segments]
    if theirs is None:
        # pydifact refuses some files (e.g. a release character before a line break);
        # nothing to compare, but the gateway's tokenizer must still read them.
        assert ours and all(len(s.tag) == 3 for s in ours[:1])
        return
    expected = [_norm(s.tag, [e if isinstance(e, list) else [e] for e in s.elements])
                for s in theirs if s.tag != "UNA"]
    assert [_norm(s.tag, s.elements) for s in ours] == expected
