"""The SMS order syntax: a forgiving reading of what people type on a phone.

::

    REF PO-778              optional order reference (ref: 778, #778, Order 778, commande 778)
    4006381333931 x 12      a GTIN (8, 12, 13 or 14 digits, check digit verified) and a quantity
    ABC-12; 3               an article code and a quantity
    12 x ABC-12             the quantity may come first
    art 4711 x 3            a code of 4 digits or fewer needs "art" (else it reads as a number)
    ABC-1 x 2; DEF-2 x 5    several items on one line, separated by ';' or ','
    merci                   a closing line (and a signature after it) is ignored

Between code and quantity any of ``space x * : ; , = -`` may stand; units (``pcs``,
``cartons`` …) are optional; case does not matter; blank lines are ignored. A quantity is a
number of at most 4 digits, optionally with 1 or 2 decimals (``2,5`` or ``2.5``); three
decimals (``1.000``) are refused as ambiguous. Anything else a line holds is read as an article
code, so a line says precisely what it lacks: ``line 3 'ABC 12 12': two quantities``.

An order with any line not understood is refused as a whole (nothing is ordered): passing on a
partial order would deliver less than the sender asked for without them noticing. The reply
says which line(s) were not understood and asks for the whole order again.

Pure functions, no I/O: ``parse_sms_order`` and ``reply_text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.core.errors import PayloadError

#: Longest order reference kept (EDIFACT BGM 1004 is an35).
MAX_REFERENCE = 35

_REF_WORDS = (r"ref(?:erence)?|r[ée]f(?:[ée]rence)?|order|po|commande|cde|cmd|bc|"
              r"bon\s+de\s+commande|purchase\s+order")
_REF_LINE = re.compile(
    rf"^\s*(?:(?:{_REF_WORDS})(?=[\s:#=.]|$)\.?"
    r"(?:\s*(?:no|nr|n°|num(?:[ée]ro)?|number)(?=[\s:#=.]|\d|$)\.?)?\s*[:#=]?"
    r"|#)\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_GREETING = re.compile(r"^(bonjour|bonsoir|hello|hi|hey|salut|good\s+(morning|afternoon|"
                       r"evening)|dear\s+\w+)\b", re.IGNORECASE)
_CLOSING = re.compile(r"^(thanks?|thank\s+you|thx|ty|merci|cordialement|regards|best|cheers|"
                      r"bonne\s+(journ[ée]e|soir[ée]e)|a\s*\+|bye|--)(\W|$)", re.IGNORECASE)
#: Words tolerated inside an item line ("12 cartons of ABC-12 please").
_FILLERS = frozenset({"of", "de", "du", "des", "d", "please", "pls", "plz", "svp", "stp",
                      "merci", "thanks", "thx"})
#: Units people write, by the UN/ECE Recommendation 20 code the canonical order carries.
_UNITS: dict[str, str] = {}
for _code, _words in (("PCE", "pc pcs pce pces piece pieces pièce pièces p u un unit units "
                       "unité unités unite unites"),
                      ("CT", "carton cartons ctn ctns crt"),
                      ("BX", "box boxes boite boites boîte boîtes"),
                      ("PK", "pack packs colis paquet paquets"),
                      ("KGM", "kg kgs kilo kilos")):
    for _w in _words.split():
        _UNITS[_w] = _code
_MARKERS = frozenset({"x", "×", "*", "-", "–", "=", ":"})
_NUMBER = re.compile(r"^[x×*]?(\d+(?:[.,\x00]\d+)?)[x×*]?$", re.IGNORECASE)
_NUMBER_UNIT = re.compile(r"^(\d+(?:[.,\x00]\d+)?)([^\W\d_]+)$")
#: A decimal comma, not an item separator: "2,5" but not "ABC-12,3" nor "12,4000862141404".
_DECIMAL_COMMA = re.compile(r"(?<![\w.\-])(\d{1,4}),(\d{1,3})(?![\d\w])")
_CODE_PREFIX = frozenset({"art", "art.", "article", "sku", "code", "item"})
_GTIN_LENGTHS = (8, 12, 13, 14)
_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


@dataclass(frozen=True, slots=True)
class SmsItem:
    """One ordered item: a GTIN (checked) or an article code, and its quantity."""

    code: str  # as read, upper case
    gtin: str | None
    article: str | None
    quantity: Decimal
    line: int  # 1-based line of the message text
    unit: str | None = None  # UN/ECE Rec. 20 code when the sender wrote a unit


@dataclass(frozen=True, slots=True)
class SmsLineError:
    """A line that was not understood, and precisely why."""

    line: int | None  # None: the message as a whole ("no items found")
    text: str
    problem: str

    def __str__(self) -> str:
        if self.line is None:
            return self.problem
        return f"line {self.line} '{self.text}': {self.problem}"


@dataclass(frozen=True, slots=True)
class SmsOrder:
    """What an SMS order says: its reference, its items, and the lines not understood."""

    reference: str | None
    items: tuple[SmsItem, ...] = ()
    errors: tuple[SmsLineError, ...] = ()
    #: Lines ignored on purpose (greeting, closing, signature), 1-based.
    ignored: tuple[int, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every line understood and at least one item: the order can be passed on."""
        return not self.errors and bool(self.items)


