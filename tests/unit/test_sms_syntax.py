"""The SMS order syntax: forgiving variants read the same, and every line not understood is
named with its number, its text and exactly what was wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.formats.sms.syntax import (
    GSM_LIMIT,
    UCS2_LIMIT,
    gtin_check_digit,
    parse_sms_order,
    reply_text,
    unknown_sender_reply,
)


def items(text: str) -> list[tuple[str, str | None, str, int, str | None]]:
    order = parse_sms_order(text)
    assert not order.errors, [str(e) for e in order.errors]
    return [(i.code, i.gtin, str(i.quantity), i.line, i.unit) for i in order.items]


def errors(text: str) -> list[str]:
    return [str(e) for e in parse_sms_order(text).errors]


def test_the_documented_example_gives_reference_and_two_items():
    """REF line, a GTIN with x, an article code with ';'."""
    order = parse_sms_order("REF PO-778\n4006381333931 x 12\nABC-12; 3\n")
    assert order.ok and order.reference == "PO-778"
    assert [(i.code, i.gtin, i.article, i.quantity, i.line) for i in order.items] == [
        ("4006381333931", "4006381333931", None, Decimal(12), 2),
        ("ABC-12", None, "ABC-12", Decimal(3), 3)]


@pytest.mark.parametrize("line", [
    "ABC-12 3", "ABC-12 x 3", "abc-12 X 3", "ABC-12 x3", "ABC-12 *3", "ABC-12*3",
    "ABC-12: 3", "ABC-12;3", "ABC-12, 3", "ABC-12,3", "ABC-12 = 3", "ABC-12 - 3", "ABC-12 -3",
    "3 x ABC-12", "3x ABC-12", "3 ABC-12", "3 pcs ABC-12", "3pcs ABC-12", "ABC-12 x 3 pcs",
    "ABC-12 x 3 PC", "  ABC-12    x   3  ", "ABC-12 x 3 please", "3 of ABC-12", "ABC-12 x 3.",
])
def test_separators_order_units_and_case_are_tolerated(line):
    """Each spelling of "three of ABC-12" reads as that."""
    assert [(c, q) for c, _g, q, _n, _u in items(line)] == [("ABC-12", "3")]


@pytest.mark.parametrize("text,reference", [
    ("REF PO-778\nA1 1", "PO-778"), ("ref: 778\nA1 1", "778"), ("Ref:778\nA1 1", "778"),
    ("#778\nA1 1", "778"), ("# 778\nA1 1", "778"), ("Order 778\nA1 1", "778"),
    ("order no. 778\nA1 1", "778"), ("Order number 778\nA1 1", "778"),
    ("commande 778\nA1 1", "778"), ("Commande n°778\nA1 1", "778"), ("réf. 55\nA1 1", "55"),
    ("PO: X-9\nA1 1", "X-9"), ("A1 1\nREF 9", "9"),
])
def test_reference_spellings(text, reference):
    """Order reference keywords in English and French, any case, ':' or '#' or nothing."""
    order = parse_sms_order(text)
    assert order.ok and order.reference == reference


def test_no_reference_is_fine():
    """The reference is optional."""
    order = parse_sms_order("ABC 2")
    assert order.ok and order.reference is None


@pytest.mark.parametrize("code", ["96385074", "036000291452", "4006381333931",
                                  "14006381333938"])
def test_gtins_of_every_length_are_checked_and_kept(code):
    """GTIN-8, -12, -13 and -14 with a right check digit are GTINs."""
    assert items(f"{code} x 2") == [(code, code, "2", 1, None)]


def test_a_wrong_gtin_check_digit_is_said_precisely():
    """The line, its text and the digit that was expected."""
    assert errors("4006381333932 x 5") == [
        "line 1 '4006381333932 x 5': GTIN check digit should be 1"]


def test_gs1_check_digit():
    """GS1 weights 3,1,3 … from the right."""
    assert gtin_check_digit("400638133393") == 1
    assert gtin_check_digit("9638507") == 4


def test_an_x_inside_a_word_stays_in_the_code():
    """"M6X20" is a screw, not six of M: only a separate or leading/trailing x separates."""
    assert items("M6X20 x 100") == [("M6X20", None, "100", 1, None)]
    assert errors("M6X20") == ["line 1 'M6X20': no quantity for M6X20"]


def test_numeric_article_codes():
    """5 digits or more are a code; 4 or fewer need 'art'; a GTIN length with 'art' is not
    checked."""
    assert items("12345 x 4") == [("12345", None, "4", 1, None)]
    assert items("art 4711 x 3") == [("4711", None, "3", 1, None)]
    assert items("Art. 4711: 3") == [("4711", None, "3", 1, None)]
    assert items("art 12345670 x 1") == [("12345670", None, "1", 1, None)]


def test_several_items_on_one_line():
    """';' or ',' between complete items; pieces joined when one holds only the code."""
    assert items("ABC-1 x 2; DEF-2 x 5") == [("ABC-1", None, "2", 1, None),
                                             ("DEF-2", None, "5", 1, None)]
    assert items("4006381333931 x 12,4000862141404 x 3") == [
        ("4006381333931", "4006381333931", "12", 1, None),
        ("4000862141404", "4000862141404", "3", 1, None)]
    assert items("ABC; 3; DEF; 4") == [("ABC", None, "3", 1, None), ("DEF", None, "4", 1, None)]


def test_units_and_decimals():
    """Units map to UN/ECE Rec. 20 codes; a decimal comma or point is a decimal."""
    assert items("12 cartons of ABC-9\nABC x 2,5 kg\nABC 1.5") == [
        ("ABC-9", None, "12", 1, "CT"), ("ABC", None, "2.5", 2, "KGM"),
        ("ABC", None, "1.5", 3, None)]


def test_greeting_blank_lines_and_signature_are_ignored():
    """Bonjour, blank lines, merci and the name and number after it."""
    order = parse_sms_order("Bonjour\n\nREF 5\n\nABC-1 x 2\n\nMerci !\nJean Dupont\n"
                            "06 12 34 56 78\n")
    assert order.ok and order.reference == "5"
    assert [(i.code, i.line) for i in order.items] == [("ABC-1", 5)]
    assert order.ignored == (1, 7, 8, 9)


@pytest.mark.parametrize("text,expected", [
    ("ABC 12 12", ["line 1 'ABC 12 12': two quantities"]),
    ("REF 1\nABC-12", ["line 2 'ABC-12': no quantity for ABC-12"]),
    ("x 12", ["line 1 'x 12': no article code or GTIN"]),
    ("4711 x 3", ["line 1 '4711 x 3': two quantities and no article code (a code of 4 digits "
                  "or fewer needs 'art' before it: art 4711 x 3)"]),
    ("ABC DEF 3", ["line 1 'ABC DEF 3': two article codes ('ABC', 'DEF')"]),
    ("ABC 3 DEF 4", ["line 1 'ABC 3 DEF 4': several items on one line: separate them with ';'"]),
    ("ABC; 3; DEF", ["line 1 'ABC; 3; DEF': no quantity for DEF (items on one line are "
                     "separated by ';')"]),
    ("ABC x 0", ["line 1 'ABC x 0': quantity 0"]),
    ("ABC x 1.000", ["line 1 'ABC x 1.000': quantity '1.000' is ambiguous: write 1000 or 1"]),
    ("ABC x 2,500", ["line 1 'ABC x 2,500': quantity '2,500' is ambiguous: write 2500 or 2.5"]),
    ("3 x art", ["line 1 '3 x art': article code missing after 'art'"]),
    ("deliver tuesday", ["line 1 'deliver tuesday': not understood as an item: no quantity"]),
    ("REF\nABC 3", ["line 1 'REF': order reference missing after 'REF'"]),
    ("ref a b\nABC 3", ["line 1 'ref a b': an order reference is one word; put items on their "
                        "own lines"]),
    ("ref 1\nref 2\nA1 1", ["line 2 'ref 2': a second order reference (the first is 1, "
                            "line 1)"]),
    ("REF " + "X" * 36 + "\nA1 1", [f"line 1 'REF {'X' * 36}': order reference longer than 35 "
                                    "characters"]),
    ("merci\nABC x 3", ["line 2 'ABC x 3': an item after the closing 'merci' (line 1); put "
                        "items before it"]),
    ("", ["no items found"]),
    ("Bonjour\n\nmerci", ["no items found"]),
    ("REF 778", ["no items found"]),
])
def test_lines_not_understood_are_said_precisely(text, expected):
    """Exact messages: line number, the line as sent, what was not understood."""
    assert errors(text) == expected


def test_an_order_with_one_bad_line_is_not_ok_but_keeps_the_good_lines():
    """The good lines are read (for the reply), the order is not ok (nothing is ordered)."""
    order = parse_sms_order("ABC-1 x 2\nABC 12 12\nDEF x 4")
    assert not order.ok and len(order.items) == 2
    assert [e.line for e in order.errors] == [2]


def test_reply_confirms_items_and_quantities():
    """The order number and each item with its quantity."""
    order = parse_sms_order("REF PO-778\n4006381333931 x 12\nABC-12; 3\n")
    assert reply_text(order, order_number="PO-778") == \
        "Order PO-778 received: 12 x 4006381333931; 3 x ABC-12."


def test_reply_names_the_lines_not_understood_and_says_nothing_was_ordered():
    """Refused as a whole, with the line and why."""
    order = parse_sms_order("ABC-1 x 2\nABC 12 12")
    assert reply_text(order, order_number="SMS-1") == (
        "Not ordered: line 2 'ABC 12 12': two quantities. Nothing was ordered; please send "
        "the whole order again.")
    assert reply_text(parse_sms_order("deliver on tuesday")) == (
        "Not ordered: line 1 'deliver on tuesday': not understood as an item: no quantity. Nothing "
        "was ordered; please send the whole order again.")
    assert reply_text(parse_sms_order("")) == (
        "Not ordered: no items found. Please send one item per line: code and quantity, e.g. "
        "ABC-12 x 3.")


def test_a_long_reply_fits_three_segments():
    """Many items: the tail is counted, not listed; the text stays within three segments."""
    text = "\n".join(f"ARTICLE-{n:04d} x {n}" for n in range(1, 80))
    reply = reply_text(parse_sms_order(text), order_number="PO-1")
    assert len(reply) <= GSM_LIMIT
    assert reply.startswith("Order PO-1 received: 1 x ARTICLE-0001; 2 x ARTICLE-0002")
    assert reply.endswith("more item(s).")
    bad = "\n".join(f"ŁUK-{n} 1 1" for n in range(1, 40))  # Ł is not in GSM 03.38: UCS-2
    reply = reply_text(parse_sms_order(bad))
    assert len(reply) <= UCS2_LIMIT and "more line(s)" in reply


def test_unknown_sender_reply():
    """Polite, with the reference the team will find the message by."""
    assert unknown_sender_reply("T1") == (
        "This number is not registered for ordering with us; your message was kept (ref T1) "
        "and our team will contact you.")
