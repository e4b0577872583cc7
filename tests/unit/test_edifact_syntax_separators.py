"""Service characters: any UNA, the defaults per syntax identifier, release characters anywhere.

Every sample is written here; the corpus files with custom separators are covered by
``tests/corpus/test_corpus_envelope.py``.
"""

from __future__ import annotations

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import Separators, read_interchanges
from gateway.formats.edifact.tokenizer import LEVEL_B, tokenize


def _interchange(body: str, *, una: str = "", syntax: str = "UNOC:3",
                 seps: str = ":+'", segments: int | None = None) -> bytes:
    """One interchange of one message whose body segments are written with ``:+'``.

    ``seps`` gives the component, element and terminator characters the sample is then
    rewritten with (only where ``body`` uses the defaults literally). ``segments`` is the
    number of body segments when ``body`` holds a released terminator.
    """
    count = (segments if segments is not None else body.count("'")) + 2
    text = (f"{una}UNB+{syntax}+SENDER:14+RECEIVER:14+240101:1200+REF1'"
            f"UNH+1+ORDERS:D:96A:UN:EAN008'{body}UNT+{count}+1'UNZ+1+REF1'")
    comp, elem, term = seps
    if (comp, elem, term) != (":", "+", "'"):
        head, rest = text[:len(una)], text[len(una):]
        table = str.maketrans({":": comp, "+": elem, "'": term})
        text = head + rest.translate(table)
    return text.encode("latin-1")


def _body(data: bytes) -> list[tuple[str, list[list[str]]]]:
    [interchange] = read_interchanges(data)
    message = interchange.messages[0]
    assert message.error is None and interchange.error is None
    return [(s.tag, s.elements) for s in message.segments[1:-1]]


@pytest.mark.parametrize(("una", "seps"), [
    ("UNA*@.? #", "*@#"),
    ("UNA:+.?*$", ":+$"),
    ("UNA|^,\\ ~", "|^~"),
    ("UNA;&.! ~", ";&~"),
])
def test_any_una_service_characters_are_used(una, seps):
    """Component, element and terminator are whatever UNA1, UNA2 and UNA6 say."""
    data = _interchange("QTY+21:5'FTX+AAI+++free text'", una=una, seps=seps)
    assert _body(data) == [("QTY", [["21", "5"]]), ("FTX", [["AAI"], [""], [""], ["free text"]])]


def test_backslash_as_release_character():
    """UNA4 '\\' releases separators, the terminator and itself."""
    data = _interchange("FTX+AAI+++a\\+b\\:c\\'d\\\\e'", una="UNA:+.\\ '", segments=1)
    assert _body(data) == [("FTX", [["AAI"], [""], [""], ["a+b:c'd\\e"]])]


def test_dollar_as_terminator_with_release():
    """A '$' terminator can be released like any other service character."""
    data = _interchange("FTX+AAI+++USD 5?$ only'", una="UNA:+.? $", seps=":+$")
    assert _body(data)[0][1][3] == ["USD 5$ only"]


def test_space_as_una4_means_no_release_character():
    """With UNA4 a space, '?' is data: '?+' still splits."""
    data = _interchange("FTX+AAI+++why?+not'", una="UNA:+.  '")
    assert _body(data)[0][1][3:] == [["why?"], ["not"]]


@pytest.mark.parametrize(("raw", "values"), [
    ("a?+b", [["a+b"]]),  # before an element separator
    ("a?:b", [["a:b"]]),  # before a component separator
    ("a??", [["a?"]]),  # before the release character, at the end of an element
    ("a??+b", [["a?"], ["b"]]),  # a released release character does not release the '+'
    ("a???+b", [["a?+b"]]),  # '??' then '?+'
    ("?'a", [["'a"]]),  # at the start of an element, before the terminator
    ("a?b", [["ab"]]),  # before an ordinary character: the character is kept
])
def test_release_characters_anywhere(raw, values):
    """A release character releases the one character that follows it, whatever it is."""
    body = _body(_interchange(f"FTX+AAI+++{raw}'", segments=1))
    assert body[0][1][3:] == values


