"""Our AS2 key and certificate, and partners' certificates, read from files.

Keys are read with ``cryptography`` (which opens RC2-protected PKCS#12 files from older tools
that oscrypto cannot) and handed to pyas2lib as unencrypted PEM held in memory only. A file
that cannot be read raises ``As2KeyError`` naming the file and what is wrong with it, never
the passphrase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.channels.as2.settings import As2Identity, PartnerAs2
from gateway.core.errors import ConfigError


class As2KeyError(ConfigError):
    """A key or certificate file cannot be used: unreadable, malformed, wrong passphrase."""


@dataclass(frozen=True, slots=True)
class LoadedIdentity:
    """Our organisation's AS2 id with its private key and certificate.

    ``key_pem`` is the private key as unencrypted PKCS#8 PEM (``passphrase`` is then None);
    ``bundle_pem`` (key then certificate) is what pyas2lib's ``Organization`` takes."""

    as2_id: str
    key_pem: bytes
    passphrase: str | None
    cert_pem: bytes
    certificate: x509.Certificate

    @property
    def bundle_pem(self) -> bytes:
        return self.key_pem + self.cert_pem

    def __repr__(self) -> str:  # never the key
        return f"LoadedIdentity(as2_id={self.as2_id!r}, subject={self.certificate.subject})"


def load_identity(identity: As2Identity) -> LoadedIdentity:
    """Read our key and certificate from PEM files or a PKCS#12 file (with its passphrase)."""
    passphrase = identity.passphrase_value()
    password = passphrase.encode("utf-8") if passphrase else None
    if identity.pkcs12_file is not None:
        data = _read(identity.pkcs12_file)
        try:
            key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            raise As2KeyError(_why_not(exc, "a PKCS#12 file"),
                              file=str(identity.pkcs12_file)) from None
        if key is None or cert is None:
            raise As2KeyError("the PKCS#12 file holds no private key and certificate",
                              file=str(identity.pkcs12_file))
        key_file = identity.pkcs12_file
    else:
        assert identity.key_file is not None  # As2Identity validates: one of the two
        key_file = identity.key_file
        data = _read(key_file)
        key = _private_key(data, password, key_file)
        if identity.certificate_file is not None:
            certs = _certificates(_read(identity.certificate_file), identity.certificate_file)
            cert_file = identity.certificate_file
        else:
            certs = _certificates(data, key_file, required=False)
            cert_file = key_file
        if not certs:
            raise As2KeyError("no certificate: give certificate_file, or put the certificate "
                              "in the key file", file=str(key_file))
        cert = next((c for c in certs if _same_key(c, key)), None)
        if cert is None:
            raise As2KeyError("the certificate does not belong to the private key "
                              f"in {key_file}", file=str(cert_file))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise As2KeyError("AS2 needs an RSA key", file=str(key_file))
    if not _same_key(cert, key):
        raise As2KeyError("the certificate does not belong to the private key",
                          file=str(key_file))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return LoadedIdentity(as2_id=identity.as2_id, key_pem=key_pem, passphrase=None,
                          cert_pem=cert.public_bytes(serialization.Encoding.PEM),
                          certificate=cert)


def load_partner_certificates(profile: PartnerAs2) -> list[x509.Certificate]:
    """The partner's certificates in profile order (first: current), PEM or DER, several per
    file allowed."""
    out: list[x509.Certificate] = []
    for path in profile.certificates:
        out.extend(_certificates(_read(path), path))
    return out


def load_ca_certificates(profile: PartnerAs2) -> list[x509.Certificate]:
    """The CA certificates of the partner's certificate (``ca_certificates``)."""
    out: list[x509.Certificate] = []
    for path in profile.ca_certificates:
        out.extend(_certificates(_read(path), path))
    return out


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- helpers ----------------------------------------------------------------------------------

def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise As2KeyError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None


def _why_not(exc: ValueError, what: str) -> str:
    text = str(exc).lower()
    if "password" in text or "mac" in text or "decrypt" in text:
        return f"wrong or missing passphrase for {what}"
    return f"not {what} that can be read"


def _private_key(data: bytes, password: bytes | None, path: Path) -> PrivateKeyTypes:
    if b"-----BEGIN" not in data:
        loader = serialization.load_der_private_key
    else:
        loader = serialization.load_pem_private_key
    try:
        return loader(data, password)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase not needed
        if "not encrypted" in str(exc).lower():
            try:
                return loader(data, None)
            except ValueError:
                pass
        raise As2KeyError("the private key is encrypted: give its passphrase "
                          "(passphrase or passphrase_file)", file=str(path)) from None
    except ValueError as exc:
        raise As2KeyError(_why_not(exc, "a private key"), file=str(path)) from None


def _certificates(data: bytes, path: Path, *, required: bool = True) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            if b"-----BEGIN CERTIFICATE-----" not in data:
                if required:
                    raise As2KeyError("no certificate in the file", file=str(path))
                return []
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise As2KeyError("not a PEM or DER certificate that can be read",
                          file=str(path)) from None


def _same_key(cert: x509.Certificate, key: object) -> bool:
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*fmt) == public().public_bytes(*fmt))
