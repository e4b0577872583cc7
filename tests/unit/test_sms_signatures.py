"""SMS webhook signatures: Twilio's HMAC-SHA1 over URL and form (Twilio's published vectors
and one computed here from the documented algorithm), and Vonage's HS256 JWT whose
payload_hash covers the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from gateway.channels.sms.signatures import (
    SignatureError,
    b64url,
    twilio_signature,
    verify_hs256,
    verify_twilio,
    verify_vonage,
    vonage_token,
)

# Twilio's published example (twilio-python tests/unit/test_request_validator.py and the
# request-validation docs): auth token, URL, five POST parameters and their signature.
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"),
                 ("From", "+14158675309"), ("To", "+18005551212"), ("Caller", "+14158675309")]
TWILIO_EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_published_example():
    """Our computation gives Twilio's published signature, and it verifies."""
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_EXPECTED
    verify_twilio(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, TWILIO_EXPECTED)


def test_twilio_published_example_with_a_repeated_parameter():
    """Twilio's vector for a repeated name: its values are sorted too."""
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize("url,signature", [
    # Twilio's published port cases: signed without the port, called with one …
    ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", TWILIO_EXPECTED),
    # … signed with the default port, called without.
    ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
    ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
])
def test_twilio_port_variants_verify_as_twilio_validators_do(url, signature):
    """A URL differing only by its port verifies, as in Twilio's own validators."""
    verify_twilio(TWILIO_TOKEN, url, TWILIO_PARAMS, signature)


def test_twilio_signature_from_the_documented_algorithm():
    """HMAC-SHA1 of URL + sorted name+value, base64: computed here by hand."""
    url = "https://edi.example.com/sms/twilio"
    params = [("To", "+33700000000"), ("Body", "REF 1\nABC x 2"), ("From", "+33612345678"),
              ("MessageSid", "SM1")]
    signed = url + "BodyREF 1\nABC x 2" + "From+33612345678" + "MessageSidSM1" + "To+33700000000"
    expected = base64.b64encode(hmac.new(b"tok", signed.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("tok", url, params) == expected


@pytest.mark.parametrize("change", ["value", "url", "token", "missing", "garbage"])
def test_twilio_refuses_anything_changed(change):
    """A changed value, URL or token, or no signature at all, does not verify."""
    params, url, token, sig = list(TWILIO_PARAMS), TWILIO_URL, TWILIO_TOKEN, TWILIO_EXPECTED
    if change == "value":
        params[1] = ("Digits", "1235")
    elif change == "url":
        url = url.replace("bar=2", "bar=3")
    elif change == "token":
        token = "12346"
    elif change == "missing":
        sig = None
    else:
        sig = "ünïcode"
    with pytest.raises(SignatureError):
        verify_twilio(token, url, params, sig)


# -- Vonage ----------------------------------------------------------------------------------

SECRET = "vonage-signature-secret"
BODY = json.dumps({"channel": "sms", "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                   "from": "33612345678", "to": "33700000000", "text": "ABC x 2",
                   "message_type": "text"}).encode()


def jwt(claims: dict, secret: str = SECRET, alg: str = "HS256") -> str:
    """A JWT built here from RFC 7519 / RFC 7515, independently of the code under test."""
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(sig)}"


def claims(**extra: object) -> dict:
    return {"iat": int(time.time()), "jti": "j1", "iss": "Vonage",
            "payload_hash": hashlib.sha256(BODY).hexdigest(), **extra}


def test_hs256_published_example():
    """The HS256 example of jwt.io (RFC 7519 style), secret 'your-256-bit-secret'."""
    token = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4g"
             "RG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
    assert verify_hs256(token, "your-256-bit-secret") == {
        "sub": "1234567890", "name": "John Doe", "iat": 1516239022}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_hs256(token, "another-secret")


def test_vonage_valid_token():
    """Signed with the secret, payload_hash of this body, fresh: the claims come back."""
    got = verify_vonage(SECRET, f"Bearer {jwt(claims())}", BODY)
    assert got["payload_hash"] == hashlib.sha256(BODY).hexdigest()
    verify_vonage(SECRET, f"Bearer {vonage_token(SECRET, BODY)}", BODY)


@pytest.mark.parametrize("authorization,body,reason", [
    (lambda: f"Bearer {jwt(claims(), secret='wrong')}", BODY, "does not verify"),
    (lambda: f"Bearer {jwt(claims())}", BODY.replace(b"x 2", b"x 3"), "payload_hash"),
    (lambda: f"Bearer {jwt(claims(exp=int(time.time()) - 120))}", BODY, "expired"),
    (lambda: f"Bearer {jwt(claims(nbf=int(time.time()) + 600))}", BODY, "not valid yet"),
    (lambda: f"Bearer {jwt(claims(iat=int(time.time()) + 600))}", BODY, "future"),
    (lambda: f"Bearer {jwt({'iat': int(time.time())})}", BODY, "no payload_hash"),
    (lambda: f"Bearer {jwt(claims(), alg='none')}", BODY, "not HS256"),
    (lambda: f"Bearer {jwt(claims(), alg='HS512')}", BODY, "not HS256"),
    (lambda: "Basic dXNlcjpwYXNz", BODY, "not a Bearer token"),
    (lambda: None, BODY, "no Authorization"),
    (lambda: "Bearer abc.def", BODY, "not a JWT"),
    (lambda: "Bearer !!!.e30.e30", BODY, "base64url|not JSON"),
])
def test_vonage_refusals(authorization, body, reason):
    """Wrong secret, changed body, expired, early, algorithm swaps, malformed tokens."""
    with pytest.raises(SignatureError, match=reason):
        verify_vonage(SECRET, authorization(), body)


def test_vonage_leeway_accepts_small_clock_skew():
    """An exp 30 s ago is within the 60 s leeway."""
    verify_vonage(SECRET, f"Bearer {jwt(claims(exp=int(time.time()) - 30))}", BODY)
