"""UNG/UNE functional groups and syntax 4 packages (UNO object UNP) inside an interchange."""

from __future__ import annotations

import pytest

from gateway.core.errors import EdifactSyntaxError
from gateway.formats.edifact import Interchange, read_interchanges

UNB = "UNB+UNOC:3+SENDER:14+RECEIVER:14+240101:1200+REF1'\n"


def _message(ref: str) -> str:
    return f"UNH+{ref}+ORDERS:D:96A:UN:EAN008'\nBGM+220+PO{ref}+9'\nUNT+3+{ref}'\n"


def _group(ref: str, *refs: str, count: int | None = None, une_ref: str | None = None) -> str:
    n = len(refs) if count is None else count
    return (f"UNG+ORDERS+SENDER:14+RECEIVER:14+240101:1200+{ref}+UN+D:96A'\n"
            + "".join(_message(r) for r in refs)
            + f"UNE+{n}+{ref if une_ref is None else une_ref}'\n")


def _read(*parts: str, count: int) -> Interchange:
    [interchange] = read_interchanges((UNB + "".join(parts) + f"UNZ+{count}+REF1'\n").encode())
    return interchange


def test_messages_in_groups_carry_their_group_reference():
    """Two groups of messages; the UNZ counts the groups; each message knows its UNG 0048."""
    interchange = _read(_group("G1", "1", "2"), _group("G2", "3"), count=2)
    assert interchange.error is None
    assert [(m.ref, m.group_ref, m.error) for m in interchange.messages] == [
        ("1", "G1", None), ("2", "G1", None), ("3", "G2", None)]


def test_unz_counting_messages_instead_of_groups_is_code_29():
    """With groups, UNZ 0036 is the number of groups (ISO 9735), not of messages."""
    error = _read(_group("G1", "1", "2"), count=2).error
    assert error.code == "29" and "1 functional groups" in error.reason


def test_une_count_mismatch_is_code_29():
    """UNE 0060 counts the messages of its group."""
    error = _read(_group("G1", "1", "2", count=3), count=1).error
    assert error.code == "29" and error.position.tag == "UNE" and error.position.element_pos == 1


def test_une_reference_mismatch_is_code_28():
    """UNE 0048 must repeat UNG 0048."""
    error = _read(_group("G1", "1", une_ref="G9"), count=1).error
    assert error.code == "28" and error.position.element_pos == 2 and "'G9'" in error.reason


def test_ung_without_group_reference_is_code_13_at_the_ung():
    """UNG 0048 is mandatory (element 5); the UNE that names one then does not match either."""
    interchange = _read(_group("", "1", une_ref="groupref11111"), count=1)
    error = interchange.error
    assert error.code == "13" and error.position.tag == "UNG"
    assert error.position.element == "UNG/0048" and error.position.element_pos == 5
    assert any("code 28" in w and "groupref11111" in w for w in interchange.warnings)
    assert interchange.messages[0].group_ref is None


def test_messages_beside_groups_are_code_30():
    """A message outside any group in an interchange that has groups: groups and messages mixed."""
    interchange = _read(_group("G1", "1"), _message("2"), count=1)
    error = interchange.error
    assert error.code == "30" and error.position.tag == "UNH" and error.position.segment == 7
    assert [m.group_ref for m in interchange.messages] == ["G1", None]


def test_group_after_messages_is_code_30():
    """A UNG after messages outside groups is the same mix, found at the UNG."""
    error = _read(_message("1"), _group("G1", "2"), count=2).error
    assert error.code == "30" and error.position.tag == "UNG"


def test_stray_service_segment_between_unb_and_ung_is_code_33_and_named():
    """A UCD between UNB and UNG is outside any message or group: the interchange fails."""
    interchange = _read("UCD+1+2+3'\n", _group("G1", "1"), count=1)
    error = interchange.error
    assert error.code == "33" and error.position.tag == "UCD" and error.position.segment == 2
    assert "service segment UCD" in error.reason and interchange.messages[0].error is None


def test_segment_inside_a_group_but_outside_messages_is_code_33():
    """Between UNG and UNH only messages may come."""
    group = _group("G1", "1").replace("UNH+", "DTM+137:20240101:102'\nUNH+", 1)
    error = _read(group, count=1).error
    assert error.code == "33" and "inside functional group 'G1'" in error.reason


def test_group_without_une_is_code_13():
    """A UNG, its messages, then UNZ: the UNE is missing."""
    group = _group("G1", "1").replace("UNE+1+G1'\n", "")
    error = _read(group, count=1).error
    assert error.code == "13" and error.position.tag == "UNG" and "has no UNE" in error.reason


def test_une_without_ung_is_code_33():
    """A UNE that closes nothing."""
    error = _read(_message("1"), "UNE+1+G1'\n", count=1).error
    assert error.code == "33" and error.position.tag == "UNE"


def test_message_cut_short_by_une_fails_alone():
    """A message without UNT before its group's UNE: code 13 on the message, in its group."""
    group = _group("G1", "1").replace("UNT+3+1'\n", "")
    interchange = _read(group, count=1)
    message = interchange.messages[0]
    assert message.error.code == "13" and message.group_ref == "G1"


# -- packages (syntax 4) ---------------------------------------------------------------------

def _package(obj: str, *, length: int | None = None, ref: str = "P1",
             unp_ref: str | None = None) -> str:
    n = len(obj.encode()) if length is None else length
    return f"UNO+{ref}+1:Doc1+13:application/pdf+{n}'{obj}UNP+{n}+{unp_ref or ref}'\n"


def test_package_object_is_skipped_even_when_it_holds_separators():
    """The object is framed by its octet count: its ''', '+' and ':' are not segments."""
    interchange = _read(_message("1"), _package("a'b+c:d?'UNH+9'"), count=1)
    assert interchange.error is None and [m.ref for m in interchange.messages] == ["1"]
    assert any("package 'P1'" in w for w in interchange.warnings)


def test_unz_may_count_messages_and_packages():
    """Syntax 4 counts packages with messages; counting messages only is accepted too."""
    assert _read(_message("1"), _package("xyz"), count=2).error is None
    assert _read(_message("1"), _package("xyz"), count=1).error is None


def test_unp_reference_mismatch_is_code_28():
    """UNP 0800 must repeat UNO 0800."""
    error = _read(_message("1"), _package("xyz", unp_ref="P2"), count=1).error
    assert error.code == "28" and error.position.element == "UNP/0800"


def test_uno_length_that_does_not_reach_the_unp_is_code_29():
    """A wrong UNO length: the UNP is found anyway, and the count is reported."""
    text = _package("xyz").replace("UNP+3", "UNP+5").replace("+3'", "+5'")
    error = _read(_message("1"), text, count=1).error
    assert error.code == "29" and "5 octets" in error.reason


def test_package_without_unp_truncates_the_file():
    """No UNP after an object: nothing after it can be framed, so the file fails."""
    with pytest.raises(EdifactSyntaxError) as info:
        read_interchanges((UNB + _message("1") + "UNO+P1+1:D+13:x+3'xyz").encode())
    assert info.value.code == "13" and "has no UNP" in info.value.reason
