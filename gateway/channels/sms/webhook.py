"""SMS order webhooks: Twilio-style (``POST /sms/twilio``) and Vonage-style (``POST /sms/vonage``).

What a request goes through, in this order:

1. signature (``signatures``): refused with 403 and a security event when it does not
   verify, or when the provider's secret is not configured; nothing is stored;
2. body: refused with 400 and the reason when it is not an inbound text SMS (missing sender,
   id or text, bad JSON, text over ``[sms] max_length``); nothing is stored;
3. a provider message id seen before is answered as it was then (``webhook_messages``);
4. the SMS is archived in its envelope and recorded as a transmission (durable) FIRST, then
   its ``webhook_messages`` row with the reply, then the receipt is acknowledged and handed
   to processing; only then is the reply sent.

The sender's number is normalised to E.164 (``phonenumbers``, ``[sms] default_region`` for
national numbers) and the partner found by ``identifiers.phone``. An unknown number (or a
disabled partner's) is still received, without a partner hint, so the pipeline quarantines it
as an unknown sender; it is answered politely and is not a security event.

The reply is composed from the text with the SMS order syntax (``gateway.formats.sms``,
pure functions shared with the reader, so that the reply and the order say the same).
Twilio sends it back as TwiML; Vonage does not reply in-band, so its JSON answer only carries
the text (``{"status": "received", "reply": …}``) for the operator's tools.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import phonenumbers
import structlog

from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.channels.sms.records import WebhookMessage, WebhookMessages
from gateway.channels.sms.settings import SmsSettings
from gateway.channels.sms.signatures import SignatureError, verify_twilio, verify_vonage
from gateway.core.errors import RequestRefused
from gateway.core.ports import Incoming, Receipt, Receiver, WebReply, WebRequest
from gateway.formats.sms.envelope import SmsEnvelope, sanitise, sms_order_number
from gateway.formats.sms.syntax import parse_sms_order, reply_text, unknown_sender_reply
from gateway.store.db import Store
from gateway.store.security import SecurityLog

if TYPE_CHECKING:
    from gateway.config import Partner, PartnerDirectory

log = structlog.get_logger("edigw.sms")

CHANNEL = "sms"
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: One SMS at a time from lookup to record: a provider retrying while the first request is
#: still being stored must find it, not make a second transmission.
_RECEIVE_LOCK = threading.Lock()


class BadRequest(RequestRefused):
    """The body is not an inbound text SMS (400); ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS as a provider's webhook gave it, before normalisation."""

    message_id: str
    sender: str
    recipient: str | None
    text: str


