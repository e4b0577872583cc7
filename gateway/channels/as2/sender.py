"""Outbound AS2 (RFC 4130): a payload for a partner signed, encrypted and compressed as its
profile says, POSTed to its ``url``, with the MDN it was asked for.

The message is built with pyas2lib's CMS functions (compress, sign, encrypt: see
``build_message`` for why not ``Message.build``); the MDN is read here (``read_mdn``) with
pyas2lib's signature check, so that its signature, its disposition and the MIC it returns
are each judged on their own:

- **synchronous MDN**: read from the HTTP answer. ``processed`` with the MIC we computed is a
  delivery (``Delivery(delivered=True)``); a negative disposition (``processed/error: …``,
  ``failed``) or a positive one with another MIC is the partner's refusal
  (``DeliveryRefused``: FAILED at once). A positive MDN that is not signed when we asked for a
  signed one, or whose signature does not verify with the partner's certificates, proves
  nothing: an error, retried. A negative MDN is believed unsigned (the partner's server
  answers on our own connection: an unknown-partner MDN is unsigned by design).
- **asynchronous MDN**: the POST answered 2xx is "sent" (``delivered=False``); the receipt
  text keeps the MIC we computed (``mic=<base64>, <alg>``) until the partner posts the MDN to
  our ``POST /as2``, which reads it with ``read_mdn`` and records the receipt
  (``As2Endpoint``).
- no MDN: "sent", and no receipt will come.

HTTP errors (a refused connection, a timeout, a status other than 2xx) raise ``As2SendError``:
the dispatcher retries. The Message-ID is derived from the outbound row
(``edigw-<row id>@<our domain>``), so a retry after a lost answer is the same message to the
partner, which recognises it as a duplicate (``processed/warning: duplicate-document``,
taken as delivered) instead of processing it twice.
"""

from __future__ import annotations

import base64
import dataclasses
import email.message
import hashlib
import re
import threading
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from gateway.channels.as2 import compat
from gateway.channels.as2.keys import (
    LoadedIdentity,
    certificate_pem,
    load_ca_certificates,
    load_identity,
    load_partner_certificates,
)
from gateway.channels.as2.settings import As2Settings, PartnerAs2
from gateway.channels.email.sender import content_type_for
from gateway.channels.outbound import Delivery, DeliveryRefused
from gateway.core.errors import EdigwError
from gateway.core.urls import mask_url
from gateway.store.records import OutboundRow

compat.prepare()  # before pyas2lib imports oscrypto (see compat)

from pyas2lib import as2  # noqa: E402
from pyas2lib.cms import (  # noqa: E402
    compress_message,
    encrypt_message,
    sign_message,
    verify_message,
)
from pyas2lib.exceptions import AS2Exception, IntegrityError  # noqa: E402
from pyas2lib.utils import canonicalize, extract_first_part, quote_as2name  # noqa: E402

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.as2.sender")

#: The HTTP headers of a synchronous MDN that its MIME parse needs.
_MDN_HEADERS = ("content-type", "content-transfer-encoding", "mime-version", "message-id",
                "as2-from", "as2-to")
_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_MIC_IN_RECEIPT = re.compile(r"\bmic=([A-Za-z0-9+/=]+)(?:,\s*([A-Za-z0-9-]+))?")


class As2SendError(EdigwError):
    """The message did not reach the partner, or its answer proves nothing: retried."""


@dataclasses.dataclass(frozen=True, slots=True)
class MdnOutcome:
    """An MDN as read by ``read_mdn``.

    ``signed``: it is multipart/signed; ``verified``: its signature verified with one of the
    partner's certificates (False when unsigned). ``ok``: processed (or a mere warning) and,
    when we know the MIC we computed, the same MIC returned. ``disposition`` is the
    disposition as the partner wrote it (``processed/error: decryption-failed``)."""

    original_message_id: str | None
    disposition: str
    ok: bool
    signed: bool
    verified: bool
    mic: str | None
    mic_alg: str | None
    problem: str | None  # why not ok, or why it cannot be trusted

    @property
    def negative(self) -> bool:
        """The partner says it did not process the message (not merely a MIC mismatch)."""
        return not self.disposition_ok

    @property
    def disposition_ok(self) -> bool:
        kind, _, modifier = self.disposition.partition("/")
        return kind.strip().lower() == "processed" and not modifier.strip().lower().startswith(
            ("error", "failure"))

    def receipt(self) -> str:
        """The receipt as kept on the outbound row and its timeline."""
        parts = [self.disposition or "(no disposition)"]
        if self.mic is not None:
            parts.append(f"MIC {'ok' if self.ok else 'returned'} {self.mic}"
                         + (f", {self.mic_alg}" if self.mic_alg else ""))
        if self.problem:
            parts.append(self.problem)
        parts.append("signed MDN verified" if self.verified
                     else "signed MDN NOT verified" if self.signed else "unsigned MDN")
        return "; ".join(parts)