def test_release_character_before_a_line_break_drops_the_line_break():
    """'?' then a newline: a wrapped line whose break was released; the text joins."""
    body = _body(_interchange("FTX+AAI+++Deliver at the?\nback'"))
    assert body[0][1][3] == ["Deliver at theback"]


def test_no_una_gives_level_a_defaults_for_unoa_and_unoc():
    """Without UNA, UNOA and UNOC use ':+.? ' and ''' (syntax 3)."""
    chunk = tokenize(_interchange("QTY+21:5'", syntax="UNOA:3").decode())[0]
    assert chunk.separators == Separators() and chunk.una is None and chunk.note is None


def test_no_una_in_syntax_4_has_the_repetition_separator():
    """Syntax version 4 defaults add '*' as repetition separator (UNA5)."""
    chunk = tokenize(_interchange("QTY+21:5'", syntax="UNOC:4").decode())[0]
    assert chunk.separators.repetition == "*"


def test_unob_without_una_uses_the_information_separators():
    """Level B defaults: IS1 0x1F components, IS3 0x1D elements, IS4 0x1C terminator."""
    data = _interchange("QTY+21:5'FTX+AAI+++a?b'", syntax="UNOB:3", seps="\x1f\x1d\x1c")
    assert tokenize(data.decode())[0].separators == LEVEL_B
    # No release character at level B: '?' is data.
    assert _body(data) == [("QTY", [["21", "5"]]), ("FTX", [["AAI"], [""], [""], ["a?b"]])]


def test_unob_written_with_level_a_separators_is_read_with_a_note():
    """A partner declaring UNOB but writing '+:'' is read with those, and told."""
    [interchange] = read_interchanges(_interchange("QTY+21:5'", syntax="UNOB:3"))
    assert interchange.messages[0].segments[1].elements == [["21", "5"]]
    assert any("UNOB without UNA" in w for w in interchange.warnings)


def test_unob_with_una_uses_the_una():
    """A UNA overrides the level B defaults."""
    data = _interchange("QTY+21:5'", una="UNA:+.? '", syntax="UNOB:2")
    assert _body(data) == [("QTY", [["21", "5"]])]


@pytest.mark.parametrize("version", ["1", "2", "3", "4"])
def test_syntax_versions_1_to_4_are_read_and_recorded(version):
    """UNB S001 0002 is kept as text and as a number."""
    [interchange] = read_interchanges(_interchange("QTY+21:5'", syntax=f"UNOA:{version}"))
    assert interchange.error is None
    assert (interchange.syntax_version, interchange.syntax_level) == (version, int(version))


def test_syntax_4_repetition_separator_stays_in_the_value():
    """UNA5 '*' is kept as data, as pydifact reads it: repetitions are not split."""
    data = _interchange("ATT+2++M*F*M'", una="UNA:+.?*'", syntax="UNOC:4")
    assert _body(data)[0][1][2] == ["M*F*M"]


def test_released_repetition_separator_is_the_plain_character():
    """'?*' under UNA5 '*' is one '*'."""
    data = _interchange("FTX+AAI+++5?*3'", una="UNA:+.?*'", syntax="UNOC:4")
    assert _body(data)[0][1][3] == ["5*3"]


@pytest.mark.parametrize(("una", "problem"), [
    ("UNA::.? '", "component separator"),
    ("UNA:+.?+'", "repetition separator"),
    ("UNAX+.? '", "letter or digit"),
])
def test_una_with_unusable_service_characters_is_rejected_with_code_20(una, problem):
    """Separators that coincide or are alphanumeric cannot delimit: the file fails."""
    with pytest.raises(EdifactSyntaxError) as info:
        read_interchanges(_interchange("QTY+21:5'", una=una))
    error = info.value
    assert error.code == "20" and problem in error.reason and error.position.tag == "UNA"


def test_one_file_can_change_separators_between_interchanges():
    """Each UNA governs the interchange that follows it."""
    first = _interchange("QTY+21:5'", una="UNA:+.? '")
    second = _interchange("QTY+21:7'", una="UNA*@.? #", seps="*@#").replace(b"REF1", b"REF2")
    found = read_interchanges(first + b"\n" + second)
    assert [i.messages[0].segments[1].elements for i in found] == [[["21", "5"]], [["21", "7"]]]