def e164(number: str, region: str, *, international: bool = False) -> str | None:
    """``number`` in E.164 (``+33612345678``), or None when it is not a phone number.

    ``international``: digits without '+' are an international number (Vonage writes
    ``33612345678``); otherwise they are national numbers of ``region``."""
    number = number.strip()
    if international and number.isdigit():
        number = "+" + number
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class _SmsWebhook:
    """What both providers share: sender, partner, duplicates, durable receive, reply."""

    provider = ""
    #: Vonage writes international numbers without '+'.
    international_numbers = False

    def __init__(self, settings: SmsSettings, partners: PartnerDirectory, *,
                 receiver: Receiver, store: Store, security: SecurityLog,
                 on_received: Callable[[list[Receipt]], None] | None = None) -> None:
        self.settings = settings
        self.partners = partners
        self.receiver = receiver
        self.messages = WebhookMessages(store)
        self.security = security
        self.on_received = on_received

    @property
    def channel(self) -> str:
        return f"sms:{self.provider}"

    @property
    def max_body(self) -> int:
        """The largest request body the HTTP server lets through (413 beyond, before it is
        buffered): a message of ``max_length`` characters written the longest way
        (percent-encoded or JSON-escaped UTF-8, 12 bytes a character) with the provider's
        other fields; 64 KiB at least."""
        return max(64 * 1024, 12 * self.settings.max_length + 16 * 1024)

    # -- provider specifics -----------------------------------------------------------------

    def verify(self, request: WebRequest) -> None:
        """Raise ``SignatureError`` unless the request is signed by the provider."""
        raise NotImplementedError

    def read(self, request: WebRequest) -> InboundSms:
        """The SMS of a verified request; raise ``BadRequest``."""
        raise NotImplementedError

    def answer(self, reply: str) -> WebReply:
        raise NotImplementedError

    # -- the request ------------------------------------------------------------------------

    def handle(self, request: WebRequest) -> WebReply:
        if request.method != "POST":
            return WebReply(405, b"POST only\n", headers={"Allow": "POST"})
        try:
            self.verify(request)
        except SignatureError as exc:
            self.security.record(self.channel, "bad-signature", remote=request.remote,
                                 detail=exc.reason)
            return WebReply(403, b"signature does not verify\n")
        try:
            sms = self.read(request)
            self._check(sms)
        except BadRequest as exc:
            log.warning("sms_refused", provider=self.provider, remote=request.remote,
                        reason=exc.reason)
            return WebReply(400, f"{exc.reason}\n".encode())
        return self.answer(self._receive(sms))

    def _check(self, sms: InboundSms) -> None:
        if not _MESSAGE_ID.match(sms.message_id):
            raise BadRequest(f"message id {sanitise(sms.message_id, 40)!r} is not a "
                             "provider message id")
        if not sanitise(sms.sender):
            raise BadRequest("sender number is empty")
        if len(sms.text) > self.settings.max_length:
            raise BadRequest(f"message text is {len(sms.text)} characters, over the limit "
                             f"of {self.settings.max_length} ([sms] max_length)")

    def _partner(self, number: str | None) -> Partner | None:
        partner = self.partners.by_identifier("phone", number) if number else None
        return partner if partner is not None and partner.enabled else None

    def _receive(self, sms: InboundSms) -> str:
        """Receive durably (or find the earlier reception); returns the reply text."""
        number = e164(sms.sender, self.settings.default_region,
                      international=self.international_numbers)
        sender = number or sanitise(sms.sender, 64)
        ref = f"{self.provider}:{sms.message_id}"
        with _RECEIVE_LOCK:
            seen = self.messages.find(self.provider, sms.message_id)
            if seen is not None:
                log.info("sms_duplicate", provider=self.provider, message_id=sms.message_id,
                         transmission_id=seen.transmission_id)
                return seen.reply or ""
            partner = self._partner(number)
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            envelope = SmsEnvelope(provider=self.provider, message_id=sms.message_id,
                                   sender=sender, recipient=sms.recipient, received=now,
                                   text=sms.text)
            item = Incoming(data=envelope.to_bytes(), channel=CHANNEL, channel_ref=ref,
                            filename=f"sms-{self.provider}-{sms.message_id}.txt",
                            partner_hint=partner.id if partner else None)

            def acknowledge(receipts: list[Receipt]) -> Acknowledgement[str]:
                """The reply worked out and recorded with the provider's message id."""
                tid = receipts[0].transmission_id
                if partner is None:
                    reply = unknown_sender_reply(tid)
                else:
                    order = parse_sms_order(sms.text)
                    reply = reply_text(order, order_number=order.reference or sms_order_number(
                        self.provider, sms.message_id))
                self.messages.add(WebhookMessage(
                    provider=self.provider, provider_message_id=sms.message_id,
                    sender=sender, partner_id=partner.id if partner else None,
                    transmission_id=tid, received_at=now, reply=reply))
                log.info("sms_received", provider=self.provider, message_id=sms.message_id,
                         transmission_id=tid, sender=sender,
                         partner=partner.id if partner else None)
                return Acknowledgement(acknowledged=receipts, detail="sms reply sent",
                                       process=receipts, answer=reply)

            ack = receive_then_acknowledge(self.receiver, [item], acknowledge,
                                           self.on_received)
        return ack.answer or ""


