"""What the command line says of this channel: the problems ``edigw check-config`` finds in
``[as2]`` and the partners' AS2 profiles, and an AS2 message as ``edigw show`` prints it.
The keys module (and its crypto) is imported only when there is something to check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.core.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, Partner, PartnerDirectory


def problems(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    """Each partner's AS2 profile, then our own identities."""
    found = []
    for p in partners:
        found += _partner_problems(p, settings)
    return found + _identity_problems(settings)


def _partner_problems(p: Partner, s: GatewaySettings) -> list[str]:
    """A partner's AS2 profile: its certificates readable, our identity there to answer."""
    if p.as2 is None:
        return []
    from gateway.channels.as2.keys import load_ca_certificates, load_partner_certificates

    found = []
    if s.as2 is None:
        found.append(f"{p.source}: as2 needs [as2] with our identity in {s.source}")
    elif p.as2.our_as2_id and p.as2.our_as2_id not in {i.as2_id for i in s.as2.identities}:
        found.append(f"{p.source}: as2.our_as2_id {p.as2.our_as2_id!r} is none of the "
                     f"identities in {s.source}")
    if not p.as2.certificates:
        found.append(f"{p.source}: as2.certificates: the partner's certificate is needed "
                     "to verify its signatures")
    try:
        load_partner_certificates(p.as2)
        load_ca_certificates(p.as2)
    except ConfigError as exc:
        found.append(f"{p.source}: {exc}")
    return found


def _identity_problems(s: GatewaySettings) -> list[str]:
    """Our AS2 keys load (passphrase right, key matching its certificate)."""
    if s.as2 is None:
        return []
    from gateway.channels.as2.keys import load_identity

    found = []
    if not s.as2.identities:
        found.append(f"{s.source}: as2.identities: at least our own AS2 identity")
    for ident in s.as2.identities:
        try:
            load_identity(ident)
        except (ConfigError, OSError) as exc:
            found.append(f"{s.source}: as2 identity {ident.as2_id}: {exc}")
    return found


def shown(a: Mapping[str, Any]) -> tuple[str, list[tuple[str, object]]]:
    """The AS2 message that brought a transmission, and its MDN."""
    security = ", ".join(n for n in ("signed", "encrypted", "compressed") if a[n]) or "plain"
    return "AS2", [("Message-ID", a["message_id"]),
                   ("from / to", f"{a['as2_from']} -> {a['as2_to']}"),
                   ("security", security + (f" ({a['algorithms']})" if a["algorithms"] else "")),
                   ("MIC", a["mic"]), ("disposition", a["disposition"]),
                   ("MDN", _mdn(a)), ("MDN to", a["mdn_url"]),
                   ("MDN sent", a["mdn_sent_at"]), ("MDN error", a["mdn_last_error"])]


def _mdn(a: Mapping[str, Any]) -> str:
    """How the MDN was asked for and, when asynchronous, where its delivery stands."""
    mode: str = a["mdn_mode"]
    if mode == "none":
        return mode
    signed = "signed" if a["mdn_signed"] else "unsigned"
    if mode == "async":
        return f"{mode}, {signed}, {a['mdn_state']} after {a['mdn_attempts']} attempt(s)"
    return f"{mode}, {signed}"
