"""The one search: a text pasted into the console's box, ``/api/search?q=`` or ``edigw find``
is recognised (``gateway.store.lookup``: a transmission or document id, an AS2 Message-ID, a
document number, a file name, an interchange reference, by exact index lookups), and the
tracker's verdict is about what it matched (``gateway.tracker.explain``).

A text that matches nothing is explained as a document number never received (the
question support asks most), with the evidence of "never received".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewaySettings, PartnerDirectory, TrackerSettings
from gateway.core.scope import EVERYTHING, Scope
from gateway.store import lookup
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.engine import one_connection
from gateway.tracker.explain import Explanation, check_partner, explain

#: Each kind of reference as the answer names it.
KIND_WORDS: dict[str, str] = {
    lookup.TRANSMISSION_ID: "transmission id",
    lookup.DOCUMENT_ID: "document id",
    lookup.AS2_MESSAGE_ID: "AS2 Message-ID",
    lookup.DOCUMENT_NUMBER: "document number",
    lookup.FILE_NAME: "file name",
    lookup.INTERCHANGE_REF: "interchange reference",
}


@dataclass(slots=True)
class Answer:
    """What ``text`` matched (the first kind decides; the others are told), and the verdict
    about it."""

    text: str
    explanation: Explanation
    matched: list[lookup.Recognised] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        return self.matched[0].kind if self.matched else None

    @property
    def kind_words(self) -> str:
        return KIND_WORDS[self.kind] if self.kind else "nothing on record"

    def as_dict(self) -> dict[str, Any]:
        """The matches first (what matched, then the hits), then the verdict."""
        verdict = self.explanation.as_dict()
        return {"q": self.text, "matched": self.kind, "matched_as": self.kind_words,
                "also_matched": [KIND_WORDS[r.kind] for r in self.matched[1:]],
                "hits": verdict.pop("hits"), **verdict}


@one_connection
def answer(store: Store, partners: PartnerDirectory | None,
           settings: GatewaySettings | TrackerSettings, text: str, *,
           partner: str | None = None, scope: Scope = EVERYTHING,
           archive: Archive | None = None, now: dt.datetime | None = None) -> Answer:
    """Recognise ``text`` (within ``partner``, or a client's own) and explain what it
    matched. ``NoSuchPartner`` for a partner with no profile and nothing on record,
    ``OutOfScope`` for a client naming another partner."""
    text = text.strip()
    partner = scope.narrow(partner)
    check_partner(store, partners, partner)
    found = lookup.recognise(store, text, partner=partner)
    common: dict[str, Any] = dict(partner=partner, scope=scope, archive=archive, now=now)
    kind = found[0].kind if found else lookup.DOCUMENT_NUMBER
    if kind == lookup.DOCUMENT_NUMBER:
        out = explain(store, partners, settings, number=text, **common)
    elif kind == lookup.FILE_NAME:
        out = explain(store, partners, settings, filename=text, **common)
    elif kind == lookup.INTERCHANGE_REF:
        out = explain(store, partners, settings, interchange_ref=text, **common)
    else:
        out = explain(store, partners, settings, transmission_ids=found[0].transmission_ids,
                      **common)
    return Answer(text=text, explanation=out, matched=found)
