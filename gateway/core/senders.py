"""Who sent a file no partner profile matched: read back from the reason it was quarantined
with. The reasons are written by ``core.identify`` (UNB ids, identifiers by scheme, a channel
naming a partner without profile) and by the mail channel (the From address); a test runs
those writers and reads their reasons back here, so the wording and this stay in step.

A sender's ``key`` names it in URLs and commands, as the tracker's one quarantine alert per
unknown sender names it (``tracker.rules.sender_of``, whose alerts link to
``/quarantine?sender=<key>``): ``unb:<id>`` or ``unb:<qualifier>:<id>``, ``<scheme>:<value>``
(gln, vat, siren, siret, as2, phone; ``email:<address>`` in lower case;
``iso6523:<ICD>:<value>``, e.g. ``iso6523:0192:987654321``, which a reason writes
``0192 (NO:ORG) 987654321``), ``partner:<id>`` (a channel names a partner that has no
profile). An identifier a reason marks ``(malformed: …)`` names no sender: no profile
could list it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.core.iso6523 import scheme_name

#: The schemes an unknown sender may be named by, besides ``unb`` and ``partner``.
SCHEMES = ("gln", "vat", "siren", "siret", "as2", "email", "phone", "iso6523")

_UNB = re.compile(r"^unknown sender id (?P<id>.+?)(?: \(qualifier (?P<q>[^)]*)\))?: "
                  r"no partner profile lists it under identifiers\.unb$")
_BY_SCHEME = re.compile(r"^unknown sender \((?P<ids>.+)\): no partner profile lists these "
                        r"identifiers$")
#: An ISO 6523 id in a reason: ``0192 (NO:ORG) 987654321``.
_ICD_ITEM = re.compile(r"^(?P<code>\d{4}) \((?P<name>[^()]*)\) (?P<value>\S+)$")
_MALFORMED = " (malformed: "
_MAIL = re.compile(r"^mail from (?P<address>\S+@\S+): no partner profile lists this address$")
_HINT = re.compile(r"^channel names partner '(?P<id>[^']+)', which has no profile$")


@dataclass(frozen=True, slots=True)
class UnknownSender:
    """One identity of a sender: ``scheme`` (unb, one of ``SCHEMES``, or partner),
    ``value``, and for UNB its ``qualifier`` (ISO 9735 0007)."""

    scheme: str
    value: str
    qualifier: str | None = None

    @property
    def key(self) -> str:
        if self.scheme == "unb" and self.qualifier:
            return f"unb:{self.qualifier}:{self.value}"
        return f"{self.scheme}:{self.value.lower() if self.scheme == 'email' else self.value}"

    @property
    def label(self) -> str:
        """How people read it: ``UNB 5412345000013 (qualifier 14)``, ``e-mail a@b``."""
        names = {"unb": "UNB", "gln": "GLN", "vat": "VAT", "siren": "SIREN",
                 "siret": "SIRET", "as2": "AS2 From", "email": "mail From",
                 "phone": "phone", "partner": "channel account of partner"}
        if self.scheme == "iso6523":
            code, _, value = self.value.partition(":")
            return f"ISO 6523 {code} ({scheme_name(code) or 'unknown scheme'}) {value}"
        q = f" (qualifier {self.qualifier})" if self.qualifier else ""
        return f"{names.get(self.scheme, self.scheme)} {self.value}{q}"

    @classmethod
    def from_key(cls, key: str) -> UnknownSender:
        """The sender a key names; ValueError for a key no sender has."""
        scheme, _, rest = key.strip().partition(":")
        if not rest or scheme not in ("unb", "partner", *SCHEMES):
            raise ValueError(f"{key!r} is not a sender key (unb:[<qualifier>:]<id>, "
                             f"partner:<id> or <scheme>:<value>, scheme one of "
                             f"{', '.join(SCHEMES)})")
        if scheme == "unb":
            qualifier, _, value = rest.rpartition(":")  # an UNB id holds no ':' (ISO 9735)
            return cls("unb", value, qualifier or None)
        return cls(scheme, rest.lower() if scheme == "email" else rest)


def senders_in(reason: str | None) -> list[UnknownSender]:
    """The unknown sender's identities a quarantine reason names (the first is the one it
    is grouped by); empty when the reason names none (no sender, another partner's id, a
    disabled partner)."""
    if not reason:
        return []
    m = _UNB.match(reason)
    if m:
        return [UnknownSender("unb", m.group("id"), m.group("q") or None)]
    m = _BY_SCHEME.match(reason)
    if m:
        found = []
        for item in m.group("ids").split(", "):
            if _MALFORMED in item:
                continue  # names nobody: no profile may list it
            icd = _ICD_ITEM.match(item)
            if icd:
                found.append(UnknownSender("iso6523", f"{icd.group('code')}:{icd.group('value')}"))
                continue
            scheme, _, value = item.partition(" ")
            if value and scheme in SCHEMES:
                found.append(UnknownSender(scheme, value))
            elif value:  # "id X": an UNB id among scheme ids
                found.append(UnknownSender("unb", value, None if scheme == "id" else scheme))
        return found
    m = _MAIL.match(reason)
    if m:
        return [UnknownSender("email", m.group("address").lower())]
    m = _HINT.match(reason)
    if m:
        return [UnknownSender("partner", m.group("id"))]
    return []