def expected_mic(receipt: str | None) -> tuple[str | None, str | None]:
    """The MIC (and algorithm) kept in a sent row's receipt text (``mic=<base64>, <alg>``)."""
    m = _MIC_IN_RECEIPT.search(receipt or "")
    return (m.group(1), m.group(2)) if m else (None, None)


def read_mdn(raw: bytes, *, message_id: str | None, certificates: list[bytes],
             ca: bytes | None, validate: bool, partner_as2_id: str,
             mic: str | None) -> MdnOutcome:
    """Read an MDN (its MIME headers, a blank line, its body): the signature checked with
    each of the partner's ``certificates`` (PEM), the fields read, the disposition and the MIC
    judged. ``message_id``: the Message-ID it must answer (None: not checked); ``mic``: the
    MIC we computed (None: nothing to compare). Raises ``As2SendError`` when it is no MDN."""
    try:
        payload = email.message_from_bytes(raw)
    except Exception as exc:  # pyas2lib's parse of arbitrary bytes
        raise As2SendError(f"the answer is not a MIME entity: {exc}") from exc
    report: email.message.Message | None = None
    signature: bytes | None = None
    ctype = payload.get_content_type()
    if ctype == "multipart/report":
        report = payload
    elif ctype == "multipart/signed":
        for part in payload.walk():
            if part.get_content_type() in _SIGNATURE_TYPES:
                decoded = part.get_payload(decode=True)
                signature = decoded if isinstance(decoded, bytes) else None
            elif part.get_content_type() == "multipart/report" and report is None:
                report = part
    if report is None:
        raise As2SendError(f"the answer is no MDN (content type {ctype!r})")
    signed = ctype == "multipart/signed"
    verified, problem = False, None
    if signed:
        verified, problem = _verify(raw, payload, report, signature, certificates, ca,
                                    validate, partner_as2_id)
    fields = _fields(report)
    disposition = fields.get("disposition", "").split(";", 1)[-1].strip()
    original = (fields.get("original-message-id") or "").strip().strip("<>").strip() or None
    returned = fields.get("received-content-mic")
    got_mic, got_alg = None, None
    if returned:
        got_mic, _, alg = returned.partition(",")
        got_mic = got_mic.strip()
        got_alg = alg.strip().lower() or None
    outcome = MdnOutcome(original_message_id=original, disposition=disposition, ok=False,
                         signed=signed, verified=verified, mic=got_mic, mic_alg=got_alg,
                         problem=problem)
    return check_mdn(outcome, message_id=message_id, mic=mic)


def check_mdn(outcome: MdnOutcome, *, message_id: str | None, mic: str | None) -> MdnOutcome:
    """``outcome`` judged: ``ok`` when it answers ``message_id`` (None: not checked), its
    disposition is positive and, when we know the ``mic`` we computed, it returns that MIC
    (a duplicate-document warning returns none: the MIC went with the first copy)."""
    outcome = dataclasses.replace(outcome, ok=False)
    if not outcome.disposition:
        return dataclasses.replace(outcome, problem="the MDN has no Disposition field")
    if message_id is not None and outcome.original_message_id != message_id:
        return dataclasses.replace(outcome, problem="the MDN answers Message-ID "
                                   f"{outcome.original_message_id!r}, not {message_id!r}")
    if not outcome.disposition_ok:
        return outcome
    duplicate = "duplicate-document" in outcome.disposition.lower()
    if mic is not None and not duplicate:
        if outcome.mic is None:
            return dataclasses.replace(outcome, problem=outcome.problem or
                                       "positive MDN without Received-Content-MIC")
        if outcome.mic != mic:
            return dataclasses.replace(outcome, problem=outcome.problem or
                                       f"MIC mismatch: we computed {mic}")
    return dataclasses.replace(outcome, ok=True)


