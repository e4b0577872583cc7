"""The AS2 receive endpoint (RFC 4130): ``POST /as2`` in, payload durably received, MDN out.

pyas2lib does the message logic (decrypt, decompress, verify, MIC, MDN); this module decides
who is talking, what pyas2lib is shown, what its outcome means, and in which order things are
kept. The order is the contract: the payload is received (archived and recorded) first, then
the ``as2_messages`` row with the MDN's archive key is written, and only then is the MDN
answered (synchronous) or queued for the MDN sender (asynchronous).

Refusals, each answered with a negative MDN when one was asked (``processed/error: …``):

- ``unknown-trading-partner``: AS2-From is no partner's, AS2-To none of our identities (or
  not the one the partner's profile names). Not in RFC 4130's list; the value pyas2lib,
  OpenAS2 and others use. The MDN is unsigned and only ever synchronous.
- ``insufficient-message-security`` (RFC 4130 §7.4.3): unsigned, or unencrypted, while the
  partner's profile requires it.
- ``decryption-failed``, ``decompression-failed``.
- ``integrity-check-failed``: the signature's message digest does not match the content
  (the content was changed after signing).
- ``authentication-failed``: the signature does not verify with any of the partner's
  certificates, or the partner's certificate is not valid (dates, chain).
- ``unexpected-processing-error``: anything else.

An MDN posted here (multipart/report, signed or not) is an asynchronous receipt for a message
we sent (``sender.As2Sender``): it is verified with the partner's certificates, its MIC
compared with the one kept on the outbound row, and recorded with ``record_receipt``
(``_receive_mdn``); one for a Message-ID we did not send that partner (``unexpected-mdn``),
unsigned when a signed one was asked, or not verifying, is refused and recorded as a
security event.

A refused message is never given to the receiver; it leaves an ``as2_messages`` row without
transmission and, when the sender could not be trusted, a security event. A negative MDN for
a sender that was not authenticated is answered in the HTTP reply even when an asynchronous
MDN was asked: the gateway never posts to a URL named by an unauthenticated request.
"""

from __future__ import annotations

import base64
import copy
import email.message
import email.utils
import hashlib
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import structlog

from gateway.channels.as2 import compat
from gateway.channels.as2.keys import (
    LoadedIdentity,
    certificate_pem,
    load_ca_certificates,
    load_identity,
    load_partner_certificates,
)
from gateway.channels.as2.records import As2Records
from gateway.channels.as2.sender import As2SendError, check_mdn, expected_mic, read_mdn
from gateway.channels.as2.settings import As2Settings
from gateway.channels.email.names import safe_name
from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt, Receiver, WebReply, WebRequest
from gateway.core.status import OutboundStatus
from gateway.store.archive import Archive
from gateway.store.db import Store, utcnow
from gateway.store.security import SecurityLog

compat.prepare()  # before pyas2lib imports oscrypto (see compat)

from asn1crypto import cms as asn1_cms  # noqa: E402
from pyas2lib import as2  # noqa: E402
from pyas2lib.exceptions import (  # noqa: E402
    AS2Exception,
    DecompressionError,
    DecryptionError,
    DuplicateDocument,
    InsufficientSecurityError,
    IntegrityError,
    PartnerNotFound,
)
from pyas2lib.utils import mime_to_bytes  # noqa: E402

if TYPE_CHECKING:
    from gateway.config import Partner, PartnerDirectory

log = structlog.get_logger("edigw.as2")

CHANNEL = "as2"
CONFIRM_TEXT = "The AS2 message has been received and stored by edigw."
FAILED_TEXT = ("The AS2 message could not be processed; the disposition notification "
               "says why.")
DUPLICATE_TEXT = ("A message with this Message-ID was received before; this copy was "
                  "not processed again.")

#: The outer HTTP headers pyas2lib is shown: what the MIME parse needs, and the AS2 headers
#: it reads. Nothing else (Host, Authorization, proxy headers) reaches it.
PASSED_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition",
                  "mime-version", "message-id", "as2-from", "as2-to", "as2-version",
                  "subject", "disposition-notification-to", "disposition-notification-options",
                  "receipt-delivery-option")

