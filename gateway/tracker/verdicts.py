"""The verdicts of "where is order X?": their machine codes, their plain words, and what a
script makes of them (an outcome and ``edigw explain``'s exit code).

    code                   words                                          outcome    exit
    acknowledged           accepted by the ERP                            fine       0
    delivered              delivered to the partner                       fine       0
    duplicate              a repeat of one received before                fine       0
    receipt                the partner's receipt for what we sent         fine       0
    waiting-erp            waiting for the ERP's acknowledgement          waiting    4
                           (published, no acknowledgement expected)       fine       0
    in-progress            received, on its way to the ERP                waiting    4
    sent-awaiting-receipt  sent, waiting for the partner's receipt        waiting    4
    retrying               delivery failed, being retried                 waiting    4
    held                   held until an operator decides                 waiting    4
    failed                 received but failed                            failed     1
    quarantined            quarantined: the sender is not recognised      failed     1
    rejected               rejected                                       failed     1
    never-received         never received                                 not-found  3
    not-sent               not sent: the ERP never handed it over         not-found  3

Exit code 2 is a usage error or an unknown partner (``NoSuchPartner``).
"""

from __future__ import annotations

from gateway.core.errors import EdigwError

NEVER_RECEIVED = "never-received"
FAILED = "failed"
DUPLICATE = "duplicate"
IN_PROGRESS = "in-progress"
WAITING_ERP = "waiting-erp"
ACKNOWLEDGED = "acknowledged"
REJECTED = "rejected"
QUARANTINED = "quarantined"
#: Held as a CONFLICT (its number came before with other content) until an operator decides.
HELD = "held"
# Documents we send (an outbound transmission): was it delivered?
DELIVERED = "delivered"
SENT_AWAITING_RECEIPT = "sent-awaiting-receipt"
RETRYING = "retrying"
#: The ERP never sent it: no outbound document of that number.
NOT_SENT = "not-sent"
#: A file of the partner's receipts (CONTRL, APERAK) for what we sent, recorded on it.
RECEIPT = "receipt"
VERDICTS = (NEVER_RECEIVED, FAILED, DUPLICATE, IN_PROGRESS, WAITING_ERP, ACKNOWLEDGED,
            REJECTED, QUARANTINED, HELD, DELIVERED, SENT_AWAITING_RECEIPT, RETRYING, NOT_SENT,
            RECEIPT)

#: Each verdict as a support person says it.
WORDS: dict[str, str] = {
    NEVER_RECEIVED: "never received",
    FAILED: "received but failed",
    DUPLICATE: "a repeat of one received before (not passed on again)",
    IN_PROGRESS: "received, on its way to the ERP",
    WAITING_ERP: "waiting for the ERP's acknowledgement",
    ACKNOWLEDGED: "accepted by the ERP",
    REJECTED: "rejected",
    QUARANTINED: "quarantined: the sender is not recognised",
    HELD: "held until an operator decides",
    DELIVERED: "delivered to the partner",
    SENT_AWAITING_RECEIPT: "sent, waiting for the partner's receipt",
    RETRYING: "delivery failed, being retried",
    NOT_SENT: "not sent: the ERP never handed it over",
    RECEIPT: "the partner's receipt for what edigw sent",
}

FINE = "fine"
WAITING = "waiting"
FAILING = "failed"
NOT_FOUND = "not-found"
#: What each verdict means to a script (a published document no acknowledgement is expected
#: for is ``fine``: ``Explanation.outcome`` says so).
OUTCOMES: dict[str, str] = {
    ACKNOWLEDGED: FINE, DELIVERED: FINE, DUPLICATE: FINE, RECEIPT: FINE,
    WAITING_ERP: WAITING, IN_PROGRESS: WAITING, SENT_AWAITING_RECEIPT: WAITING,
    RETRYING: WAITING, HELD: WAITING,
    FAILED: FAILING, QUARANTINED: FAILING, REJECTED: FAILING,
    NEVER_RECEIVED: NOT_FOUND, NOT_SENT: NOT_FOUND,
}
#: ``edigw explain``'s exit code per outcome; 2 is a usage error or an unknown partner.
EXIT_CODES: dict[str, int] = {FINE: 0, FAILING: 1, NOT_FOUND: 3, WAITING: 4}
USAGE_EXIT = 2


def words(verdict: str) -> str:
    """The verdict in plain words (its code when it has none)."""
    return WORDS.get(verdict, verdict)


def outcome(verdict: str) -> str:
    return OUTCOMES.get(verdict, FAILING)


class NoSuchPartner(EdigwError, LookupError):
    """A search or explanation asked about a partner with no profile and nothing on record."""

    def __init__(self, partner: str) -> None:
        super().__init__(f"unknown partner {partner!r}: no partner profile has this id and "
                         "nothing was ever received from or sent to it")
        self.partner = partner