def _verify(raw: bytes, payload: email.message.Message, report: email.message.Message,
            signature: bytes | None, certificates: list[bytes], ca: bytes | None,
            validate: bool, partner_as2_id: str) -> tuple[bool, str | None]:
    """Whether the signature verifies with one of ``certificates`` (as received, then in
    canonical form, as pyas2lib's own MDN parse does); else why not."""
    if signature is None:
        return False, "signed MDN without a signature part"
    if not certificates:
        return False, "no certificate of the partner to verify the MDN with"
    boundary = ("--" + (payload.get_boundary() or "")).encode("utf-8")
    candidates = [extract_first_part(raw, boundary), canonicalize(report)]
    last = "the MDN's signature does not verify"
    for cert in certificates:
        try:
            verify_cert = as2.Partner(as2_name=partner_as2_id, verify_cert=cert,
                                      verify_cert_ca=ca,
                                      validate_certs=validate).load_verify_cert()
        except Exception as exc:  # an expired or untrusted certificate
            last = f"the partner's certificate is not valid: {exc}"
            continue
        for content in candidates:
            try:
                verify_message(content, signature, verify_cert)
                return True, None
            except IntegrityError as exc:
                last = f"the MDN's signature does not verify: {exc}"
            except Exception as exc:  # an unreadable signature
                last = f"the MDN's signature cannot be read: {type(exc).__name__}: {exc}"
    return False, last


def _fields(report: email.message.Message) -> dict[str, str]:
    """The machine-readable fields of the report (lower-case names, unfolded values)."""
    fields: dict[str, str] = {}
    for part in report.walk():
        if part.get_content_type() != "message/disposition-notification":
            continue
        body = part.get_payload()
        blocks = body if isinstance(body, list) else []
        if not blocks and isinstance(body, str):  # not parsed into header blocks
            text = re.sub(r"\r?\n[ \t]+", " ", body)
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(name.strip().lower(), value.strip())
        for block in blocks:
            if not isinstance(block, email.message.Message):
                continue
            for name, value in block.items():
                fields.setdefault(name.lower(), re.sub(r"\s+", " ", str(value)).strip())
    return fields


def mdn_raw(headers: dict[str, str], body: bytes) -> bytes:
    """An MDN from an HTTP exchange as ``read_mdn`` takes it: the MIME headers, a blank line,
    the body."""
    lines = [f"{name}: {headers[name]}\r\n" for name in _MDN_HEADERS if headers.get(name)]
    return "".join(lines).encode("utf-8", "surrogateescape") + b"\r\n" + body


@dataclasses.dataclass(frozen=True, slots=True)
class BuiltMessage:
    """An AS2 message's outermost MIME headers (sent as HTTP headers), its body, and the MIC
    of what was signed (None when unsigned)."""

    headers: dict[str, str]
    body: bytes
    mic: str | None


#: ``micalg`` parameter values (RFC 5751 §3.4.3.2).
MICALG = {"sha1": "sha1", "sha224": "sha-224", "sha256": "sha-256", "sha384": "sha-384",
          "sha512": "sha-512"}


def build_message(data: bytes, *, filename: str, content_type: str, sign_key: Any,
                  digest_alg: str, encrypt_cert: Any, encryption_alg: str,
                  compress: bool) -> BuiltMessage:
    """The payload as a binary MIME entity (``Content-Transfer-Encoding: binary``: its bytes
    go as they are, line ends included), then compressed (RFC 5402), signed (detached,
    multipart/signed) with ``sign_key`` and encrypted for ``encrypt_cert`` (each when given),
    with pyas2lib's CMS functions. The MIC (RFC 4130 §7.3.1) is the digest of the signed
    entity, headers included.

    pyas2lib's ``Message.build`` is not used for the layers: it writes a non-octet-stream
    payload as 7bit/8bit text, whose line ends are canonicalised to CRLF before signing, so
    a partner would receive other bytes than the archived payload (an EDIFACT file with LF
    line ends)."""
    safe_name = re.sub(r'[\\"\r\n]', "_", filename)
    entity = (f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
              f'Content-Disposition: attachment; filename="{safe_name}"\r\n\r\n'
              ).encode() + data
    if compress:
        entity = _pkcs7_mime("compressed-data", "smime.p7z", compress_message(entity))
    mic = None
    if sign_key is not None:
        mic = base64.b64encode(hashlib.new(digest_alg, entity).digest()).decode("ascii")
        signature = sign_message(entity, digest_alg, sign_key)
        boundary = f"----=_edigw_{uuid.uuid4().hex}"
        sig_b64 = base64.encodebytes(signature).replace(b"\n", b"\r\n")
        b = boundary.encode("ascii")
        entity = (f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
                  f'micalg={MICALG[digest_alg]}; boundary="{boundary}"\r\n\r\n').encode() + (
            b"--" + b + b"\r\n" + entity + b"\r\n--" + b + b"\r\n"
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
            + sig_b64 + b"\r\n--" + b + b"--\r\n")
    if encrypt_cert is not None:
        entity = _pkcs7_mime("enveloped-data", "smime.p7m",
                             encrypt_message(entity, encryption_alg, encrypt_cert))
    head, _, body = entity.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("utf-8").split("\r\n"):
        key, _, value = line.partition(":")
        headers[key.strip()] = value.strip()
    return BuiltMessage(headers=headers, body=body, mic=mic)