_DIGESTS = ("sha1", "sha224", "sha256", "sha384", "sha512", "md5")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is refused: the MDN's disposition modifier, the security event kind (None:
    not a security matter) and whether the sender was authenticated."""

    modifier: str
    reason: str
    event: str | None = None
    authenticated: bool = False


def _insufficient(message: Any, partner: Partner) -> Refusal | None:
    """The profile's security demands, checked on what was actually received: pyas2lib looks
    at the Content-Type only, which an unencrypted compressed message passes."""
    profile = partner.as2
    assert profile is not None
    missing = [what for what, wanted, got in (
        ("encrypted", profile.require_encryption, message.encrypted),
        ("signed", profile.require_signing, message.signed)) if wanted and not got]
    if not missing:
        return None
    return Refusal("insufficient-message-security",
                   f"the message is not {' and '.join(missing)}, which the partner's profile "
                   "requires", event="insufficient-security", authenticated=bool(
                       message.signed))


class As2Endpoint:
    """``handle(WebRequest) -> WebReply`` for AS2 messages posted by partners."""

    def __init__(self, settings: As2Settings, partners: PartnerDirectory, receiver: Receiver,
                 store: Store, archive: Archive, security: SecurityLog,
                 on_received: Callable[[list[Receipt]], None] | None = None,
                 on_mdn_queued: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.partners = partners
        self.receiver = receiver
        self.records = As2Records(store)
        self.store = store
        self.archive = archive
        self.security = security
        self.on_received = on_received
        #: Called when an asynchronous MDN was queued (wakes the MDN sender).
        self.on_mdn_queued = on_mdn_queued or (lambda: None)
        compat.set_decompression_limit(settings.max_size)
        self.identities: dict[str, LoadedIdentity] = {
            i.as2_id: load_identity(i) for i in settings.identities}
        self._orgs = {as2_id: (self._org(ident, sign=True), self._org(ident, sign=False))
                      for as2_id, ident in self.identities.items()}
        #: The partners' certificates as read, for the directory's ``version``: a changed
        #: profile (an upload, a rotation) has them read again.
        self._partner_certs: dict[str, tuple[list[bytes], bytes | None]] = {}
        self._certs_version = partners.version
        self._lock = threading.Lock()

    @property
    def max_body(self) -> int:
        """The largest request body the HTTP server lets through: ``[as2] max_size``."""
        return self.settings.max_size

    # -- the request ----------------------------------------------------------------------

    def handle(self, request: WebRequest) -> WebReply:
        """Receive one AS2 message; never raises."""
        if len(request.body) > self.settings.max_size:
            return _text(413, f"AS2 message over the {self.settings.max_size}-byte limit")
        headers = request.headers
        as2_from = _as2_name(headers.get("as2-from"))
        as2_to = _as2_name(headers.get("as2-to"))
        message_id = (headers.get("message-id") or "").strip().strip("<>").strip()
        if not as2_from or not as2_to or not message_id:
            missing = [n for n, v in (("AS2-From", as2_from), ("AS2-To", as2_to),
                                      ("Message-ID", message_id)) if not v]
            self.security.record(CHANNEL, "malformed", remote=request.remote,
                                 detail=f"missing {', '.join(missing)}")
            return _text(400, f"not an AS2 message: missing {', '.join(missing)}")
        try:
            if _is_mdn(request):
                return self._receive_mdn(request, as2_from, as2_to, message_id)
            return self._handle(request, as2_from, as2_to, message_id)
        except StoreError as exc:
            log.error("as2_store_unavailable", as2_from=as2_from, message_id=message_id,
                      error=str(exc))
            return _text(503, "the gateway cannot store the message now; send it again later")
        except Exception as exc:  # never crash: answer what can be answered
            log.error("as2_unexpected_error", as2_from=as2_from, as2_to=as2_to,
                      message_id=message_id, error=repr(exc), traceback=traceback.format_exc())
            try:
                msg = self._bare_message(headers, message_id, org=None)
                return self._refuse_plain(request, msg, as2_from, as2_to, message_id,
                                          partner=None,
                                          refusal=Refusal("unexpected-processing-error",
                                                          f"{type(exc).__name__}: {exc}"))
            except Exception:  # the last resort is a 500
                log.error("as2_answer_failed", message_id=message_id,
                          traceback=traceback.format_exc())
                return _text(500, "unexpected error while receiving the AS2 message")

    def _handle(self, request: WebRequest, as2_from: str, as2_to: str,
                message_id: str) -> WebReply:
        headers = request.headers
        partner = self.partners.by_identifier("as2", as2_from)
        profile = partner.as2 if partner is not None and partner.enabled else None
        orgs = self._orgs.get(as2_to)
        if profile is None or orgs is None or (profile.our_as2_id not in (None, as2_to)):
            who = f"AS2-From {as2_from!r}" if profile is None else f"AS2-To {as2_to!r}"
            unknown = Refusal("unknown-trading-partner", f"unknown {who}",
                              event="unknown-partner" if profile is None else "unknown-recipient")
            msg = self._bare_message(headers, message_id, org=None)
            return self._refuse_plain(request, msg, as2_from, as2_to, message_id,
                                      partner=partner if profile is not None else None,
                                      refusal=unknown)
        assert partner is not None
        org_sign, org_plain = orgs
        sign_mdn = profile.mdn_sign and bool(headers.get("disposition-notification-options"))

        message, refusal, passed = self._parse(request, partner, org_sign)
        if refusal is None:
            refusal = _insufficient(message, partner)
        mdn_wanted = bool(headers.get("disposition-notification-to"))
        mdn_url = (headers.get("receipt-delivery-option") or "").strip() or None
        if refusal is not None:
            return self._refuse(request, message, as2_from, as2_to, message_id, partner,
                                refusal, org_sign if sign_mdn else org_plain)
        # A repeat is recognised only once it is known to come from the partner (a stranger
        # naming a known Message-ID learns nothing).
        seen = self.records.find(as2_from, as2_to, message_id)
        if seen is not None and seen.accepted:
            return self._duplicate(request, as2_from, as2_to, message_id, partner,
                                   org_sign if sign_mdn else org_plain, seen.transmission_id)

        # -- accepted: the payload durably first, then the MDN ----------------------------
        payload, filename, part = _received_content(message, passed)
        algorithms = _algorithms(message, request)
        mode = "none" if not mdn_wanted else ("async" if mdn_url else "sync")
        item = Incoming(data=payload, channel=CHANNEL, channel_ref=message_id,
                        filename=filename or safe_name(message_id, "as2-message").name,
                        partner_hint=partner.id)

        def acknowledge(receipts: list[Receipt]) -> Acknowledgement[WebReply]:
            """The MDN built and the message recorded with it: the answer to send."""
            receipt = receipts[0]
            if message.mic is None and mdn_wanted:
                _unsigned_mic(message, headers, payload, part)
            mdn_raw: bytes | None = None
            mdn_type: str | None = None
            mdn_headers: dict[str, str] = {}
            mdn_body, signed = b"", False
            if mdn_wanted:
                message.receiver = org_sign if sign_mdn else org_plain
                mdn, signed = self._build_mdn(message, "processed", None, CONFIRM_TEXT, mode,
                                              mdn_url, org_plain)
                mdn_raw, mdn_type, mdn_headers, mdn_body = _mdn_parts(mdn)
            mdn_key = self.archive.put(mdn_raw) if mdn_raw is not None else None
            now = utcnow()
            added = self.records.add(
                message_id=message_id, partner_id=partner.id, as2_from=as2_from,
                as2_to=as2_to, transmission_id=receipt.transmission_id, received_at=now,
                signed=bool(message.signed), encrypted=bool(message.encrypted),
                compressed=bool(message.compressed), algorithms=algorithms,
                mic=_mic_text(message), disposition="processed", detail=None, mdn_mode=mode,
                mdn_signed=signed, mdn_url=mdn_url if mode == "async" else None,
                mdn_archive_key=mdn_key, mdn_content_type=mdn_type,
                mdn_state={"none": "none", "sync": "sent", "async": "pending"}[mode],
                mdn_next_at=now if mode == "async" else None,
                mdn_sent_at=now if mode == "sync" else None)
            if added is None:  # the same message, received at once by another request
                return Acknowledgement(answer=self._duplicate(
                    request, as2_from, as2_to, message_id, partner,
                    org_sign if sign_mdn else org_plain, receipt.transmission_id))
            log.info("as2_received", partner=partner.id, message_id=message_id,
                     transmission_id=receipt.transmission_id, signed=message.signed,
                     encrypted=message.encrypted, compressed=message.compressed,
                     algorithms=algorithms, mdn=mode, size=len(payload))
            if mode == "sync":
                reply = WebReply(200, mdn_body, content_type=mdn_type or "",
                                 headers=mdn_headers)
            elif mode == "async":
                reply = _text(200, f"AS2 message received; the MDN will be sent to {mdn_url}")
            else:
                reply = _text(200, "AS2 message received")
            detail = {"sync": "sync MDN sent", "async": "async MDN queued",
                      "none": "no MDN asked"}[mode]
            return Acknowledgement(acknowledged=receipts, detail=detail, process=receipts,
                                   answer=reply)

        ack = receive_then_acknowledge(self.receiver, [item], acknowledge, self.on_received)
        if ack.acknowledged and mode == "async":
            self.on_mdn_queued()
        assert ack.answer is not None
        return ack.answer

    # -- asynchronous MDNs for what we sent ----------------------------------------------------

    def _receive_mdn(self, request: WebRequest, as2_from: str, as2_to: str,
                     mdn_id: str) -> WebReply:
        """An MDN posted for a message we sent (``As2Sender``, ``mdn = "async"``): verified
        with the partner's certificates, its MIC compared with the one the sender kept in the
        outbound row's receipt, and the receipt recorded (DELIVERED, or FAILED with the
        disposition). Only a known partner's MDN for a message sent to it, signed when we
        asked for a signed one and verifying, is recorded; a repeat changes nothing."""
        partner = self.partners.by_identifier("as2", as2_from)
        profile = partner.as2 if partner is not None and partner.enabled else None
        if partner is None or profile is None or as2_to not in self.identities:
            self.security.record(CHANNEL, "unknown-partner", remote=request.remote,
                                 detail=f"MDN {as2_from} -> {as2_to} <{mdn_id}>")
            return _text(403, "MDN from an unknown AS2 partner")
        certs, ca = self._certificates(partner)
        raw, _passed = _raw_message(request)
        try:
            outcome = read_mdn(raw, message_id=None, certificates=certs, ca=ca,
                               validate=profile.validate_certificates,
                               partner_as2_id=profile.as2_id, mic=None)
        except As2SendError as exc:
            return _text(400, f"not a readable MDN: {exc}")
        original = outcome.original_message_id
        row = self.store.outbound_by_remote_id(original) if original else None
        if row is None or row.channel != CHANNEL or row.partner_id != partner.id:
            self.security.record(CHANNEL, "unexpected-mdn", remote=request.remote,
                                 partner_id=partner.id,
                                 detail=f"MDN <{mdn_id}> for <{original}>, which we did not "
                                        "send to this partner")
            return _text(404, "no message of ours to this partner has that Message-ID")
        if outcome.signed and not outcome.verified:
            self.security.record(CHANNEL, "bad-signature", remote=request.remote,
                                 partner_id=partner.id,
                                 detail=f"MDN <{mdn_id}> for <{original}>: {outcome.problem}")
            return _text(403, "the MDN's signature does not verify")
        if profile.mdn_signed and not outcome.signed:
            self.security.record(CHANNEL, "insufficient-security", remote=request.remote,
                                 partner_id=partner.id,
                                 detail=f"unsigned MDN <{mdn_id}> for <{original}>; a signed "
                                        "one was asked")
            return _text(403, "a signed MDN was asked for")
        if row.status != OutboundStatus.SENT:
            log.info("as2_mdn_repeat", partner=partner.id, outbound_id=row.id,
                     message_id=original, status=row.status)
            return _text(200, "MDN already recorded")
        mic, _alg = expected_mic(row.receipt)
        outcome = check_mdn(outcome, message_id=original, mic=mic)
        self.store.record_receipt(row.id, ok=outcome.ok, receipt=outcome.receipt())
        log.info("as2_mdn_received", partner=partner.id, outbound_id=row.id,
                 message_id=original, disposition=outcome.disposition, ok=outcome.ok)
        return _text(200, "MDN received")

    # -- parsing ----------------------------------------------------------------------------

    def _parse(self, request: WebRequest, partner: Partner, org: Any
               ) -> tuple[Any, Refusal | None, int]:
        """pyas2lib's parse with each of the partner's certificates until one verifies."""
        raw, passed = _raw_message(request)
        certs, ca = self._certificates(partner)
        assert partner.as2 is not None
        message: Any = None
        refusal: Refusal | None = None
        candidates: list[bytes | None] = [*certs] or [None]
        for cert in candidates:
            p = as2.Partner(as2_name=partner.as2.as2_id, verify_cert=cert, verify_cert_ca=ca,
                            validate_certs=partner.as2.validate_certificates,
                            sign=partner.as2.require_signing,
                            encrypt=partner.as2.require_encryption,
                            canonicalize_as_binary=partner.as2.canonicalize_as_binary,
                            mdn_confirm_text=CONFIRM_TEXT)
            message = as2.Message()
            status, (exc, _tb), _mdn = message.parse(
                raw, find_org_cb=lambda _to, org=org: org,
                find_partner_cb=lambda _from, p=p: p)
            refusal = _refusal(status, exc)
            if refusal is None or refusal.modifier != "authentication-failed":
                break
        return message, refusal, passed

    def _certificates(self, partner: Partner) -> tuple[list[bytes], bytes | None]:
        with self._lock:
            if self._certs_version != self.partners.version:  # profiles changed: read again
                self._certs_version = self.partners.version
                self._partner_certs.clear()
            found = self._partner_certs.get(partner.id)
            if found is None:
                assert partner.as2 is not None
                certs = [certificate_pem(c) for c in load_partner_certificates(partner.as2)]
                cas = load_ca_certificates(partner.as2)
                found = (certs, b"".join(certificate_pem(c) for c in cas) or None)
                self._partner_certs[partner.id] = found
            return found

    # -- answers ----------------------------------------------------------------------------

    def _duplicate(self, request: WebRequest, as2_from: str, as2_to: str, message_id: str,
                   partner: Partner, org: Any, first: str | None) -> WebReply:
        log.info("as2_duplicate", partner=partner.id, message_id=message_id,
                 transmission_id=first)
        if not request.headers.get("disposition-notification-to"):
            return _text(200, "AS2 message already received")
        msg = self._bare_message(request.headers, message_id, org=org)
        mdn, _signed = self._build_mdn(msg, "processed/warning", "duplicate-document",
                                       DUPLICATE_TEXT, "sync", None, self._orgs[as2_to][1])
        _raw, ctype, hdrs, body = _mdn_parts(mdn)
        return WebReply(200, body, content_type=ctype or "", headers=hdrs)

    def _refuse(self, request: WebRequest, message: Any, as2_from: str, as2_to: str,
                message_id: str, partner: Partner, refusal: Refusal, org: Any) -> WebReply:
        """A known partner's message that pyas2lib (or its profile) refused."""
        headers = request.headers
        mdn_url = (headers.get("receipt-delivery-option") or "").strip() or None
        mdn_wanted = bool(headers.get("disposition-notification-to"))
        # Only an authenticated sender's URL is posted to (see the module docstring).
        mode = "none" if not mdn_wanted else (
            "async" if mdn_url and refusal.authenticated else "sync")
        message.receiver = org
        message.mic = None  # no MIC for content that was not received
        return self._answer_refusal(request, message, as2_from, as2_to, message_id, partner,
                                    refusal, mode, mdn_url, algorithms=_algorithms(message,
                                                                                   request))

    def _refuse_plain(self, request: WebRequest, msg: Any, as2_from: str, as2_to: str,
                      message_id: str, partner: Partner | None, refusal: Refusal) -> WebReply:
        mode = "sync" if request.headers.get("disposition-notification-to") else "none"
        return self._answer_refusal(request, msg, as2_from, as2_to, message_id, partner,
                                    refusal, mode, None, algorithms=None)

    def _answer_refusal(self, request: WebRequest, message: Any, as2_from: str, as2_to: str,
                        message_id: str, partner: Partner | None, refusal: Refusal,
                        mode: str, mdn_url: str | None, algorithms: str | None) -> WebReply:
        partner_id = partner.id if partner is not None else None
        log.warning("as2_refused", partner=partner_id, as2_from=as2_from, as2_to=as2_to,
                    message_id=message_id, disposition=refusal.modifier, reason=refusal.reason)
        if refusal.event is not None:
            self.security.record(CHANNEL, refusal.event, remote=request.remote,
                                 partner_id=partner_id,
                                 detail=f"{as2_from} -> {as2_to} <{message_id}>: "
                                        f"{refusal.reason}"[:2000])
        disposition = f"processed/error: {refusal.modifier}"
        mdn_raw: bytes | None = None
        mdn_type: str | None = None
        hdrs: dict[str, str] = {}
        body, signed = b"", False
        if mode != "none":
            plain = self._orgs[as2_to][1] if as2_to in self._orgs else None
            mdn, signed = self._build_mdn(message, "processed/error", refusal.modifier,
                                          FAILED_TEXT, mode, mdn_url, plain)
            mdn_raw, mdn_type, hdrs, body = _mdn_parts(mdn)
        mdn_key = self.archive.put(mdn_raw) if mdn_raw is not None else None
        now = utcnow()
        self.records.add(
            message_id=message_id, partner_id=partner_id, as2_from=as2_from[:128],
            as2_to=as2_to[:128], transmission_id=None, received_at=now,
            signed=bool(getattr(message, "signed", False)),
            encrypted=bool(getattr(message, "encrypted", False)),
            compressed=bool(getattr(message, "compressed", False)), algorithms=algorithms,
            mic=None, disposition=disposition, detail=refusal.reason[:2000], mdn_mode=mode,
            mdn_signed=signed, mdn_url=mdn_url if mode == "async" else None,
            mdn_archive_key=mdn_key, mdn_content_type=mdn_type,
            mdn_state={"none": "none", "sync": "sent", "async": "pending"}[mode],
            mdn_next_at=now if mode == "async" else None,
            mdn_sent_at=now if mode == "sync" else None)
        if mode == "sync":
            return WebReply(200, body, content_type=mdn_type or "", headers=hdrs)
        if mode == "async":
            self.on_mdn_queued()
            return _text(200, "AS2 message refused; the MDN will be sent to "
                         f"{mdn_url}")
        status = 403 if refusal.event else 422
        return _text(status, f"AS2 message refused: {refusal.modifier}")

    def _build_mdn(self, message: Any, status: str, modifier: str | None, text: str,
                   mode: str, mdn_url: str | None, fallback_org: Any) -> tuple[Any, bool]:
        """pyas2lib's MDN, signed when the receiver object holds a signing key and the partner
        asked; an MDN that cannot be signed (an unknown micalg …) goes unsigned."""
        mode_flag = as2.ASYNCHRONOUS_MDN if mode == "async" else as2.SYNCHRONOUS_MDN
        mdn = as2.Mdn(mdn_mode=mode_flag, mdn_url=mdn_url)
        try:
            mdn.build(message=message, status=status, detailed_status=modifier,
                      confirmation_text=text, failed_text=text)
        except Exception as exc:  # fall back to an unsigned MDN
            if message.receiver is None or message.receiver is fallback_org:
                raise
            log.warning("as2_mdn_unsigned", message_id=message.message_id, error=repr(exc))
            message.receiver = fallback_org
            mdn = as2.Mdn(mdn_mode=mode_flag, mdn_url=mdn_url)
            mdn.build(message=message, status=status, detailed_status=modifier,
                      confirmation_text=text, failed_text=text)
        return mdn, mdn.payload.get_content_type() == "multipart/signed"

    def _bare_message(self, headers: dict[str, str], message_id: str, org: Any) -> Any:
        """A pyas2lib message holding only the AS2 headers, to build an MDN for a message
        that was not (or could not be) parsed."""
        msg = as2.Message()
        msg.message_id = message_id
        msg.receiver = org
        if org is not None:  # pyas2lib signs with the partner's signature algorithm
            msg.sender = as2.Partner(as2_name=_as2_name(headers.get("as2-from")))
        msg.payload = email.message.Message()
        for name in ("as2-from", "as2-to", "disposition-notification-to",
                     "disposition-notification-options", "receipt-delivery-option"):
            value = headers.get(name)
            if value and (org is not None or name != "disposition-notification-options"):
                msg.payload.add_header(name, _one_line(value))
        return msg

    @staticmethod
    def _org(ident: LoadedIdentity, *, sign: bool) -> Any:
        return as2.Organization(as2_name=ident.as2_id,
                                sign_key=ident.bundle_pem if sign else None,
                                decrypt_key=ident.bundle_pem, mdn_confirm_text=CONFIRM_TEXT)


