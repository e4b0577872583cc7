"""AS2 keys and certificates made at test time (nothing borrowed from ../shared).

``loopback_pair()`` is a folder laid out like django-pyas2's test fixtures: the partner
``as2client`` and us ``as2server``, each a self-signed RSA certificate (``*_public.pem``) and
its private key followed by the certificate (``*_private.pem``, the key PKCS#8 encrypted with
``PASSPHRASE``). It is made once per
process and removed at exit. ``pkcs12_file()`` packs a key and certificate as PKCS#12, with
modern encryption or with RC2 (as Mendelson's and pyas2-lib's test files are), the latter by
the ``openssl`` command since cryptography cannot write RC2.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PASSPHRASE = "test"
#: The loopback certificates' last day of validity (ten years from the first use today).
NOT_AFTER = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)).replace(
    hour=12, minute=0, second=0, microsecond=0)


def self_signed(common_name: str, *, not_after: dt.datetime = NOT_AFTER,
                not_before: dt.datetime | None = None,
                ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A 2048-bit RSA key and a self-signed certificate ``CN=<common_name>``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return key, cert


def write_pair(folder: Path, stem: str, common_name: str,
               passphrase: str | None = PASSPHRASE) -> tuple[Path, Path]:
    """``<stem>_public.pem`` (certificate) and ``<stem>_private.pem`` (key, then the
    certificate) in ``folder``."""
    key, cert = self_signed(common_name)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
        else serialization.NoEncryption())
    key_path, cert_path = folder / f"{stem}_private.pem", folder / f"{stem}_public.pem"
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8, encryption)
                         + cert_pem)
    cert_path.write_bytes(cert_pem)
    return key_path, cert_path


@functools.cache
def loopback_pair() -> Path:
    """The folder of ``client_*.pem`` (CN=as2client) and ``server_*.pem`` (CN=as2server)."""
    folder = Path(tempfile.mkdtemp(prefix="edigw-as2-keys-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_pair(folder, "client", "as2client")
    write_pair(folder, "server", "as2server")
    return folder


def pkcs12_file(path: Path, common_name: str, passphrase: str = PASSPHRASE, *,
                rc2: bool = False) -> Path:
    """A PKCS#12 file with a new key and its self-signed certificate. ``rc2``: the
    certificate bag encrypted with RC2-40 (OpenSSL's ``-legacy``), as older AS2 products write
    them; needs an ``openssl`` command with the legacy provider (RuntimeError otherwise)."""
    key, cert = self_signed(common_name)
    if not rc2:
        path.write_bytes(pkcs12.serialize_key_and_certificates(
            common_name.encode(), key, cert, None,
            serialization.BestAvailableEncryption(passphrase.encode())))
        return path
    pem = path.with_suffix(".pem")
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
                    + cert.public_bytes(serialization.Encoding.PEM))
    try:
        run = subprocess.run(
            ["openssl", "pkcs12", "-export", "-legacy", "-in", str(pem), "-out", str(path),
             "-name", common_name, "-passout", f"pass:{passphrase}",
             "-certpbe", "PBE-SHA1-RC2-40", "-keypbe", "PBE-SHA1-3DES"],
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        pem.unlink()
    if run.returncode != 0:
        raise RuntimeError(f"openssl could not write an RC2 PKCS#12 file: {run.stderr[-500:]}")
    return path
