"""The AS2 channel's settings: ``[as2]`` (our identities and the MDN delivery), and a
partner's AS2 profile (``PartnerAs2``, composed into ``gateway.config.Partner``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from gateway.channels.sections import StrictModel, secret_from


class As2Identity(StrictModel):
    """Our own organisation as AS2 partners know it: its AS2 id and its key and certificate,
    either as PEM files or as one PKCS#12 file. The passphrase comes from the environment
    (``${VAR}``) or a file, never from committed configuration."""

    as2_id: Annotated[str, Field(min_length=1, max_length=128)]
    key_file: Path | None = None  # PEM private key (may also hold the certificate)
    certificate_file: Path | None = None  # PEM or DER certificate
    pkcs12_file: Path | None = None
    passphrase: SecretStr | None = None
    passphrase_file: Path | None = None

    @model_validator(mode="after")
    def _key_given(self) -> As2Identity:
        if self.pkcs12_file is None and self.key_file is None:
            raise ValueError("an AS2 identity needs pkcs12_file, or key_file (and "
                             "certificate_file unless the key file holds the certificate)")
        if self.pkcs12_file is not None and self.key_file is not None:
            raise ValueError("give pkcs12_file or key_file, not both")
        return self

    def passphrase_value(self) -> str | None:
        return secret_from(self.passphrase, self.passphrase_file)


class As2Settings(StrictModel):
    """The AS2 endpoint (``POST /as2``) and the delivery of asynchronous MDNs."""

    identities: list[As2Identity] = Field(default_factory=list)
    max_size: int = Field(default=200 * 1024 * 1024, gt=0)  # larger messages are refused (413)
    #: Asynchronous MDN delivery: attempts, then the first delay (seconds), doubled up to
    #: ``mdn_retry_max``.
    mdn_max_attempts: int = Field(default=12, ge=1, le=1000)
    mdn_retry_initial: float = Field(default=30.0, gt=0)
    mdn_retry_max: float = Field(default=3600.0, gt=0)
    mdn_timeout: float = Field(default=30.0, gt=0, le=600)
    #: A certificate that expires within this many days is reported as expiring.
    certificate_warning_days: int = Field(default=30, ge=1, le=3650)
    #: Our ``POST /as2`` as partners reach it: where they post the asynchronous MDNs for
    #: what we send (``Receipt-Delivery-Option``). Needed by partners with ``mdn = "async"``.
    receipt_url: str | None = Field(default=None, pattern=r"^https?://")


class As2Section(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    as2: As2Settings | None = None


class PartnerAs2(StrictModel):
    """A partner's AS2 profile (its AS2 id is also listed in ``identifiers.as2``).

    ``certificates`` are the partner's certificates (PEM or DER files): the first verifies
    signatures and encrypts what we send; the others are accepted for verifying while a
    rotation is under way."""

    as2_id: Annotated[str, Field(min_length=1, max_length=128)]
    certificates: list[Path] = Field(default_factory=list)
    #: CA certificate(s) of the partner's certificate, when it is not self-signed.
    ca_certificates: list[Path] = Field(default_factory=list)
    #: Refuse messages that are not signed / not encrypted (negative MDN
    #: ``insufficient-message-security``, RFC 4130's term).
    require_signing: bool = True
    require_encryption: bool = False
    #: Check the partner certificate's validity dates and chain (off for test pairs).
    validate_certificates: bool = True
    #: Canonicalise signed content as binary (IBM Sterling B2Bi and others that sign the
    #: bytes as they are, LF line ends included).
    canonicalize_as_binary: bool = False
    #: Our AS2 id this partner sends to, when we have several identities.
    our_as2_id: str | None = None
    #: The MDN is signed when the partner asks for it; ``mdn_sign = false`` never signs.
    mdn_sign: bool = True
    #: Outbound AS2 (``outbound.channel = "as2"``): where we POST our messages, and how.
    url: str | None = Field(default=None, pattern=r"^https?://")
    sign: bool = True
    encrypt: bool = True
    compress: bool = False
    #: The MDN we ask for: returned on the same connection (``sync``), posted later to
    #: ``[as2] receipt_url`` (``async``), or none (the delivery is then only "sent").
    mdn: Literal["sync", "async", "none"] = "sync"
    #: Ask for a signed MDN (and refuse a positive one that is not signed).
    mdn_signed: bool = True
    digest_algorithm: Literal["sha1", "sha224", "sha256", "sha384", "sha512"] = "sha256"
    encryption_algorithm: Literal["tripledes_192_cbc", "aes_128_cbc", "aes_192_cbc",
                                  "aes_256_cbc"] = "aes_256_cbc"
    #: Seconds for the whole exchange (sending and a synchronous MDN).
    timeout: float = Field(default=60.0, gt=0, le=3600)
