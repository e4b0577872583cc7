"""Outbound SMS: a short confirmation for a partner ("Order 4711 accepted, delivery 12/03")
sent through the provider's HTTPS API to its first ``identifiers.phone``.

The payload is the document's plain-text rendering (UTF-8); it is sent as one text, cut to
``[sms] send_max_length`` characters. Twilio: ``POST /2010-04-01/Accounts/{sid}/Messages.json``
(form, basic auth account SID and auth token), the message ``sid`` answered; Vonage: the
Messages API, ``POST /v1/messages`` (JSON, basic auth API key and secret), the
``message_uuid`` answered. The provider accepting the text is "sent" (``delivered=False``)
with its id as ``remote_id``.

A refused connection, a timeout, a 5xx, 401/403 (our credentials) or 429 raise
``SmsSendError``: retried. 400 and 422 (the provider will never take this text to this
number) are ``DeliveryRefused``: failed at once, for an operator.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

from gateway.channels.outbound import Delivery, DeliveryRefused
from gateway.channels.sms.settings import SmsSettings
from gateway.channels.sms.webhook import e164
from gateway.core.errors import EdigwError
from gateway.store.records import OutboundRow

if TYPE_CHECKING:
    from gateway.config import Partner

_PERMANENT = (400, 422)


class SmsSendError(EdigwError):
    """The text did not reach the provider (or the provider failed): retried."""


def sms_text(data: bytes, limit: int) -> str:
    """The payload as one SMS text: UTF-8 (undecodable bytes replaced), blank space at line
    ends and blank lines dropped, cut to ``limit`` characters ending with "…"."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    text = "\n".join(line for line in lines if line)
    if len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text


class SmsSender:
    """The dispatcher's ``Sender`` for channel ``sms``."""

    def __init__(self, settings: SmsSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._own_client = client is None
        self.client = client or httpx.Client(follow_redirects=False)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def provider(self) -> str:
        """The provider texts go through: ``send_with``, else the one set up for sending."""
        s = self.settings
        if s.send_with is not None:
            return s.send_with
        if s.twilio is not None and s.twilio.account_sid:
            return "twilio"
        if s.vonage is not None and s.vonage.api_key:
            return "vonage"
        raise SmsSendError("no SMS provider set up for sending: [sms.twilio] account_sid or "
                           "[sms.vonage] api_key")

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> Delivery:
        phones = partner.identifiers.phone if partner is not None else []
        number = e164(phones[0], self.settings.default_region) if phones else None
        if number is None:
            raise SmsSendError(f"partner {row.partner_id} has no usable phone number "
                               "(identifiers.phone) to text")
        text = sms_text(data, self.settings.send_max_length)
        if not text:
            raise DeliveryRefused(f"{row.filename} renders as an empty text")
        provider = self.provider()
        if provider == "twilio":
            message_id = self._twilio(number, text)
        else:
            message_id = self._vonage(number, text)
        return Delivery(detail=f"{row.kind} texted to {number} via {provider} "
                               f"({len(text)} characters)",
                        delivered=False, remote_id=message_id)

    def _twilio(self, number: str, text: str) -> str:
        t = self.settings.twilio
        token = t.token_value() if t is not None else None
        if t is None or not t.account_sid or not token or not t.from_number:
            raise SmsSendError("[sms.twilio] needs account_sid, auth_token and from_number "
                               "to send")
        url = f"{t.api_url.rstrip('/')}/2010-04-01/Accounts/{t.account_sid}/Messages.json"
        answer = self._post("twilio", url, auth=(t.account_sid, token),
                            data={"To": number, "From": t.from_number, "Body": text})
        sid = answer.get("sid")
        if not isinstance(sid, str) or not sid:
            raise SmsSendError(f"twilio answered without a message sid: {answer!r:.300}")
        return sid

    def _vonage(self, number: str, text: str) -> str:
        v = self.settings.vonage
        secret = v.api_secret_value() if v is not None else None
        if v is None or not v.api_key or not secret or not v.from_number:
            raise SmsSendError("[sms.vonage] needs api_key, api_secret and from_number "
                               "to send")
        url = f"{v.api_url.rstrip('/')}/v1/messages"
        answer = self._post("vonage", url, auth=(v.api_key, secret), json={
            "message_type": "text", "channel": "sms", "to": number.lstrip("+"),
            "from": v.from_number.lstrip("+"), "text": text})
        uuid = answer.get("message_uuid")
        if not isinstance(uuid, str) or not uuid:
            raise SmsSendError(f"vonage answered without a message_uuid: {answer!r:.300}")
        return uuid

    def _post(self, provider: str, url: str, *, auth: tuple[str, str],
              **body: Any) -> dict[str, Any]:
        try:
            reply = self.client.post(url, auth=auth, timeout=self.settings.send_timeout,
                                     headers={"Accept": "application/json"}, **body)
        except httpx.HTTPError as exc:
            raise SmsSendError(f"{provider}: {type(exc).__name__}: {exc}") from exc
        try:
            answer = reply.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if reply.status_code in _PERMANENT:
            raise DeliveryRefused(f"{provider} refused the text ({reply.status_code}): "
                                  f"{_why(answer, reply)}")
        if not 200 <= reply.status_code < 300:
            raise SmsSendError(f"{provider} answered {reply.status_code}: {_why(answer, reply)}")
        return answer


def _why(answer: dict[str, Any], reply: httpx.Response) -> str:
    """The provider's error text (Twilio ``message``, Vonage ``title``/``detail``)."""
    parts = [str(answer[k]) for k in ("code", "message", "title", "detail") if answer.get(k)]
    return ", ".join(parts)[:500] if parts else reply.text[:300]
