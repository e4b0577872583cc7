"""Whose data a request may see: every partner's (staff) or one partner's (a client user).

Read models and repositories take a ``Scope`` and put its partner into their SQL, so a
client's question can never reach another partner's rows, whatever the route, filter or id
it sends. ``EVERYTHING`` is the staff's scope.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    """``partner`` None: every partner; else only that partner's data."""

    partner: str | None = None

    @property
    def restricted(self) -> bool:
        return self.partner is not None

    def allows(self, partner_id: str | None) -> bool:
        """Whether a row of ``partner_id`` (None: no partner known) is in the scope."""
        return self.partner is None or partner_id == self.partner

    def narrow(self, partner: str | None) -> str | None:
        """The partner filter to apply when a request asks for ``partner``: a client's own
        partner whatever it asks (``OutOfScope`` for another one), staff's choice else."""
        if self.partner is None:
            return partner
        if partner not in (None, "", self.partner):
            raise OutOfScope(f"partner {partner!r} is not yours")
        return self.partner


class OutOfScope(LookupError):
    """A client asked for another partner's data: answered as not found."""


EVERYTHING = Scope()


def of_partner(partner_id: str) -> Scope:
    """The scope of a client user of ``partner_id``."""
    if not partner_id:
        raise ValueError("a client's scope needs its partner")
    return Scope(partner=partner_id)
