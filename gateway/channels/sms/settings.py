"""The SMS channel's settings (``[sms]``): the providers' webhooks and number handling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from gateway.channels.sections import StrictModel, secret_from


class TwilioSettings(StrictModel):
    """Twilio's inbound SMS webhook (``POST /sms/twilio``): form-encoded, signed with the
    account's auth token (``X-Twilio-Signature``), answered with TwiML."""

    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    #: Sending (outbound confirmations): the account (basic auth ``account_sid`` and the
    #: auth token), our number, and the API's base URL (another one in tests).
    account_sid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{2,64}$")
    from_number: str | None = None
    api_url: str = Field(default="https://api.twilio.com", pattern=r"^https?://")

    def token_value(self) -> str | None:
        return secret_from(self.auth_token, self.auth_token_file)


class VonageSettings(StrictModel):
    """Vonage's inbound message webhook (``POST /sms/vonage``): JSON, signed with the
    signature secret (a JWT in ``Authorization`` whose ``payload_hash`` covers the body)."""

    signature_secret: SecretStr | None = None
    signature_secret_file: Path | None = None
    #: Sending (outbound confirmations) with the Messages API (``POST /v1/messages``, basic
    #: auth with the API key and secret): our number, and the API's base URL.
    api_key: str | None = None
    api_secret: SecretStr | None = None
    api_secret_file: Path | None = None
    from_number: str | None = None
    api_url: str = Field(default="https://api.nexmo.com", pattern=r"^https?://")

    def secret_value(self) -> str | None:
        return secret_from(self.signature_secret, self.signature_secret_file)

    def api_secret_value(self) -> str | None:
        return secret_from(self.api_secret, self.api_secret_file)


class SmsSettings(StrictModel):
    """SMS order webhooks. Numbers are normalised to E.164 with ``default_region`` for
    numbers written without a country code."""

    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "FR"
    twilio: TwilioSettings | None = None
    vonage: VonageSettings | None = None
    max_length: int = Field(default=4000, ge=160, le=100000)  # characters of one message
    #: The provider outbound confirmations go through (default: the one configured for
    #: sending, twilio first).
    send_with: Literal["twilio", "vonage"] | None = None
    #: Characters of one outbound confirmation (longer text is cut, ending with "…").
    send_max_length: int = Field(default=160, ge=20, le=1600)
    send_timeout: float = Field(default=30.0, gt=0, le=600)


class SmsSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    sms: SmsSettings | None = None
