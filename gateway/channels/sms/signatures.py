"""Webhook signatures of the SMS providers, checked before anything of a request is used.

- Twilio: ``X-Twilio-Signature`` is base64(HMAC-SHA1(auth token, URL + every POST parameter
  name and value, sorted by name (and value, when a name repeats))). Twilio's own validators
  also accept the URL with its port removed or with the default port added, because the URL
  Twilio signs may differ from ours on that only; so do we.
- Vonage (Messages API): ``Authorization: Bearer <JWT>`` signed HS256 with the signature
  secret; its ``payload_hash`` claim is the SHA-256 hex digest of the raw body, which ties the
  token to this body. ``exp``, ``nbf`` and ``iat`` are checked when present, with a small
  leeway for clock skew.

The JWT check is the few lines HS256 needs (hmac and base64 from the standard library) rather
than PyJWT: the algorithm is pinned to HS256, so there is nothing to negotiate, and one more
dependency would bring more surface than it removes. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.core.errors import RequestRefused

#: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 60


class SignatureError(RequestRefused):
    """A request's signature does not verify; ``reason`` says why (never the secret)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# -- Twilio ---------------------------------------------------------------------------------

def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio computes for a form POST to ``url``."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(by_name)
                           for value in sorted(by_name[name]))
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    variants = [url]
    host = parts.hostname or ""
    if parts.port is not None:
        variants.append(urlunsplit(parts._replace(netloc=_netloc(parts, host))))
    else:
        default = {"https": 443, "http": 80}.get(parts.scheme)
        if default:
            variants.append(urlunsplit(parts._replace(
                netloc=_netloc(parts, f"{host}:{default}"))))
    return variants


def _netloc(parts: Any, host_port: str) -> str:
    userinfo = parts.netloc.rpartition("@")[0]
    if parts.hostname and ":" in parts.hostname:  # IPv6 literal
        host_port = host_port.replace(parts.hostname, f"[{parts.hostname}]", 1)
    return f"{userinfo}@{host_port}" if userinfo else host_port


def verify_twilio(auth_token: str, url: str, params: list[tuple[str, str]],
                  signature: str | None) -> None:
    """Raise ``SignatureError`` unless ``signature`` is Twilio's for this URL and form."""
    if not signature:
        raise SignatureError("no X-Twilio-Signature header")
    given = signature.strip().encode("ascii", "replace")
    for candidate in _url_variants(url):
        expected = twilio_signature(auth_token, candidate, params).encode("ascii")
        if hmac.compare_digest(expected, given):
            return
    raise SignatureError(f"X-Twilio-Signature does not match the URL {url} and the form")


# -- Vonage ---------------------------------------------------------------------------------

def _b64url(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("JWT segment is not base64url") from exc


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWT segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def verify_hs256(token: str, secret: str) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``secret``; raises ``SignatureError``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError("Authorization bearer token is not a JWT")
    try:
        header = json.loads(_b64url(parts[0]))
    except ValueError as exc:
        raise SignatureError("JWT header is not JSON") from exc
    # Pinned: a token that asks for "none" or another algorithm is refused, never obeyed.
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        alg = header.get("alg") if isinstance(header, dict) else None
        raise SignatureError(f"JWT algorithm {alg!r} is not HS256")
    expected = hmac.new(secret.encode("utf-8"), f"{parts[0]}.{parts[1]}".encode("ascii"),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64url(parts[2])):
        raise SignatureError("JWT signature does not verify with the signature secret")
    try:
        claims = json.loads(_b64url(parts[1]))
    except ValueError as exc:
        raise SignatureError("JWT claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise SignatureError("JWT claims are not an object")
    return claims


def verify_vonage(secret: str, authorization: str | None, body: bytes, *,
                  now: float | None = None) -> dict[str, Any]:
    """The verified claims of a Vonage webhook; raises ``SignatureError``."""
    if not authorization:
        raise SignatureError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("Authorization is not a Bearer token")
    claims = verify_hs256(token.strip(), secret)
    now = time.time() if now is None else now
    for name in ("exp", "nbf", "iat"):
        if name in claims and not isinstance(claims[name], int | float):
            raise SignatureError(f"JWT {name} is not a number")
    if "exp" in claims and now > claims["exp"] + LEEWAY:
        raise SignatureError("JWT has expired")
    if "nbf" in claims and now < claims["nbf"] - LEEWAY:
        raise SignatureError("JWT is not valid yet (nbf)")
    if "iat" in claims and now < claims["iat"] - LEEWAY:
        raise SignatureError("JWT was issued in the future (iat)")
    given = claims.get("payload_hash")
    if not isinstance(given, str):
        raise SignatureError("JWT has no payload_hash claim")
    digest = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(digest.encode("ascii"), given.lower().encode("ascii", "replace")):
        raise SignatureError("JWT payload_hash does not match the body")
    return claims


def vonage_token(secret: str, body: bytes, *, iat: float | None = None,
                 extra: dict[str, Any] | None = None) -> str:
    """A Vonage-style signed JWT for ``body`` (for tests and tools that call the webhook)."""
    iat = int(time.time() if iat is None else iat)
    claims = {"iat": iat, "jti": hashlib.sha256(body + str(iat).encode()).hexdigest()[:32],
              "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest(),
              **(extra or {})}
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(sig)}"
