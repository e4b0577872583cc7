"""The SMS reader as the pipeline sees it (``gateway.core.ports.Reader``).

An SMS arrives archived in its envelope (``gateway.formats.sms.envelope``). Its sender is the
phone number (``Sender(e164, "phone")``), so the pipeline finds the partner by
``identifiers.phone``; an unknown number is quarantined. The text becomes one canonical order,
or, when any line is not understood, one failed message naming the line(s): an SMS order is
never passed on in part (see ``gateway.formats.sms.syntax``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.core.canonical import ORDER_SCHEMA, Order, OrderLine, Parties, Party, Source
from gateway.core.errors import PayloadError, Position
from gateway.core.ids import message_id
from gateway.core.ports import FailedMessage, InterchangeSeen, MappedDocument, Reply, Sender
from gateway.core.status import DocumentStatus
from gateway.formats.sms.envelope import MAGIC, SmsEnvelope, read_envelope, sms_order_number
from gateway.formats.sms.syntax import SmsOrder, parse_sms_order

if TYPE_CHECKING:
    from gateway.config import Partner

#: Most characters of an SMS order's text (WhatsApp's limit; an SMS concatenates to 1,600).
MAX_TEXT = 65_536
#: What the canonical order's ``source.mapping`` names: the syntax is built in, not a file.
MAPPING = "sms-order-syntax"


@dataclass(slots=True)
class SmsPayload:
    """One SMS order, read; mapped to a canonical order once the partner is known."""

    envelope: SmsEnvelope
    order: SmsOrder
    format: str = "sms"
    standard: str | None = "SMS"
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def order_number(self) -> str:
        return self.order.reference or sms_order_number(self.envelope.provider,
                                                        self.envelope.message_id)

    def summary(self) -> str:
        e, o = self.envelope, self.order
        ref = f", reference {o.reference}" if o.reference else ""
        bad = f", {len(o.errors)} line(s) not understood" if o.errors else ""
        return f"SMS from {e.sender} via {e.provider}, {len(o.items)} item(s){ref}{bad}"

    def control_refs(self) -> list[str]:
        return []  # duplicates are caught by provider message id at the webhook

    def interchanges_seen(self) -> list[InterchangeSeen]:
        return []

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        return []  # the webhook answered in-band

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None
                  ) -> list[MappedDocument | FailedMessage]:
        e = self.envelope
        # Provider and provider message id identify the SMS: a repeat or a reprocess gives
        # the same id, so the ERP never sees a second order for one message.
        mid = message_id(partner.id, "order", e.provider, e.message_id)
        description = f"SMS order {e.channel_ref}"
        if not self.order.ok:
            reason = "; ".join(str(err) for err in self.order.errors)
            return [FailedMessage(
                status=DocumentStatus.FAILED, stage="parse",
                reason=f"{description}: not ordered, {reason}", message_id=mid,
                description=description, doc_type="order",
                business_number=self.order_number, message_ref=e.channel_ref)]
        order = Order(
            message_id=mid, partner=partner.id, order_number=self.order_number,
            order_type="220", function="original", issue_date=e.received.date(),
            parties=Parties(buyer=Party(gln=partner.identifiers.gln[0]
                                        if partner.identifiers.gln else None,
                                        name=partner.name, phone=e.sender)),
            lines=[OrderLine(line_number=str(i), item_code=item.code,
                             item_code_type="SRV" if item.gtin else "SA", gtin=item.gtin,
                             supplier_article=item.article, quantity=item.quantity,
                             unit=item.unit)
                   for i, item in enumerate(self.order.items, start=1)],
            source=Source(format="sms", standard="SMS", version="1", mapping=MAPPING,
                          sender_id=e.sender, sender_qualifier="phone",
                          recipient_id=e.recipient, message_ref=e.channel_ref,
                          filename=filename, transmission_id=transmission_id))
        return [MappedDocument(doc_type="order", document=order, message_id=mid,
                               business_number=order.order_number, interchange_ref=None,
                               message_ref=e.channel_ref, schema_version=ORDER_SCHEMA)]


class SmsReader:
    """Reads SMS orders archived by the SMS webhooks (``Edigw-SMS: 1`` envelopes).

    Its ``sniff`` is exact (the envelope's first line), so it may stand anywhere before the
    CSV reader, which would otherwise claim the text as delimited.
    """

    format = "sms"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def parse(self, data: bytes, *, filename: str | None) -> SmsPayload:
        envelope = read_envelope(data)
        if len(envelope.text) > MAX_TEXT:
            # Time and memory grow with the lines (about 90 bytes of objects a character):
            # a text no phone sends is refused before it is read.
            raise PayloadError(
                f"the SMS text has {len(envelope.text)} characters: an SMS order holds at "
                f"most {MAX_TEXT} (the longest a messaging service delivers)",
                position=Position(line=1), stage="parse")
        return SmsPayload(envelope=envelope, order=parse_sms_order(envelope.text),
                          senders=[Sender(id=envelope.sender, qualifier="phone")])
