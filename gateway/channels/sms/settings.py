"""The SMS channel's settings (``[sms]``): the providers' webhooks and number handling."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr

from gateway.channels.sections import StrictModel, secret_from


class TwilioSettings(StrictModel):
    """Twilio's inbound SMS webhook (``POST /sms/twilio``): form-encoded, signed with the
    account's auth token (``X-Twilio-Signature``), answered with TwiML."""

    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None

    def token_value(self) -> str | None:
        return secret_from(self.auth_token, self.auth_token_file)


class VonageSettings(StrictModel):
    """Vonage's inbound message webhook (``POST /sms/vonage``): JSON, signed with the
    signature secret (a JWT in ``Authorization`` whose ``payload_hash`` covers the body)."""

    signature_secret: SecretStr | None = None
    signature_secret_file: Path | None = None

    def secret_value(self) -> str | None:
        return secret_from(self.signature_secret, self.signature_secret_file)


class SmsSettings(StrictModel):
    """SMS order webhooks. Numbers are normalised to E.164 with ``default_region`` for
    numbers written without a country code."""

    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "FR"
    twilio: TwilioSettings | None = None
    vonage: VonageSettings | None = None
    max_length: int = Field(default=4000, ge=160, le=100000)  # characters of one message


class SmsSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    sms: SmsSettings | None = None
