"""What the command line says of this channel: the problems ``edigw check-config`` finds in
``[sms]``, and a webhook delivery as ``edigw show`` prints it. Imports nothing heavy: the
registry reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, PartnerDirectory


def problems(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    """Each configured provider has the secret its signatures are checked with."""
    sms = settings.sms
    if sms is None:
        return []
    found = []
    if sms.twilio is not None and not sms.twilio.token_value():
        found.append(f"{settings.source}: sms.twilio needs auth_token or auth_token_file")
    if sms.vonage is not None and not sms.vonage.secret_value():
        found.append(f"{settings.source}: sms.vonage needs signature_secret or "
                     "signature_secret_file")
    return found


def shown(record: Mapping[str, Any]) -> tuple[str, list[tuple[str, object]]]:
    """The webhook delivery that brought a transmission: provider, sender, our reply."""
    return "SMS", [("provider", f"{record['provider']} {record['provider_message_id']}"),
                   ("from", record["sender"]), ("replied", record["reply"])]