class _LineProblem(PayloadError):
    """A line of a text order that is not understood: caught line by line and listed."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def gtin_check_digit(body: str) -> int:
    """The GS1 check digit of the digits before it (weights 3,1,3 … from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def parse_sms_order(text: str) -> SmsOrder:
    """Read an SMS order; never raises: what is not understood is in ``errors``."""
    reference: tuple[str, int] | None = None
    items: list[SmsItem] = []
    errors: list[SmsLineError] = []
    ignored: list[int] = []
    closed_at: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = " ".join(raw.split())
        if not line:
            continue
        if closed_at is not None:
            # After "merci": a signature (name, phone …) is ignored, but an item is not
            # silently dropped.
            try:
                _items_of(line, number)
            except _LineProblem:
                ignored.append(number)
                continue
            errors.append(SmsLineError(number, line, f"an item after the closing "
                                       f"'{closed_at[1]}' (line {closed_at[0]}); put items "
                                       "before it"))
            continue
        if _CLOSING.match(line) and not any(c.isdigit() for c in line):
            closed_at = (number, line)
            ignored.append(number)
            continue
        if not items and reference is None and _GREETING.match(line) and \
                not any(c.isdigit() for c in line):
            ignored.append(number)
            continue
        ref = _REF_LINE.match(line)
        if ref is not None:
            value = ref.group("value").strip(" .")
            problem = _reference_problem(value, line, reference)
            if problem:
                errors.append(SmsLineError(number, line, problem))
            elif reference is None:
                reference = (value, number)
            continue
        try:
            items += _items_of(line, number)
        except _LineProblem as exc:
            errors.append(SmsLineError(number, line, exc.problem))
    if not items and not errors:
        errors.append(SmsLineError(None, "", "no items found"))
    return SmsOrder(reference=reference[0] if reference else None, items=tuple(items),
                    errors=tuple(errors), ignored=tuple(ignored))


def _reference_problem(value: str, line: str, seen: tuple[str, int] | None) -> str | None:
    keyword = line.split()[0].rstrip(":#=.-") or line[:1]
    if not value:
        return f"order reference missing after '{keyword}'"
    if len(value.split()) > 1:
        return "an order reference is one word; put items on their own lines"
    if len(value) > MAX_REFERENCE:
        return f"order reference longer than {MAX_REFERENCE} characters"
    if seen is not None:
        return f"a second order reference (the first is {seen[0]}, line {seen[1]})"
    return None


def _items_of(line: str, number: int) -> list[SmsItem]:
    """The items of one line; several when ';' or ',' separate complete items."""
    line = _DECIMAL_COMMA.sub("\\1\x00\\2", line)  # kept apart from the item separators
    chunks = [_tokens(c) for c in re.split(r"[;,]", line)]
    chunks = [c for c in chunks if c]
    if not chunks:
        raise _LineProblem("not an item")
    # A chunk holding only a code or only a quantity joins its neighbour ("ABC-12; 3").
    pending: list[_Token] = []
    groups: list[list[_Token]] = []
    for chunk in chunks:
        pending += chunk
        codes = [t for t in pending if t.kind == "code"]
        qtys = [t for t in pending if t.kind == "qty"]
        if codes and qtys:
            groups.append(pending)
            pending = []
    if pending:
        if groups and not any(t.kind in ("code", "qty") for t in pending):
            groups[-1] += pending  # a trailing unit or filler
        else:
            groups.append(pending)
    if len(groups) > 1 and any(not _complete(g) for g in groups):
        raise _LineProblem(_group_problem(next(g for g in groups if not _complete(g)))
                           + " (items on one line are separated by ';')")
    return [_item(g, number) for g in groups]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # code, qty, unit
    text: str
    value: Decimal | None = None
    unit: str | None = None
    forced: bool = False  # a code named by "art"


def _tokens(chunk: str) -> list[_Token]:
    words = [w for w in re.split(r"[\s:=*×]+", chunk) if w]
    out: list[_Token] = []
    force_next = False
    for word in words:
        word = word.replace("\x00", ",")
        w = word.strip(".!?()\"'").strip("-–") if word not in _MARKERS else word
        low = w.lower()
        if not w or low in _MARKERS or low in _FILLERS:
            continue
        if low in _CODE_PREFIX or word.lower() in _CODE_PREFIX:
            force_next = True
            continue
        if force_next:
            out.append(_Token("code", w.upper(), forced=True))
            force_next = False
            continue
        if low in _UNITS:
            out.append(_Token("unit", w, unit=_UNITS[low]))
            continue
        m = _NUMBER.match(w)
        if m and len(re.split(r"[.,]", m.group(1))[0]) <= 4:
            out.append(_quantity(m.group(1), w))
            continue
        m = _NUMBER_UNIT.match(w)
        if m and m.group(2).lower() in _UNITS and len(m.group(1)) <= 7:
            q = _quantity(m.group(1), w)
            out += [q, _Token("unit", m.group(2), unit=_UNITS[m.group(2).lower()])]
            continue
        out.append(_Token("code", w.upper()))
    if force_next:
        out.append(_Token("code", "", forced=True))
    return out


def _quantity(number: str, word: str) -> _Token:
    number = number.replace(",", ".")
    decimals = number.split(".")[1] if "." in number else ""
    if len(decimals) == 3:
        raise _LineProblem(f"quantity '{word}' is ambiguous: write "
                           f"{number.replace('.', '').lstrip('0') or '0'} or "
                           f"{format(Decimal(number).normalize(), 'f')}")
    if len(decimals) > 3:
        raise _LineProblem(f"quantity '{word}' has too many decimals")
    return _Token("qty", word, value=Decimal(number))


def _complete(group: list[_Token]) -> bool:
    return sum(t.kind == "code" for t in group) == 1 and sum(t.kind == "qty" for t in group) == 1


def _count(n: int) -> str:
    return _WORDS.get(n, str(n))


def _group_problem(group: list[_Token]) -> str:
    codes = [t for t in group if t.kind == "code"]
    qtys = [t for t in group if t.kind == "qty"]
    if not codes and not qtys:
        return "not an item"
    if not codes:
        if len(qtys) > 1:
            return (f"{_count(len(qtys))} quantities and no article code (a code of 4 digits "
                    "or fewer needs 'art' before it: art 4711 x 3)")
        return "no article code or GTIN"
    if not qtys:
        if len(codes) == 1:
            return f"no quantity for {codes[0].text}" if codes[0].text else "no quantity"
        return "not understood as an item: no quantity"
    if len(codes) > 1 and len(qtys) > 1:
        return "several items on one line: separate them with ';'"
    if len(codes) > 1:
        shown = ", ".join(f"'{c.text}'" for c in codes[:3])
        return f"{_count(len(codes))} article codes ({shown})"
    return f"{_count(len(qtys))} quantities"


def _item(group: list[_Token], number: int) -> SmsItem:
    if not _complete(group):
        raise _LineProblem(_group_problem(group))
    code = next(t for t in group if t.kind == "code")
    qty = next(t for t in group if t.kind == "qty")
    units = [t.unit for t in group if t.kind == "unit"]
    if not code.text:
        raise _LineProblem("article code missing after 'art'")
    assert qty.value is not None
    if qty.value == 0:
        raise _LineProblem("quantity 0")
    gtin = article = None
    if code.text.isdigit() and len(code.text) in _GTIN_LENGTHS and not code.forced:
        expected = gtin_check_digit(code.text[:-1])
        if int(code.text[-1]) != expected:
            raise _LineProblem(f"GTIN check digit should be {expected}")
        gtin = code.text
    else:
        article = code.text
    quantity = Decimal(int(qty.value)) if qty.value == qty.value.to_integral() else qty.value
    return SmsItem(code=code.text, gtin=gtin, article=article, quantity=quantity, line=number,
                   unit=units[0] if units else None)


# -- the reply --------------------------------------------------------------------------------

#: Characters of three concatenated SMS segments: GSM 03.38 (153 each) or UCS-2 (67 each).
GSM_LIMIT = 3 * 153
UCS2_LIMIT = 3 * 67
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMN"
            "OPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


def fits_sms(text: str) -> int:
    """How many characters three segments hold for this text (GSM-7 or UCS-2)."""
    return GSM_LIMIT if set(text) <= _GSM7 else UCS2_LIMIT


def _quantity_text(item: SmsItem) -> str:
    q = format(item.quantity, "f")
    return f"{q} x {item.code}"


def reply_text(order: SmsOrder, *, order_number: str | None = None) -> str:
    """The answer to an SMS order, within three SMS segments.

    Understood: the order number and every item with its quantity (the tail summarised if
    they do not fit). Not understood: the line(s) and why, and that nothing was ordered.
    """
    if order.ok:
        head = f"Order {order_number or order.reference or ''}".rstrip() + " received: "
        parts = [_quantity_text(i) for i in order.items]
        return _fit_list(head, parts, ".", lambda n: f" and {n} more item(s)")
    head = "Not ordered: "
    tail = (" Nothing was ordered; please send the whole order again."
            if order.items or len(order.errors) > 1 or order.errors[0].line is not None
            else " Please send one item per line: code and quantity, e.g. ABC-12 x 3.")
    parts = [_short(e) for e in order.errors]
    return _fit_list(head, parts, ".", lambda n: f" (+{n} more line(s))", tail=tail)


def _short(error: SmsLineError, width: int = 30) -> str:
    if error.line is None:
        return error.problem
    text = error.text if len(error.text) <= width else error.text[:width - 3] + "..."
    return f"line {error.line} '{text}': {error.problem}"


def _fit_list(head: str, parts: list[str], end: str, more: Callable[[int], str], *,
              tail: str = "") -> str:
    """``head`` + as many ``parts`` as fit, ``more(n)`` for the rest, then ``tail``."""
    for shown in range(len(parts), 0, -1):
        rest = len(parts) - shown
        text = head + "; ".join(parts[:shown]) + (more(rest) if rest else "") + end + tail
        if len(text) <= fits_sms(text):
            return text
    text = head + f"{len(parts)} line(s)" + end + tail
    return text[:fits_sms(text)]


def unknown_sender_reply(reference: str) -> str:
    """The polite answer to a number no partner profile lists."""
    return ("This number is not registered for ordering with us; your message was kept "
            f"(ref {reference}) and our team will contact you.")
