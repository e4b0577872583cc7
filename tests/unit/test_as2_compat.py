"""The compatibility step that lets pyas2lib's oscrypto 1.3.0 load on OpenSSL 3.0.10 and later
and open RC2-protected PKCS#12 files; each check runs in a fresh interpreter, since the step
must come before the first import of oscrypto."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.channels.as2 import compat
from tests.as2_keys import pkcs12_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rc2_p12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RC2-protected PKCS#12 file like pyas2-lib's cert_test.p12 (CN=pyas2lib, 'test'),
    made by the openssl command."""
    try:
        return pkcs12_file(tmp_path_factory.mktemp("p12") / "cert_test.p12", "pyas2lib",
                           rc2=True)
    except RuntimeError as exc:
        pytest.skip(f"no RC2 PKCS#12 file: {exc}")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_fixed_pattern_reads_two_digit_patch_versions():
    """The upstream fix (oscrypto d5f3437) reads "3.0.19"; the released pattern did not."""
    old = re.compile(eval(compat._OLD_PATTERN))  # our own literal
    new = re.compile(eval(compat._NEW_PATTERN))
    text = "OpenSSL 3.0.19 27 Jan 2026"
    assert old.search(text) is None
    assert new.search(text).group(1) == "3.0.19"
    assert new.search("OpenSSL 1.1.1w  11 Sep 2023").group(1) == "1.1.1w"


def test_prepare_lets_pyas2lib_import_and_reads_the_version():
    result = run("""
        import ssl
        from gateway.channels.as2 import compat
        compat.prepare(); compat.prepare()  # idempotent
        import pyas2lib  # noqa: F401
        from oscrypto._openssl import _libcrypto
        print(_libcrypto.libcrypto_version_info[:3], ssl.OPENSSL_VERSION.split()[1])
        print(compat.patched_module())
    """)
    assert result.returncode == 0, result.stderr
    versions, patched = result.stdout.splitlines()
    read, real = versions.rsplit(" ", 1)
    assert read == str(tuple(int(x) for x in real.split(".")))  # oscrypto read the real one
    assert patched in ("oscrypto._openssl._libcrypto_cffi", "oscrypto._openssl._libcrypto_ctypes",
                       "None")


def test_legacy_provider_lets_oscrypto_open_an_rc2_pkcs12_file(rc2_p12):
    """An RC2-protected file: oscrypto opens it once the legacy provider is loaded."""
    p12 = rc2_p12
    result = run(f"""
        from gateway.channels.as2 import compat
        compat.prepare()
        if not compat.legacy_provider_loaded():
            raise SystemExit(3)
        from oscrypto import asymmetric
        from oscrypto._openssl import _libcrypto
        assert _libcrypto.libcrypto_legacy_support
        key, cert, _ = asymmetric.load_pkcs12(open({str(p12)!r}, 'rb').read(), 'test')
        print(key.algorithm, cert.asn1.subject.native['common_name'])
    """)
    if result.returncode == 3:
        pytest.skip("this OpenSSL has no legacy provider module")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["rsa", "pyas2lib"]


def test_keys_read_the_rc2_pkcs12_file_with_cryptography(rc2_p12):
    """Our identity from the same file, through ``keys`` (no oscrypto involved)."""
    from gateway.channels.as2.keys import As2KeyError, load_identity
    from gateway.channels.as2.settings import As2Identity

    p12 = rc2_p12
    ident = load_identity(As2Identity(as2_id="pyas2lib", pkcs12_file=p12, passphrase="test"))
    assert ident.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert "pyas2lib" in ident.certificate.subject.rfc4514_string()
    assert "test" not in repr(ident).replace("pyas2lib", "")
    with pytest.raises(As2KeyError) as err:
        load_identity(As2Identity(as2_id="x", pkcs12_file=p12, passphrase="Zq9-not-it"))
    assert err.value.file == str(p12) and "passphrase" in str(err.value)
    assert "Zq9" not in str(err.value)
