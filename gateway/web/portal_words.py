"""The client portal's words: statuses and the tracker's verdicts said the way a partner's
own staff understand them (no stage names, no queue, no ERP jargon).

``transmission_words``, ``document_words`` and ``sent_words`` give a short label and a
tone (``ok``, ``wait``, ``bad``) for a status; ``verdict_sentence`` turns the verdict of
``gateway.tracker.explain`` (the same one support sees) into one sentence for the client;
``plain_reason`` makes a rejection's reason readable (the technical position kept, the
stage dropped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.core import lifecycle
from gateway.core.status import DocumentStatus as D
from gateway.core.status import ErpStatus
from gateway.core.status import OutboundStatus as O
from gateway.core.status import TransmissionStatus as T
from gateway.tracker import explain as v


@dataclass(frozen=True, slots=True)
class Words:
    """A status as the client reads it: a label, a sentence, and its tone for the page."""

    label: str
    sentence: str
    tone: str  # "ok", "wait" or "bad"


#: A file the client sent, by the transmission's status.
TRANSMISSION_WORDS: dict[str, Words] = {
    T.RECEIVED: Words("Received", "We have your file and are reading it.", "wait"),
    T.PROCESSED: Words("Read", "Your file was read; its documents are being passed on to "
                       "our order system.", "wait"),
    T.PUBLISHED: Words("Passed on", "Your file was read and every document in it was "
                       "passed on to our order system.", "ok"),
    T.FAILED: Words("Rejected", "We could not read your file; nothing in it was passed on. "
                    "See why below, correct it and send it again.", "bad"),
    T.QUARANTINED: Words("On hold for checking", "We could not tell this file is yours; our "
                         "team is checking it. Nothing in it was passed on yet.", "bad"),
    T.DUPLICATE: Words("Already received", "This exact file came before; we kept the first "
                       "one and did not count it twice.", "ok"),
    T.PARTIAL: Words("Partly rejected", "Some documents of your file were passed on, "
                     "others were rejected: see which below.", "bad"),
    T.HELD: Words("Waiting for our team", "A document repeats the number of an earlier one "
                  "with other content; our team decides which one counts.", "wait"),
    # Documents we send to the client (direction "out").
    T.RENDERED: Words("Prepared", "Prepared for you; it leaves shortly.", "wait"),
    T.SENT: Words("Sent", "Sent to you; your system's receipt has not come back yet.", "wait"),
    T.DELIVERED: Words("Delivered", "Delivered to you, and your system confirmed it.", "ok"),
}

#: One document of a file, by the document's status (and the ERP's answer, see
#: ``document_words``).
DOCUMENT_WORDS: dict[str, Words] = {
    D.PENDING: Words("Being passed on", "Read, being passed on to our order system.", "wait"),
    D.PUBLISHED: Words("Passed on", "Passed on to our order system.", "ok"),
    D.UNROUTABLE: Words("Waiting for our team", "Read; our team must route it to the right "
                        "department.", "wait"),
    D.DUPLICATE: Words("Already received", "The same document came before; counted once.",
                       "ok"),
    D.FAILED: Words("Rejected", "This document could not be read; see why.", "bad"),
    D.UNSUPPORTED: Words("Not expected", "We do not take this kind of document from you "
                         "electronically; please contact us.", "bad"),
    D.HELD: Words("Being checked", "Being checked with the rest of its file.", "wait"),
    D.CONFLICT: Words("Waiting for our team", "Its number came before with other content; "
                      "our team decides which one counts.", "wait"),
    D.REJECTED: Words("Refused", "Its number came before with other content and our team "
                      "kept the earlier one.", "bad"),
    D.OUTBOUND: Words("Sent by us", "A document we sent you.", "ok"),
}

#: A payload we send the client (acknowledgement, invoice …), by the outbound row's status.
SENT_WORDS: dict[str, Words] = {
    O.PENDING: Words("Leaving shortly", "Prepared; it leaves shortly.", "wait"),
    O.SENT: Words("Sent", "Sent; your system's receipt has not come back yet.", "wait"),
    O.DELIVERED: Words("Delivered", "Delivered, and your system confirmed it.", "ok"),
    O.FAILED: Words("Not delivered", "We could not deliver it; our team has been told.",
                    "bad"),
}

_UNKNOWN = Words("In progress", "We are working on it.", "wait")

#: What each kind of payload we send is, for the client.
KIND_LABELS = {"contrl": "Acknowledgement (CONTRL)", "aperak": "Application answer (APERAK)",
               "order-response": "Order response", "invoice": "Invoice",
               "price-list": "Price list", "despatch-advice": "Despatch advice",
               "mail-reply": "E-mail answer"}


#: A file kept back by the partner's own onboarding state, not by a doubt about its sender.
KEPT_BACK_WORDS: dict[str, Words] = {
    lifecycle.SUSPENDED_REASON: Words(
        "Held", "Your account is paused: we keep your file and pass it on as soon as it is "
        "active again.", "wait"),
    lifecycle.DRAFT_REASON: Words(
        "Kept", "Your account is not yet open for test files: we keep your file, and our "
        "team processes it once it is.", "wait"),
}


def transmission_words(status: str, reason: str | None = None) -> Words:
    if status == T.QUARANTINED and reason in KEPT_BACK_WORDS:
        return KEPT_BACK_WORDS[reason]
    return TRANSMISSION_WORDS.get(status, _UNKNOWN)


def document_words(status: str, erp_status: str | None = None) -> Words:
    """A document's words; once passed on, the order system's answer decides."""
    if erp_status == ErpStatus.ACCEPTED:
        return Words("Accepted", "Accepted by our order system.", "ok")
    if erp_status == ErpStatus.REJECTED:
        return Words("Refused by our order system", "Our order system refused it; see why.",
                     "bad")
    return DOCUMENT_WORDS.get(status, _UNKNOWN)


def sent_words(status: str) -> Words:
    return SENT_WORDS.get(status, _UNKNOWN)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("-", " ").capitalize())


#: The tracker's verdicts (``gateway.tracker.explain.VERDICTS``) for the client; ``{what}``
#: is what was asked about ("order PO-1"), ``{reason}`` the reason in plain words.
VERDICT_SENTENCES: dict[str, str] = {
    v.NEVER_RECEIVED: "We have not received {what}. If you sent it, please send it again or "
                      "upload it here.",
    v.FAILED: "We received {what} but could not read it, so it was not passed on{reason}. "
              "Please correct it and send it again.",
    v.DUPLICATE: "We received {what} more than once; it is counted once.",
    v.IN_PROGRESS: "We received {what}; it is being passed on to our order system.",
    v.WAITING_ERP: "We received {what} and passed it on; our order system has not confirmed "
                   "it yet.",
    v.ACKNOWLEDGED: "We received {what} and our order system accepted it.",
    v.REJECTED: "We received {what} but our order system refused it{reason}.",
    v.QUARANTINED: "We received a file that may be {what}, but could not tell it was yours; "
                   "our team is checking it.",
    v.HELD: "We received {what}, but its number came before with other content; our team "
            "decides which one counts.",
    v.DELIVERED: "We sent you {what} and your system confirmed it.",
    v.SENT_AWAITING_RECEIPT: "We sent you {what}; your system's receipt has not come back "
                             "yet.",
    v.RETRYING: "We are sending you {what}; the last attempt did not go through and we are "
                "trying again.",
    v.NOT_SENT: "We have not sent you {what} yet.",
    v.RECEIPT: "We received your acknowledgement of {what}.",
}
#: Each verdict's tone on the page.
VERDICT_TONES: dict[str, str] = {
    v.NEVER_RECEIVED: "bad", v.FAILED: "bad", v.DUPLICATE: "ok", v.IN_PROGRESS: "wait",
    v.WAITING_ERP: "wait", v.ACKNOWLEDGED: "ok", v.REJECTED: "bad", v.QUARANTINED: "bad",
    v.HELD: "wait", v.DELIVERED: "ok", v.SENT_AWAITING_RECEIPT: "wait", v.RETRYING: "wait",
    v.NOT_SENT: "wait", v.RECEIPT: "ok"}

# "stage: " prefixes and internal words a client has no use for.
_STAGE = re.compile(r"^(?:receive|detect|parse|partner|identify|map|mapping|validate|structure|"
                    r"syntax|publish|duplicate|conflict|unsupported|archive|process)\s*:\s*",
                    re.IGNORECASE)


_EXCERPT = re.compile(r"\s*\(readers: [^)]*\)|;?\s*file starts with .*$")


def plain_reason(reason: str | None, limit: int = 400) -> str | None:
    """A rejection's reason for the client: the stage prefix dropped, one line, bounded."""
    if not reason:
        return None
    text = " ".join(reason.split())
    text = _STAGE.sub("", text)
    # The reader's excerpt of an unrecognised file is for support, not the client.
    text = _EXCERPT.sub("", text).strip(" ;")
    text = text[:1].upper() + text[1:]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def verdict_sentence(verdict: str, what: str, reason: str | None = None) -> str:
    """The client's sentence for ``verdict`` about ``what`` ("order PO-1")."""
    template = VERDICT_SENTENCES.get(verdict, "We are looking into {what}.")
    plain = plain_reason(reason)
    return template.format(what=what, reason=f": {plain.rstrip('.')}" if plain else "")
