"""Mail channel: IMAP mailboxes partners mail documents to (``channel``), and the replies
sent back through the gateway's SMTP server (``replies``, ``mailer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.channels.email.settings import EmailSection
from gateway.channels.kind import ChannelContext, ChannelKind, ChannelRun, ConfiguredChannel

if TYPE_CHECKING:
    from gateway.channels.outbound import Sender
    from gateway.config import GatewaySettings, PartnerDirectory


def _start(ctx: ChannelContext) -> ChannelRun:
    from gateway.channels.email.channel import start

    return start(ctx)


def _configured(settings: GatewaySettings, partners: PartnerDirectory
                ) -> list[ConfiguredChannel]:
    found = [ConfiguredChannel(f"imap:{b.name}", "imap", None,
                               f"{b.user}@{b.host}:{b.port}/{b.folder}")
             for b in settings.mailboxes]
    if settings.smtp is not None:
        found.append(ConfiguredChannel("smtp", "smtp", None,
                                       f"{settings.smtp.host}:{settings.smtp.port}"))
    return found


def _summary(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    lines = [f"mailbox    {m.name}: {m.user}@{m.host}:{m.port}/{m.folder} -> "
             f"{m.processed_folder}" for m in settings.mailboxes]
    if settings.smtp is not None:
        s = settings.smtp
        lines.append(f"smtp       {s.host}:{s.port} from {s.sender}")
    return lines


def _problems(settings: GatewaySettings, partners: PartnerDirectory) -> list[str]:
    """Acknowledgements by mail need the SMTP server to send them."""
    if settings.smtp is not None:
        return []
    return [f"{p.source}: email.acknowledgements needs [smtp] in {settings.source}"
            for p in partners if p.email.acknowledgements]



def _sender(settings: GatewaySettings) -> Sender | None:
    from gateway.channels.email.sender import EmailSender

    return EmailSender(settings.smtp) if settings.smtp is not None else None


CHANNEL = ChannelKind(name="email", section=EmailSection, start=_start,
                      configured=_configured, summary=_summary, problems=_problems,
                      sender=_sender)
