"""The text-message channel's partner administration: a partner's phone numbers.

A number is stored in E.164 (``+33612345678``), read in the region of ``[sms]``
(``default_region``, France when unset), and belongs to one partner only (``PartnerAdmin``
validates the profile against the others). These operations change a profile through
``PartnerAdmin.change``, so each is validated, written, reloaded and audited like any other.

The web is imported inside the functions: the channels do not build on the console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import phonenumbers

if TYPE_CHECKING:
    from gateway.channels.kind import PartnerFormPost
    from gateway.web.partners_admin import PartnerAdmin


def add_phone(admin: PartnerAdmin, actor: str, pid: str, number: str, *,
              remote: str | None = None) -> dict[str, Any]:
    """Add a number (normalised to E.164); Conflict when another partner has it."""
    e164 = e164_of(admin, number, pid)

    def edit(raw: dict[str, Any]) -> None:
        phones = raw.setdefault("identifiers", {}).setdefault("phone", [])
        if e164 not in {e164_of(admin, p, pid, quiet=True) for p in phones}:
            phones.append(e164)
    return admin.change(actor, pid, "partner.phone-add", edit, _phones, remote=remote)


def remove_phone(admin: PartnerAdmin, actor: str, pid: str, number: str, *,
                 remote: str | None = None) -> dict[str, Any]:
    """Remove a number, however written; Invalid when the partner does not have it."""
    from gateway.web.partners_admin import Invalid

    e164 = e164_of(admin, number, pid)

    def edit(raw: dict[str, Any]) -> None:
        ids = raw.get("identifiers", {})
        phones = ids.get("phone", [])
        kept = [p for p in phones if e164_of(admin, p, pid, quiet=True) != e164]
        if len(kept) == len(phones):
            raise Invalid("phone", f"{e164} is not one of the partner's numbers", partner=pid)
        if kept:
            ids["phone"] = kept
        else:  # an empty list is the default: dropped
            ids.pop("phone", None)
    return admin.change(actor, pid, "partner.phone-remove", edit, _phones, remote=remote)


def e164_of(admin: PartnerAdmin, number: str, pid: str, *, quiet: bool = False) -> str:
    """``number`` in E.164; Invalid when it is no valid number, unless ``quiet`` (then it is
    only normalised as profiles are, to compare numbers already written)."""
    from gateway.config import _norm_id
    from gateway.web.partners_admin import Invalid

    section = admin.settings.sms
    region = section.default_region if section else "FR"
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        if quiet:
            return _norm_id("phone", number)
        raise Invalid("phone", f"not a phone number: {exc}", partner=pid) from None
    if not phonenumbers.is_valid_number(parsed):
        if quiet:
            return _norm_id("phone", number)
        raise Invalid("phone", f"{number!r} is not a valid number (region {region})",
                      partner=pid)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def partner_form(post: PartnerFormPost) -> None:
    """The console's form: the numbers wanted, one a line (or comma separated); those missing
    are added, those no longer listed removed."""
    have = list(post.current.identifiers.phone) if post.current is not None else []
    text = post.field("phones").replace(",", "\n")
    want = [line.strip() for line in text.splitlines() if line.strip()]
    for number in want:
        if number not in have:
            add_phone(post.admin, post.actor, post.partner_id, number, remote=post.remote)
    for number in have:
        if number not in want:
            remove_phone(post.admin, post.actor, post.partner_id, number, remote=post.remote)


def _phones(raw: dict[str, Any]) -> dict[str, Any]:
    return {"phones": raw.get("identifiers", {}).get("phone", [])}