# -- helpers ------------------------------------------------------------------------------------

def _is_mdn(request: WebRequest) -> bool:
    """An MDN rather than a message: multipart/report, or multipart/signed around one."""
    ctype = request.headers.get("content-type", "").strip().lower()
    if ctype.startswith("multipart/report"):
        return True
    return ctype.startswith("multipart/signed") and re.search(
        rb"(?im)^content-type:[ \t]*multipart/report", request.body[:8192]) is not None


def _text(status: int, text: str) -> WebReply:
    return WebReply(status, (text + "\n").encode("utf-8"))


def _one_line(value: str) -> str:
    return re.sub(r"[\r\n]+[ \t]*", " ", value).strip()


def _as2_name(value: str | None) -> str:
    return email.utils.unquote(_one_line(value or "")).strip() if value else ""


def _raw_message(request: WebRequest) -> tuple[bytes, int]:
    """The MIME message pyas2lib parses: the passed headers, a blank line, the body; and how
    many headers were passed (pyas2lib appends each to the payload it extracts)."""
    lines = []
    for name in PASSED_HEADERS:
        value = request.headers.get(name)
        if value:
            lines.append(f"{name}: {_one_line(value)}\r\n")
    head = "".join(lines).encode("utf-8", "surrogateescape")
    return head + b"\r\n" + request.body, len(lines)


