"""An independent reading of EDIFACT with plain string splits (no edigw code), for the
corpus tests to compare the gateway's documents with."""

from __future__ import annotations


def plain_messages(data: bytes) -> list[list[list[list[str]]]] | None:
    """Messages (UNH..UNT) as segments of elements of components; None when the file uses
    its release character (plain splits would read it wrong: the test then skips the
    comparison for that file)."""
    text = data.decode("latin-1").lstrip("\ufeff \r\n")
    comp, elem, term, release = ":", "+", "'", "?"
    if text.startswith("UNA"):
        comp, elem, release, term = text[3], text[4], text[6], text[8]
        text = text[9:]
    if release in text:
        return None
    messages, current = [], None
    for raw in text.split(term):
        seg = [e.split(comp) for e in raw.replace("\r", "").replace("\n", "").strip().split(elem)]
        tag = seg[0][0]
        if tag == "UNH":
            current = []
        if current is not None:
            current.append(seg)
        if tag == "UNT":
            messages.append(current)
            current = None
    return messages
