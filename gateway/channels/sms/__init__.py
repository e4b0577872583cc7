"""SMS order webhooks (Twilio-style and Vonage-style): signatures, the endpoints and the
record of provider message ids; a partner's phone numbers in the console and the API
(``admin``, ``api``, ``templates/``). See docs/sms.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.channels.kind import (
    ChannelContext,
    ChannelKind,
    ChannelRun,
    ConfiguredChannel,
    PartnerFormPost,
)
from gateway.channels.sms import explain
from gateway.channels.sms.settings import SmsSection

if TYPE_CHECKING:
    from fastapi import APIRouter

    from gateway.channels.outbound import Sender
    from gateway.config import GatewaySettings, PartnerDirectory
    from gateway.store.db import Store

#: The providers whose webhooks ``[sms]`` may configure, each at ``POST /sms/<provider>``.
PROVIDERS = ("twilio", "vonage")


def _providers(settings: GatewaySettings) -> list[str]:
    sms = settings.sms
    return [] if sms is None else [n for n in PROVIDERS if getattr(sms, n) is not None]


def _start(ctx: ChannelContext) -> ChannelRun:
    from gateway.channels.sms.webhook import start

    return start(ctx)


def _configured(settings: GatewaySettings, partners: PartnerDirectory
                ) -> list[ConfiguredChannel]:
    listen = f"http://{settings.http.host}:{settings.http.port}"
    return [ConfiguredChannel(f"sms:{p}", "sms", None, f"POST {listen}/sms/{p}")
            for p in _providers(settings)]


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    if settings.sms is None:
        return []
    return ["sms        " + (", ".join(f"POST /sms/{n}" for n in _providers(settings))
                             or "no provider")]


def _transport(store: Store, transmission_id: str) -> Mapping[str, Any] | None:
    from gateway.channels.sms.records import transport_record

    return transport_record(store, transmission_id)


def _partner_api() -> APIRouter:
    from gateway.channels.sms.api import router

    return router()


def _partner_form(post: PartnerFormPost) -> None:
    from gateway.channels.sms.admin import partner_form

    partner_form(post)



def _sender(settings: GatewaySettings) -> Sender | None:
    from gateway.channels.sms.sender import SmsSender

    return SmsSender(settings.sms) if settings.sms is not None else None


CHANNEL = ChannelKind(name="sms", section=SmsSection, start=_start, configured=_configured,
                      summary=_summary, listens=True, transport=_transport,
                      partner_api=_partner_api, partner_form=_partner_form,
                      problems=explain.problems, shown=explain.shown,
                      sender=_sender)
