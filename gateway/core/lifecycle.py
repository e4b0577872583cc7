"""A partner's onboarding state as the pipeline applies it (docs/onboarding.md).

- ``draft``: its files are received and archived, then quarantined with the reason
  ``DRAFT_REASON`` (stage ``partner``); an operator may reprocess them once it is in test.
- ``test``: processed and mapped as usual, published with routing key
  ``test.<doctype>.<partner>`` (``core.documents.routing_key``), never to the production
  queues.
- ``live``: production.
- ``suspended``: its files are received and held: quarantined with ``SUSPENDED_REASON``
  before anything is mapped, so nothing is published and no reply (CONTRL) is made; going
  live again releases them (``tracker.onboarding.release_held``). What we send it waits
  in the outbound queue (the dispatcher skips it) until it is live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.core.errors import PartnerNotLive, PayloadError, UnknownPartner

#: The stage of a transmission kept back because of its partner's state.
STAGE = "partner"
DRAFT_REASON = "partner not yet in test"
SUSPENDED_REASON = "partner suspended: held until it is live again"

#: The states, in the order an onboarding goes through them.
STATES: tuple[str, ...] = ("draft", "test", "live", "suspended")


def admit(partner_id: str, state: str) -> None:
    """Raise ``PartnerNotLive`` when a file of a partner in ``state`` is to be kept back."""
    if state == "draft":
        raise PartnerNotLive(DRAFT_REASON, partner_id=partner_id, state=state)
    if state == "suspended":
        raise PartnerNotLive(SUSPENDED_REASON, partner_id=partner_id, state=state)


#: The beginning of the reason of a file kept back because its partner's profile names a
#: mapping that did not load (``disabled_by``).
DISABLED_REASON = "partner disabled"


def disabled_by(partner_id: str, named: Sequence[str], broken: Mapping[str, str]) -> None:
    """Raise ``PartnerNotLive`` when the partner's profile names a mapping that was left
    out (``broken``: id -> why): its file is quarantined, attributed to it, with the
    mapping and what is wrong with it, and can be reprocessed once the mapping is fixed."""
    for name in named:
        why = broken.get(name)
        if why is not None:
            raise PartnerNotLive(f"{DISABLED_REASON}: its mapping {name!r} did not load "
                                 f"({why}); reprocess once it is fixed",
                                 partner_id=partner_id, state="disabled")


def is_test(state: str) -> bool:
    """Its documents go to the test queue."""
    return state == "test"


#: The timeline event of a transmission processed while its partner was in test: what the
#: go-live checklist (``tracker.onboarding``) counts.
TEST_EVENT = "test"


def test_event(partner_id: str) -> tuple[str, str]:
    return (TEST_EVENT, f"partner {partner_id} in test: its documents go to the test queue "
                        f"(routing key test.<doctype>.{partner_id}), not to production")


def quarantines(exc: PayloadError) -> bool:
    """Whether a payload error keeps the transmission QUARANTINED (its partner unknown, or
    taking no files: reprocessed once that changes) rather than FAILED."""
    return isinstance(exc, (UnknownPartner, PartnerNotLive))
