"""Which partner a payload is from: the channel's, or the one its senders' identifiers name
in the partner directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.core import iso6523
from gateway.core.errors import UnknownPartner
from gateway.core.ports import P, Partners, Sender


def identify(partners: Partners[P], senders: Sequence[Sender], hint: str | None,
             nobody: Callable[[], str]) -> P:
    """The partner ``senders`` name, or the channel's (``hint``); ``nobody()`` is the
    reason when neither says. Raises UnknownPartner."""
    hinted = partners.get(hint) if hint else None
    if hint and hinted is None:
        raise UnknownPartner(f"channel names partner {hint!r}, which has no profile")
    found: dict[str, P] = {}
    unknown: list[Sender] = []
    malformed: dict[Sender, str] = {}
    schemes = (*partners.SCHEMES, "unb")
    # XML and CSV senders name their scheme (gln, vat, siren, iso6523 …) as qualifier;
    # EDIFACT's are UNB ids with their 0007 qualifier (14, ZZ …).
    by_scheme = any(s.qualifier in schemes for s in senders)
    for sender in senders:
        if sender.id is None:
            continue
        if sender.qualifier is not None and sender.qualifier in schemes:
            why = iso6523.problem(sender.qualifier, sender.id)
            if why is not None:  # a wrong check digit names nobody, said in the reason
                malformed[sender] = why
                unknown.append(sender)
                continue
            p = partners.by_identifier(sender.qualifier, sender.id)
        else:
            p = partners.by_unb_sender(sender.id, sender.qualifier)
        if p is None:
            unknown.append(sender)
        elif by_scheme and found:
            continue  # one document, several ids of its sender: the first match decides
        else:
            found[p.id] = p
    if len(found) > 1:
        raise UnknownPartner("one file holds interchanges from several partners: "
                             + ", ".join(sorted(found)))
    if found:
        partner = next(iter(found.values()))
        if hinted and partner.id != hinted.id:
            # The other partner is not named: the reason is shown to the partner whose
            # channel (or portal account) brought the file.
            named = next((f"{s.id}" for s in senders if s.id), "its sender")
            raise UnknownPartner(
                f"file came through partner {hinted.id}'s channel but its sender {named} "
                "is declared by another partner's profile")
        if not partner.enabled:
            raise UnknownPartner(f"partner {partner.id} is disabled")
        return partner
    if hinted:
        return hinted
    if unknown and by_scheme:
        ids = ", ".join(_named(u, malformed.get(u)) for u in unknown[:5])
        raise UnknownPartner(f"unknown sender ({ids}): no partner profile lists these "
                             "identifiers", sender_id=unknown[0].id,
                             qualifier=unknown[0].qualifier)
    if unknown:
        u = unknown[0]
        q = f" (qualifier {u.qualifier})" if u.qualifier else ""
        raise UnknownPartner(f"unknown sender id {u.id}{q}: no partner profile lists it "
                             "under identifiers.unb", sender_id=u.id, qualifier=u.qualifier)
    raise UnknownPartner(nobody())


def _named(sender: Sender, malformed: str | None) -> str:
    """One identifier in an unknown sender's reason, as ``core.senders`` reads it back:
    ``gln 5401234000012``, ``0192 (NO:ORG) 987654321`` (an ISO 6523 id, its scheme in
    words), ``14 5401234000012`` (UNB), and ``… (malformed: why)`` when it names nobody."""
    if sender.qualifier == "iso6523" and sender.id is not None:
        text = iso6523.label(sender.id)
    else:
        text = f"{sender.qualifier or 'id'} {sender.id}"
    if malformed is not None:
        text += f" (malformed: {malformed.replace(', ', ' ')})"
    return text