def _pkcs7_mime(smime_type: str, name: str, der: bytes) -> bytes:
    return (f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="{name}"\r\n'
            "Content-Transfer-Encoding: binary\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n').encode() + der


class As2Sender:
    """The dispatcher's ``Sender`` for channel ``as2``.

    ``settings``: ``[as2]`` (our identities, ``receipt_url``); ``client``: an httpx client to
    post with (tests; default one of its own, closed by ``close``)."""

    def __init__(self, settings: As2Settings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.identities: dict[str, LoadedIdentity] = {
            i.as2_id: load_identity(i) for i in settings.identities}
        self._orgs: dict[str, Any] = {}
        #: Per partner profile object (held, so its id is not reused): its pyas2lib partner,
        #: its certificates (PEM) and CA bundle.
        self._partners: dict[int, tuple[PartnerAs2, Any, list[bytes], bytes | None]] = {}
        self._lock = threading.Lock()
        self._own_client = client is None
        self.client = client or httpx.Client(follow_redirects=False)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # -- sending --------------------------------------------------------------------------

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> Delivery:
        profile = partner.as2 if partner is not None else None
        if profile is None or not profile.url:
            raise As2SendError(f"partner {row.partner_id} has no AS2 profile with a url to "
                               f"send {row.filename} to")
        org = self._org(profile)
        receiver, certificates, ca = self._partner(profile)
        if profile.mdn == "async" and not self.settings.receipt_url:
            raise As2SendError("the partner wants asynchronous MDNs: set [as2] receipt_url "
                               "(our POST /as2 as the partner reaches it)")
        name = Path(row.filename.replace("\\", "/")).name or "payload"
        try:
            built = build_message(
                data, filename=name, content_type=content_type_for(name),
                sign_key=org.sign_key if profile.sign else None,
                digest_alg=profile.digest_algorithm,
                encrypt_cert=receiver.load_encrypt_cert() if profile.encrypt else None,
                encryption_alg=profile.encryption_algorithm, compress=profile.compress)
        except AS2Exception as exc:
            raise As2SendError(f"cannot build the AS2 message: {exc}") from exc
        message_id = f"edigw-{row.id}@{org.domain}"
        mic = built.mic
        headers = {
            "AS2-Version": "1.2", "AS2-From": quote_as2name(org.as2_name),
            "AS2-To": quote_as2name(profile.as2_id), "Message-ID": f"<{message_id}>",
            "Subject": f"{row.kind} {name}", "Date": formatdate(usegmt=True),
            "MIME-Version": "1.0", **built.headers}
        if profile.mdn != "none":
            headers["Disposition-Notification-To"] = f"edigw@{org.domain}"
            if profile.mdn_signed:
                headers["Disposition-Notification-Options"] = (
                    "signed-receipt-protocol=required, pkcs7-signature; "
                    f"signed-receipt-micalg=optional, {profile.digest_algorithm}")
            if profile.mdn == "async":
                headers["Receipt-Delivery-Option"] = str(self.settings.receipt_url)
        body = built.body
        url = profile.url
        try:
            answer = self.client.post(url, content=body, headers=headers,
                                      timeout=profile.timeout)
        except httpx.HTTPError as exc:
            raise As2SendError(f"POST {mask_url(url)}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= answer.status_code < 300:
            raise As2SendError(f"POST {mask_url(url)} answered {answer.status_code}: "
                               f"{answer.text[:300]}")
        what = f"{row.kind} posted to {mask_url(url)} as <{message_id}>"
        hdrs = {k.lower(): v for k, v in answer.headers.items()}
        ctype = hdrs.get("content-type", "").lower()
        # A receiver that refuses a message it cannot authenticate answers its negative MDN
        # at once even when an asynchronous one (or none) was asked: read it then too.
        answered = ctype.startswith("multipart/report") or (
            ctype.startswith("multipart/signed") and b"multipart/report" in
            answer.content[:8192].lower())
        if profile.mdn != "sync" and answered:
            outcome = read_mdn(mdn_raw(hdrs, answer.content), message_id=message_id,
                               certificates=certificates, ca=ca,
                               validate=profile.validate_certificates,
                               partner_as2_id=profile.as2_id, mic=mic)
            if outcome.negative:
                raise DeliveryRefused(outcome.receipt())
        if profile.mdn == "none":
            return Delivery(detail=f"{what}, no MDN asked", delivered=False,
                            remote_id=message_id)
        if profile.mdn == "async":
            kept = f"awaiting asynchronous MDN; mic={mic}, {profile.digest_algorithm}" if mic \
                else "awaiting asynchronous MDN"
            return Delivery(detail=f"{what}, asynchronous MDN awaited", delivered=False,
                            remote_id=message_id, receipt=kept)
        outcome = read_mdn(mdn_raw(hdrs, answer.content), message_id=message_id,
                           certificates=certificates, ca=ca,
                           validate=profile.validate_certificates,
                           partner_as2_id=profile.as2_id, mic=mic)
        return self.judge(outcome, profile, what=what, message_id=message_id)

    @staticmethod
    def judge(outcome: MdnOutcome, profile: PartnerAs2, *, what: str,
              message_id: str) -> Delivery:
        """A synchronous MDN's meaning: delivered, refused (raises ``DeliveryRefused``) or
        proving nothing (raises ``As2SendError``)."""
        if outcome.signed and not outcome.verified:
            raise As2SendError(f"the MDN for <{message_id}> cannot be trusted: "
                               f"{outcome.problem}")
        if outcome.original_message_id != message_id:
            raise As2SendError(f"the answer is no MDN for <{message_id}>: {outcome.problem}")
        if outcome.negative:
            raise DeliveryRefused(outcome.receipt())
        if profile.mdn_signed and not outcome.signed:
            raise As2SendError(f"unsigned positive MDN for <{message_id}> while a signed one "
                               "was asked")
        if not outcome.ok:
            raise DeliveryRefused(outcome.receipt())
        return Delivery(detail=f"{what}, MDN {outcome.disposition}", delivered=True,
                        remote_id=message_id, receipt=outcome.receipt())

    # -- pyas2lib's view of both sides ------------------------------------------------------

    def _org(self, profile: PartnerAs2) -> Any:
        ours = profile.our_as2_id or next(iter(self.identities), None)
        ident = self.identities.get(ours) if ours else None
        if ident is None:
            raise As2SendError(f"no [as2] identity {ours!r} to send as" if ours
                               else "no [as2] identities: we have no AS2 id to send as")
        with self._lock:
            org = self._orgs.get(ident.as2_id)
            if org is None:
                domain = re.sub(r"[^A-Za-z0-9.-]+", "-", ident.as2_id).strip("-.") or "edigw"
                org = self._orgs[ident.as2_id] = as2.Organization(
                    as2_name=ident.as2_id, sign_key=ident.bundle_pem,
                    decrypt_key=ident.bundle_pem, mdn_url=self.settings.receipt_url,
                    domain=domain)
            return org

    def _partner(self, profile: PartnerAs2) -> tuple[Any, list[bytes], bytes | None]:
        with self._lock:
            found = self._partners.get(id(profile))
            if found is not None and found[0] is profile:
                return found[1], found[2], found[3]
        certificates = [certificate_pem(c) for c in load_partner_certificates(profile)]
        cas = load_ca_certificates(profile)
        ca = b"".join(certificate_pem(c) for c in cas) or None
        if (profile.encrypt or profile.mdn_signed) and not certificates:
            raise As2SendError(f"AS2 partner {profile.as2_id} has no certificate to encrypt "
                               "for and verify MDNs with")
        try:
            receiver = as2.Partner(
                as2_name=profile.as2_id, verify_cert=certificates[0] if certificates else None,
                verify_cert_ca=ca, encrypt_cert=certificates[0] if certificates else None,
                encrypt_cert_ca=ca, validate_certs=profile.validate_certificates,
                compress=profile.compress, sign=profile.sign,
                digest_alg=profile.digest_algorithm, encrypt=profile.encrypt,
                enc_alg=profile.encryption_algorithm,
                mdn_mode={"sync": as2.SYNCHRONOUS_MDN, "async": as2.ASYNCHRONOUS_MDN}.get(
                    profile.mdn),
                mdn_digest_alg=profile.digest_algorithm if profile.mdn_signed else None)
        except AS2Exception as exc:
            raise As2SendError(f"AS2 partner {profile.as2_id}: {exc}") from exc
        with self._lock:
            if len(self._partners) > 1000:  # profiles replaced by many reloads
                self._partners.clear()
            self._partners[id(profile)] = (profile, receiver, certificates, ca)
        return receiver, certificates, ca


def _one_line(value: str) -> str:
    return re.sub(r"[\r\n]+[ \t]*", " ", value).strip()

