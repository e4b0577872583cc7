"""Shared pieces of the AS2 unit tests: key pairs, profiles, requests from captures.

The loopback pair (``loopback_fixtures()``) is made at test time. The Mendelson and IBM
Sterling captures and their keys are pyas2-lib's test fixtures in the shared corpus: the tests
that use them are in the corpus tier (``@pytest.mark.corpus``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.channels.as2.endpoint import parse_headers
from gateway.channels.as2.settings import As2Identity
from gateway.config import Partner, PartnerAs2
from gateway.core.ports import WebRequest
from tests.as2_keys import loopback_pair
from tests.conftest import require_corpus


def pyas2lib_fixtures() -> Path:
    folder = require_corpus() / "pyas2-lib" / "pyas2lib" / "tests" / "fixtures"
    if not folder.is_dir():
        pytest.skip("pyas2-lib fixtures not in the corpus")
    return folder


def loopback_fixtures() -> Path:
    """``client_*.pem`` (CN=as2client) and ``server_*.pem`` (CN=as2server), keys protected
    with 'test', laid out like django-pyas2's fixtures; made at test time."""
    return loopback_pair()


def mendelson_identity() -> As2Identity:
    """Our side in the Mendelson captures: AS2 id ``pyas2lib``, key in cert_test.p12 (RC2)."""
    f = pyas2lib_fixtures()
    return As2Identity(as2_id="pyas2lib", pkcs12_file=f / "cert_test.p12", passphrase="test")


def sterling_identity() -> As2Identity:
    """Our side in the IBM Sterling capture: AS2 id ``as2server`` (old pyas2 key)."""
    f = pyas2lib_fixtures()
    return As2Identity(as2_id="as2server", key_file=f / "cert_oldpyas2_private.pem",
                       passphrase="password")


def mendelson_partner(**as2: object) -> Partner:
    f = pyas2lib_fixtures()
    values: dict[str, object] = dict(as2_id="mecas2", certificates=[f / "cert_mecas2_public.pem"],
                                     validate_certificates=False, require_signing=False)
    values.update(as2)
    return Partner(id="mecas2", name="Mendelson test partner", channels=["as2"],
                   as2=PartnerAs2(**values))


def sterling_partner(**as2: object) -> Partner:
    f = pyas2lib_fixtures()
    values: dict[str, object] = dict(
        as2_id="SIAS2PRD", certificates=[f / "cert_sb2bi_public.pem"],
        ca_certificates=[f / "cert_sb2bi_public.ca"], validate_certificates=False,
        canonicalize_as_binary=True)
    values.update(as2)
    return Partner(id="sterling", name="IBM Sterling partner", channels=["as2"],
                   as2=PartnerAs2(**values))


def capture_request(raw: bytes, **header_changes: str | None) -> WebRequest:
    """A captured AS2 message (HTTP headers, blank line, body) as a request; a header given
    as None is removed, others replaced (names lower-case, ``_`` for ``-``)."""
    headers, body = parse_headers(raw)
    for name, value in header_changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return WebRequest("POST", "http://127.0.0.1/as2", headers, body, remote="127.0.0.1")


def fixture_request(name: str, **header_changes: str | None) -> WebRequest:
    return capture_request((pyas2lib_fixtures() / name).read_bytes(), **header_changes)
