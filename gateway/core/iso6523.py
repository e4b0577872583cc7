"""ISO/IEC 6523 party identifiers as Peppol, UBL and CII give them: an ICD code (``0192``)
and a value, written ``0192:987654321`` or in the Peppol participant form
``iso6523-actorid-upis::0192:987654321``.

The codes known are those of the Peppol participant identifier schemes
(``core.iso6523_codes``, from the OpenPeppol eDEC code list). Four of them mean what a
profile's own identifier lists mean: 0088 is a GLN (``gln``), 0009 a SIRET (``siret``),
0002 a SIREN (``siren``; 14 digits there are a SIRET) and 9957 a French VAT number
(``vat``): ``canonical`` names them by that scheme, so ``gln = ["5401234000012"]`` and
``0088:5401234000012`` are one identifier. Every other code keeps its ICD form
(``iso6523``, ``0192:987654321``).

Values are compared without spaces and in upper case (Peppol participant ids are case
insensitive). Where the gateway validates check digits (GLN: GS1 mod 10; SIREN and SIRET:
Luhn) a value with a wrong one is malformed: ``problem`` says why, and it matches nobody.
"""

from __future__ import annotations

import re

from gateway.core.iso6523_codes import CODES

#: The Peppol participant identifier scheme (``<scheme>::<ICD>:<value>``).
PEPPOL_SCHEME = "iso6523-actorid-upis"
#: ICD codes that are one of a profile's own identifier schemes.
ALIASES: dict[str, str] = {"0088": "gln", "0009": "siret", "0002": "siren", "9957": "vat"}
#: Those schemes to their ICD code (``siren`` 0002, a 14-digit 0002 being a SIRET).
ICD_OF: dict[str, str] = {scheme: code for code, scheme in ALIASES.items()}
#: The Peppol scheme ids of the list (``NO:ORG``, ``GLN``) to their code, as older Peppol
#: BIS documents put them in ``@schemeID``.
BY_SCHEME_ID: dict[str, str] = {sid.upper(): code for code, (sid, _, _) in CODES.items()}

_ICD = re.compile(r"^\d{4}$")
#: La Poste's SIRETs but its head office's: a digit sum multiple of 5, not Luhn (INSEE).
_LA_POSTE = "356000000"


class Malformed(ValueError):
    """An identifier the scheme cannot hold (unknown code, wrong length, check digit)."""


def scheme_name(code: str) -> str | None:
    """The Peppol scheme id of an ICD code (``0192`` -> ``NO:ORG``), None when unknown."""
    row = CODES.get(code)
    return row[0] if row else None


def split(text: str) -> tuple[str, str]:
    """``(code, value)`` of ``0192:987654321`` or ``iso6523-actorid-upis::0192:987654321``,
    the value checked and normalised (``check``). Raises Malformed."""
    text = text.strip()
    if text.lower().startswith(PEPPOL_SCHEME + "::"):
        text = text[len(PEPPOL_SCHEME) + 2:]
    code, sep, value = text.partition(":")
    if not sep:
        raise Malformed(f"{text!r} is not ICD:value (e.g. 0192:987654321)")
    return code, check(code.strip(), value)


def check(code: str, value: str) -> str:
    """``value`` normalised (no spaces, upper case) for the ICD ``code``, or Malformed:
    an unknown code, an empty value, or one the scheme refuses (GLN, SIREN and SIRET
    length and check digit, French VAT number form)."""
    if not _ICD.match(code):
        raise Malformed(f"ICD code {code!r} is not 4 digits")
    if code not in CODES:
        raise Malformed(f"unknown ICD code {code} (not in the Peppol participant identifier "
                        "schemes)")
    value = "".join(value.split()).upper()
    if not value:
        raise Malformed(f"empty {code} identifier")
    why = _scheme_problem(ALIASES.get(code, ""), value, code)
    if why:
        raise Malformed(why)
    return value


def _scheme_problem(scheme: str, value: str, code: str | None = None) -> str | None:
    """Why ``value`` is no identifier of ``scheme`` (gln, siren, siret, vat with ICD 9957),
    None when it is one or the scheme is not checked."""
    if scheme == "gln":
        if not re.fullmatch(r"\d{13}", value):
            return "a GLN is 13 digits"
        if not _gs1_ok(value):
            return "wrong GLN check digit"
    elif scheme == "siren" and not (code == "0002" and len(value) == 14):
        if not re.fullmatch(r"\d{9}", value):
            return "a SIREN is 9 digits"
        if not _luhn_ok(value):
            return "wrong SIREN check digit (Luhn)"
    elif scheme == "siret" or (scheme == "siren" and code == "0002"):
        if not re.fullmatch(r"\d{14}", value):
            return "a SIRET is 14 digits"
        la_poste = value.startswith(_LA_POSTE) and value != _LA_POSTE + "00048"
        ok = sum(map(int, value)) % 5 == 0 if la_poste else _luhn_ok(value)
        if not ok:
            return "wrong SIRET check digit (Luhn)"
    elif scheme == "vat" and code == "9957" and not re.fullmatch(r"FR[0-9A-Z]{2}\d{9}", value):
        return "a French VAT number is FR, 2 characters and a 9-digit SIREN"
    return None


def problem(scheme: str, value: str) -> str | None:
    """Why a sender's identifier in ``scheme`` cannot name anyone (``iso6523``: an unknown
    code or a malformed value; gln, siren, siret: length or check digit), else None."""
    if scheme == "iso6523":
        try:
            split(value)
        except Malformed as exc:
            return str(exc)
        return None
    if scheme in ("gln", "siren", "siret"):
        return _scheme_problem(scheme, "".join(value.split()))
    return None


def canonical(text: str) -> tuple[str, str]:
    """The ``(scheme, value)`` an ISO 6523 identifier is looked up by: ``gln``, ``siret``,
    ``siren`` or ``vat`` for their codes (a 14-digit 0002 is a SIRET), else
    ``("iso6523", "<code>:<value>")``. Raises Malformed."""
    code, value = split(text)
    scheme = ALIASES.get(code)
    if scheme == "siren" and len(value) == 14:
        scheme = "siret"
    if scheme is not None:
        return scheme, value
    return "iso6523", f"{code}:{value}"


def label(text: str) -> str:
    """How a reason names it: ``0192 (NO:ORG) 987654321`` (a malformed value of a known
    code too, without spaces); ``iso6523 <text>`` when the code is unknown."""
    try:
        code, value = split(text)
    except Malformed:
        rest = text.strip()
        if rest.lower().startswith(PEPPOL_SCHEME + "::"):
            rest = rest[len(PEPPOL_SCHEME) + 2:]
        code, _, value = rest.partition(":")
        value = "".join(value.split()).upper()
        if code not in CODES or not value:
            return f"iso6523 {''.join(text.split())}"
    return f"{code} ({scheme_name(code)}) {value}"


def _gs1_ok(digits: str) -> bool:
    """GS1 mod 10: weights 3, 1, 3 … from the digit left of the check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return (10 - total % 10) % 10 == int(digits[-1])


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0