def _received_content(message: Any, passed: int
                      ) -> tuple[bytes, str | None, email.message.Message]:
    """The payload as its own MIME headers say, and its file name.

    After parsing, pyas2lib appends the outer HTTP headers to the part it extracted; for a part
    without its own Content-Transfer-Encoding, an outer ``base64`` would garble the content
    (and an outer Content-Disposition would name it ``smime.p7m``). For a signed, encrypted or
    compressed message the part is read with its own headers only."""
    part = message.payload
    if message.signed or message.encrypted or message.compressed:
        part = copy.copy(part)
        # pyas2lib added exactly one header per passed header, at the end (as2.py parse()).
        part._headers = list(part._headers[:len(part._headers) - passed])
    if part.is_multipart():
        data = message.content
    else:
        data = part.get_payload(decode=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    filename = part.get_filename()
    return data or b"", (safe_name(filename, "as2-payload").name if filename else None), part


def _refusal(status: str, exc: BaseException | None) -> Refusal | None:
    if status == "processed" and exc is None:
        return None
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else status
    if isinstance(exc, IntegrityError):
        if "digest does not match" in str(exc).lower():
            return Refusal("integrity-check-failed", reason, event="integrity-check-failed")
        return Refusal("authentication-failed", reason, event="bad-signature")
    if isinstance(exc, InsufficientSecurityError):
        return Refusal("insufficient-message-security", reason, event="insufficient-security")
    if isinstance(exc, DecryptionError):
        return Refusal("decryption-failed", reason, event="decryption-failed")
    if isinstance(exc, DecompressionError):
        return Refusal("decompression-failed", reason)
    if isinstance(exc, PartnerNotFound):
        return Refusal("unknown-trading-partner", reason, event="unknown-partner")
    if isinstance(exc, DuplicateDocument):  # not asked of pyas2lib; checked before parse
        return Refusal("unexpected-processing-error", reason)
    if isinstance(exc, AS2Exception) and exc.disposition_modifier == "invalid-certificate":
        return Refusal("authentication-failed", reason, event="invalid-certificate")
    # pyas2lib lets some errors through unwrapped (an unreadable signature is asn1crypto's
    # ValueError): the step that raised says what failed.
    step = _failed_step(exc)
    if step == "verify_message":
        return Refusal("authentication-failed", reason, event="bad-signature")
    if step == "decrypt_message":
        return Refusal("decryption-failed", reason, event="decryption-failed")
    if step == "decompress_message":
        return Refusal("decompression-failed", reason)
    return Refusal("unexpected-processing-error", reason)


def _failed_step(exc: BaseException | None) -> str | None:
    """The pyas2lib CMS function in whose call ``exc`` was raised, if any."""
    tb = exc.__traceback__ if exc is not None else None
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith(("pyas2lib/cms.py", "pyas2lib\\cms.py")):
            found = code.co_name
        tb = tb.tb_next
    return found


def _algorithms(message: Any, request: WebRequest) -> str | None:
    """The algorithms that can be told: digest (from the signature), content encryption and
    key transport (read from the envelope: pyas2lib names no AES algorithm)."""
    found: list[str] = []
    if getattr(message, "digest_alg", None):
        found.append(str(message.digest_alg))
    if getattr(message, "encrypted", False) or "enveloped-data" in request.headers.get(
            "content-type", "").lower():
        found.extend(_envelope_algorithms(request))
    return ", ".join(found)[:128] or None


def _envelope_algorithms(request: WebRequest) -> list[str]:
    try:
        body = request.body
        if request.headers.get("content-transfer-encoding", "").strip().lower() == "base64":
            body = base64.b64decode(body)
        info = asn1_cms.ContentInfo.load(body)
        env = info["content"]
        alg = env["encrypted_content_info"]["content_encryption_algorithm"]
        cipher = alg.encryption_cipher
        out = [f"{cipher}_{alg.key_length * 8}_cbc" if cipher in ("aes", "tripledes", "rc2",
                                                                    "des")
               else str(alg["algorithm"].native)]
        rinfo = env["recipient_infos"][0].chosen
        out.append(str(rinfo["key_encryption_algorithm"]["algorithm"].native))
        return out
    except Exception:  # best effort, for the record only
        return []


def _requested_micalg(headers: dict[str, str]) -> str | None:
    options = headers.get("disposition-notification-options", "")
    for item in options.split(";"):
        name, _, values = item.partition("=")
        if name.strip().lower() == "signed-receipt-micalg":
            for v in values.split(",")[1:]:
                alg = v.strip().lower().replace("-", "")
                if alg in _DIGESTS:
                    return alg
    return None


def _unsigned_mic(message: Any, headers: dict[str, str], payload: bytes,
                  part: email.message.Message) -> None:
    """RFC 4130 §7.3.1: the MIC of an unsigned message, with the algorithm the partner asked
    (none asked: no MIC). Encrypted: over the decrypted MIME headers and content; otherwise
    over the content alone."""
    alg = _requested_micalg(headers)
    if alg is None:
        return
    data = mime_to_bytes(part) if message.encrypted and not message.compressed else payload
    message.mic = base64.b64encode(hashlib.new(alg, data).digest())
    message.digest_alg = alg


def _mic_text(message: Any) -> str | None:
    if message.mic is None:
        return None
    mic = message.mic.decode() if isinstance(message.mic, bytes) else str(message.mic)
    return f"{mic}, {message.digest_alg}"


def _mdn_parts(mdn: Any) -> tuple[bytes, str, dict[str, str], bytes]:
    """The MDN as archived (headers, blank line, body), its content type, the HTTP headers
    to answer with, and the body."""
    body = mdn.content
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs = {k: _one_line(str(v)) for k, v in mdn.payload.items()}
    ctype = next((v for k, v in hdrs.items() if k.lower() == "content-type"), "")
    raw = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode("utf-8") + b"\r\n" + body
    http = {k: v for k, v in hdrs.items() if k.lower() not in ("content-type", "mime-version")}
    return raw, ctype, http, body


def parse_headers(raw: bytes) -> tuple[dict[str, str], bytes]:
    """Split a captured AS2 message (HTTP headers, blank line, body) into lower-cased headers
    and body: how tests and tools turn a capture into a ``WebRequest``."""
    blank = re.search(rb"\r?\n\r?\n", raw)
    if blank is None:
        return {}, raw
    head, body = raw[:blank.end()], raw[blank.end():]
    parsed = BytesHeaderParser(policy=HTTP).parsebytes(head)
    return {k.lower(): _one_line(str(v)) for k, v in parsed.items()}, body


def start(ctx: ChannelContext) -> ChannelRun:
    """With ``[as2]``: the MDN sender's loop, the daily certificate check and, when the HTTP
    server runs, ``POST /as2``."""
    from gateway.channels.as2.certificates import check_certificates
    from gateway.channels.as2.mdn_sender import AsyncMdnSender

    settings = ctx.settings.as2
    run = ChannelRun()
    if settings is None:
        return run
    mdn_sender = AsyncMdnSender(settings, ctx.store, ctx.archive)
    run.loops.append(("as2-mdn", mdn_sender.run))
    run.periodic.append(("certificates",
                         lambda: check_certificates(settings, ctx.partners, ctx.store), 86400.0))
    run.needs_http = True
    if ctx.listening:
        run.endpoints["/as2"] = As2Endpoint(
            settings, ctx.partners, receiver=ctx.receiver, store=ctx.store,
            archive=ctx.archive, security=SecurityLog(ctx.store),
            on_received=ctx.on_received, on_mdn_queued=mdn_sender.wake)
    return run
