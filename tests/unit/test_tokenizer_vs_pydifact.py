"""Our tokenizer against pydifact's parser on generated EDIFACT (several UNAs, released
characters anywhere); the same comparison on every corpus file is
``tests/corpus/test_corpus_tokenizer_vs_pydifact.py``.

pydifact is the reference EDIFACT parser of this project (and the benchmark baseline); the
gateway tokenizes with its own code for speed. Two differences are deliberate and normalised
away (``_norm``): line breaks inside a segment are wrapped lines to the gateway (removed), and
pydifact drops trailing empty components and elements.
"""

from __future__ import annotations

import random
import warnings

import pytest

from gateway.formats.edifact.tokenizer import tokenize


def _trim(values: list[str]) -> list[str]:
    while values and values[-1] == "":
        values = values[:-1]
    return values


def _norm(tag: str, elements: list[list[str]]) -> tuple[str, list[list[str]]]:
    out = [_trim([v.replace("\r", "").replace("\n", "") for v in e]) for e in elements]
    while out and not out[-1]:
        out.pop()
    return tag.strip(), out


# -- generated input -------------------------------------------------------------------------

#: UNA advices the generated files use: the defaults, custom characters, a backslash as
#: release character, '$' as terminator. Not a space as UNA4: ISO 9735 makes it mean "no
#: release character" (the gateway does, see test_edifact_syntax_separators.py), but
#: pydifact 0.2 takes the space itself as the release character.
_ADVICES = [":+.? '", "*@.? #", ":+,\\*'", "|^.?*$"]


def _value(rng: random.Random, seps: str) -> str:
    """A data value with, at random, separators and release characters released."""
    comp, elem, _dec, rel, rep, term = seps
    specials = [comp, elem, term, rel, rep]
    out = []
    for _ in range(rng.randint(0, 8)):
        roll = rng.random()
        if roll < 0.2:
            out.append(rel + rng.choice(specials))
        elif roll < 0.3:
            out.append(rel + rng.choice("AZ09 .-"))  # a release before an ordinary character
        else:
            out.append(rng.choice("ABCXYZ0123456789 .-/"))
    return "".join(out)


def _generated(seed: int) -> str:
    """A UNA and 1 to 12 segments, separated by nothing, LF or CRLF."""
    rng = random.Random(seed)
    advice = rng.choice(_ADVICES)
    comp, elem, _dec, _rel, _rep, term = advice
    segments = []
    for _ in range(rng.randint(1, 12)):
        tag = rng.choice(["FTX", "NAD", "QTY", "IMD", "RFF", "DTM"])
        elements = [comp.join(_value(rng, advice) for _ in range(rng.randint(1, 4)))
                    for _ in range(rng.randint(1, 6))]
        segments.append(tag + elem + elem.join(elements) + term)
    layout = rng.choice(["", "\n", "\r\n"])
    return "UNA" + advice + layout.join(segments)


@pytest.mark.parametrize("seed", range(300))
def test_tokenizer_reads_what_pydifact_reads_on_generated_input(seed):
    """Random segments under varied UNAs, with released characters anywhere: same values."""
    from pydifact.parser import Parser

    text = _generated(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = list(Parser().parse(text))
    ours = [s for chunk in tokenize(text) for s in chunk.segments]
    expected = [_norm(s.tag, [e if isinstance(e, list) else [e] for e in s.elements])
                for s in theirs if s.tag != "UNA"]
    assert [_norm(s.tag, s.elements) for s in ours] == expected
