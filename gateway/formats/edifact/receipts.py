"""Receipts partners send for what edigw sent them: CONTRL and APERAK messages read as a
``PartnerReceipt`` (``gateway.core.ports``), which the pipeline records on the outbound
payload they name.

- **CONTRL** names the interchange it answers in its UCI (0020, the control reference we
  gave it). The UCI's action (0083) says what became of it: 7 acknowledged, 8 received
  (with remarks: still positive, the note is kept), 4 rejected. A UCM whose action is 4
  rejects that message: for us (one document per interchange) the receipt is negative.
  Error codes (0085) of the UCI, UCM, UCS and UCD are named in the text.
- **APERAK** names our document by number: DOC (C503 1004) and RFF (C506 1154). BGM 4343
  AP/AB/CA is positive and RE negative; without it an ERC (application error) makes it
  negative. ERC codes and FTX texts go into the text.
"""

from __future__ import annotations

from gateway.core.ports import PartnerReceipt
from gateway.formats.edifact.model import Message

#: UCI/UCM action codes (0083).
ACKNOWLEDGED, RECEIVED, REJECTED = "7", "8", "4"
_ACTIONS = {ACKNOWLEDGED: "acknowledged", RECEIVED: "received with remarks",
            REJECTED: "rejected"}
#: BGM 4343 response types of an APERAK.
_POSITIVE, _NEGATIVE = ("AP", "AB", "CA"), ("RE",)
RECEIPT_TYPES = ("CONTRL", "APERAK")


def read_receipt(message: Message) -> PartnerReceipt | None:
    """The receipt ``message`` is (a CONTRL or APERAK that names something), or None."""
    if message.type == "CONTRL":
        return _contrl(message)
    if message.type == "APERAK":
        return _aperak(message)
    return None


def _contrl(message: Message) -> PartnerReceipt | None:
    uci = next((s for s in message.segments if s.tag == "UCI"), None)
    if uci is None or not uci.get(0):
        return None
    ref, action = uci.get(0), uci.get(3)
    errors: list[str] = []
    if uci.get(4):
        errors.append(f"interchange: error {uci.get(4)}"
                      + (f" in {uci.get(5)}" if uci.get(5) else ""))
    rejected_messages: list[str] = []
    current = ""
    for seg in message.segments:
        if seg.tag == "UCM":
            current = seg.get(0)
            if seg.get(2) == REJECTED:
                rejected_messages.append(current)
            if seg.get(3):
                errors.append(f"message {current}: error {seg.get(3)}"
                              + (f" in {seg.get(4)}" if seg.get(4) else ""))
        elif seg.tag == "UCS":
            errors.append(f"message {current} segment {seg.get(0)}"
                          + (f": error {seg.get(1)}" if seg.get(1) else ""))
        elif seg.tag == "UCD":
            where = "/".join(x for x in (seg.get(1, 0), seg.get(1, 1)) if x)
            errors.append(f"element {where or '?'}: error {seg.get(0)}")
    ok = action in (ACKNOWLEDGED, RECEIVED) and not rejected_messages
    words = _ACTIONS.get(action, f"action {action or 'missing'}")
    text = f"CONTRL {message.ref}: interchange {ref} {words} (UCI action {action or '-'})"
    if rejected_messages:
        text += f"; message(s) {', '.join(rejected_messages)} rejected"
    if errors:
        text += "; " + "; ".join(errors[:20])
    return PartnerReceipt(kind="CONTRL", ok=ok, text=text, control_ref=ref)


def _aperak(message: Message) -> PartnerReceipt | None:
    numbers: list[str] = []
    response = ""
    own = ""
    codes: list[str] = []
    texts: list[str] = []
    for seg in message.segments:
        if seg.tag == "BGM":
            own, response = seg.get(1, 0), seg.get(3)
        elif seg.tag == "DOC" and seg.get(1, 0):
            numbers.append(seg.get(1, 0))
        elif seg.tag == "RFF" and seg.get(0, 1):
            numbers.append(seg.get(0, 1))
        elif seg.tag == "ERC":
            codes.append(seg.get(0, 0) or "?")
        elif seg.tag == "FTX":
            texts.append(" ".join(x for x in (seg.get(3, 0), seg.get(3, 1)) if x))
    if not numbers:
        return None
    if response in _POSITIVE:
        ok = True
    elif response in _NEGATIVE:
        ok = False
    else:
        ok = not codes
    text = (f"APERAK {own or message.ref} for {', '.join(dict.fromkeys(numbers))}: "
            + ("accepted" if ok else "rejected")
            + (f" (BGM 4343 {response})" if response else ""))
    if codes:
        text += "; errors " + ", ".join(codes[:20])
    said = [t for t in texts if t]
    if said:
        text += "; " + "; ".join(said[:10])
    return PartnerReceipt(kind="APERAK", ok=ok, text=text,
                          numbers=tuple(dict.fromkeys(numbers)))
