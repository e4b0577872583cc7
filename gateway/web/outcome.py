"""What happened to a transmission, in a person's words: the badge of its page and the
``outcome`` of its API view ("1 of 2 failed", "rejected by the ERP", "20,000 documents
published", "quarantined: unknown sender", "held: partner suspended")."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.lifecycle import DRAFT_REASON, STAGE, SUSPENDED_REASON
from gateway.core.status import DocumentStatus as D
from gateway.core.status import TransmissionStatus as T
from gateway.store.read.transmission import DocumentCounts
from gateway.store.records import TransmissionRow

#: Documents that did not go on (the others were published, are on their way or repeats).
NOT_GONE_ON = (D.FAILED, D.UNSUPPORTED, D.REJECTED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The words, and ``tone``: ``ok``, ``wait``, ``bad`` or ``held`` (the badge's colour)."""

    words: str
    tone: str


def _n(count: int, thing: str) -> str:
    return f"{count:,} {thing}{'' if count == 1 else 's'}"


def _outbound(t: TransmissionRow) -> Outcome:
    words: dict[str, Outcome] = {T.RECEIVED: Outcome("received from the ERP, not rendered yet", "wait"),
            T.RENDERED: Outcome("rendered, waiting to be sent", "wait"),
            T.SENT: Outcome("sent, waiting for the partner's receipt", "wait"),
            T.DELIVERED: Outcome("delivered to the partner", "ok")}
    return words.get(t.status,
                     Outcome(f"not sent: failed at {t.stage or 'an unknown stage'}", "bad"))


def _quarantined(t: TransmissionRow) -> Outcome:
    reason = t.reason or ""
    if t.stage == STAGE and reason.startswith(SUSPENDED_REASON.split(":")[0]):
        return Outcome("held: partner suspended", "held")
    if t.stage == STAGE and reason.startswith(DRAFT_REASON):
        return Outcome("kept back: partner not yet in test", "held")
    if "disabled" in reason:
        return Outcome("quarantined: partner disabled", "held")
    return Outcome("quarantined: unknown sender", "held")


def _published(counts: DocumentCounts) -> Outcome:
    published = counts.count(D.PUBLISHED)
    rejected, accepted = counts.erp["rejected"], counts.erp["accepted"]
    if rejected:
        return Outcome("rejected by the ERP" if rejected == published
                       else f"{rejected:,} of {published:,} rejected by the ERP", "bad")
    if published and accepted == published:
        return Outcome(f"{_n(published, 'document')} published, accepted by the ERP", "ok")
    if published:
        return Outcome(f"{_n(published, 'document')} published", "ok")
    repeats = counts.count(D.DUPLICATE)
    if repeats:
        return Outcome(f"nothing new: {_n(repeats, 'repeat')} of documents received before",
                       "ok")
    return Outcome("nothing to publish", "ok")


def outcome(t: TransmissionRow, counts: DocumentCounts) -> Outcome:
    """What happened to ``t``, from its status, stage, reason and its documents' counts."""
    if t.direction == "out":
        return _outbound(t)
    total, failed = counts.total, counts.count(*NOT_GONE_ON)
    match t.status:
        case T.RECEIVED:
            return Outcome("received, waiting to be processed", "wait")
        case T.DUPLICATE:
            return Outcome("a repeat of a file received before", "ok")
        case T.QUARANTINED:
            return _quarantined(t)
        case T.FAILED if total > 1:
            return Outcome(f"{failed:,} of {total:,} failed", "bad")
        case T.FAILED:
            return Outcome(f"failed at {t.stage or 'an unknown stage'}", "bad")
        case T.PARTIAL:
            return Outcome(f"{failed:,} of {total:,} failed", "bad")
        case T.HELD:
            held = counts.count(D.CONFLICT)
            return Outcome(f"held: {_n(held, 'document')} with a known number and other "
                           "content", "held")
        case T.PROCESSED if not total:
            return Outcome("processed: nothing in it goes to the ERP", "ok")
        case T.PROCESSED:
            waiting = counts.count(D.PENDING, D.HELD)
            said = (f"{_n(waiting, 'document')} waiting for the broker" if waiting
                    else f"{_n(total, 'document')} processed")
            if failed:
                return Outcome(f"{failed:,} of {total:,} failed; {said}", "bad")
            return Outcome(said, "wait")
        case T.PUBLISHED:
            return _published(counts)
    return Outcome(str(t.status).lower(), "wait")


__all__ = ["NOT_GONE_ON", "Outcome", "outcome"]