class TwilioWebhook(_SmsWebhook):
    """Twilio's inbound SMS webhook: form-encoded, ``X-Twilio-Signature``, answered in TwiML."""

    provider = "twilio"

    def _params(self, request: WebRequest) -> list[tuple[str, str]]:
        try:
            return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return []  # cannot be what Twilio signed: the signature check refuses it

    def verify(self, request: WebRequest) -> None:
        token = self.settings.twilio.token_value() if self.settings.twilio else None
        if not token:
            raise SignatureError("no Twilio auth token configured ([sms.twilio] auth_token)")
        verify_twilio(token, request.url, self._params(request),
                      request.headers.get("x-twilio-signature"))

    def read(self, request: WebRequest) -> InboundSms:
        params = dict(self._params(request))
        missing = [k for k in ("MessageSid", "From", "Body")
                   if k not in params and not (k == "MessageSid" and "SmsMessageSid" in params)]
        if missing:
            raise BadRequest(f"not an inbound Twilio SMS: {', '.join(missing)} missing")
        return InboundSms(message_id=params.get("MessageSid") or params["SmsMessageSid"],
                          sender=params["From"], recipient=params.get("To"),
                          text=params["Body"])

    def answer(self, reply: str) -> WebReply:
        body = ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                + (f"<Message>{escape(reply)}</Message>" if reply else "")
                + "</Response>")
        return WebReply(200, body.encode("utf-8"), content_type="text/xml; charset=utf-8")


class VonageWebhook(_SmsWebhook):
    """Vonage's inbound message webhook (Messages API v1): JSON, signed with a JWT whose
    ``payload_hash`` covers the body. Vonage does not send a reply from the webhook's
    answer: the reply text is in the JSON answer for the record only."""

    provider = "vonage"
    international_numbers = True

    def verify(self, request: WebRequest) -> None:
        secret = self.settings.vonage.secret_value() if self.settings.vonage else None
        if not secret:
            raise SignatureError("no Vonage signature secret configured "
                                 "([sms.vonage] signature_secret)")
        verify_vonage(secret, request.headers.get("authorization"), request.body)

    def read(self, request: WebRequest) -> InboundSms:
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest("body is not a JSON object")
        channel = data.get("channel", "sms")
        if channel != "sms":
            raise BadRequest(f"not an SMS (channel {sanitise(str(channel), 20)!r})")
        kind = data.get("message_type", "text")
        if kind != "text":
            raise BadRequest(f"not a text message (message_type {sanitise(str(kind), 20)!r})")
        missing = [k for k in ("message_uuid", "from", "text")
                   if not isinstance(data.get(k), str)]
        if missing:
            raise BadRequest(f"not an inbound Vonage SMS: {', '.join(missing)} missing")
        to = data.get("to")
        return InboundSms(message_id=data["message_uuid"], sender=data["from"],
                          recipient=to if isinstance(to, str) else None, text=data["text"])

    def answer(self, reply: str) -> WebReply:
        return WebReply(200, json.dumps({"status": "received", "reply": reply}).encode(),
                        content_type="application/json")


def start(ctx: ChannelContext) -> ChannelRun:
    """With ``[sms]`` and the HTTP server running: ``POST /sms/<provider>`` for each provider
    configured."""
    settings = ctx.settings.sms
    run = ChannelRun()
    if settings is None:
        return run
    run.needs_http = True
    if not ctx.listening:
        return run
    security = SecurityLog(ctx.store)
    for path, webhook, configured in (("/sms/twilio", TwilioWebhook, settings.twilio),
                                      ("/sms/vonage", VonageWebhook, settings.vonage)):
        if configured is not None:
            run.endpoints[path] = webhook(settings, ctx.partners, receiver=ctx.receiver,
                                          store=ctx.store, security=security,
                                          on_received=ctx.on_received)
    return run
