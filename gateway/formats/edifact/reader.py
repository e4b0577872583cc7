"""The EDIFACT reader as the pipeline sees it (``gateway.core.ports.Reader``)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.ports import MappedDocument, Sender
from gateway.formats.edifact.envelope import read_interchanges
from gateway.formats.edifact.model import Interchange
from gateway.formats.mapping import MappingSet, map_message

if TYPE_CHECKING:
    from gateway.config import Partner

#: Canonical document type of each EDIFACT message type the gateway maps.
DOCUMENT_TYPES = {"ORDERS": "order", "PRICAT": "price-list", "INVOIC": "invoice"}

# UNA, UNB or a bare UNH, after an optional UTF-8 BOM and white space.
_SNIFF = re.compile(rb"^(\xef\xbb\xbf)?\s*(UNA.{6}|UNB.|UNH.)", re.DOTALL)


@dataclass(slots=True)
class EdifactPayload:
    """Interchanges read from one payload, mapped once the partner is known."""

    interchanges: list[Interchange]
    mappings: MappingSet
    format: str = "edifact"
    standard: str | None = None
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = Counter(m.describe() for i in self.interchanges for m in i.messages)
        refs = ", ".join(i.control_ref or "-" for i in self.interchanges[:5])
        return (f"EDIFACT, {len(self.interchanges)} interchange(s) ({refs}"
                f"{' …' if len(self.interchanges) > 5 else ''}), "
                + ", ".join(f"{n} × {k}" for k, n in kinds.items()))

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None) -> list[MappedDocument]:
        out: list[MappedDocument] = []
        for interchange in self.interchanges:
            for message in interchange.messages:
                doc_type = DOCUMENT_TYPES.get(message.type)
                mapping_id = partner.mapping_for(doc_type) if doc_type else None
                mapping = self.mappings.find(message, mapping_id=mapping_id)
                mapped = map_message(mapping, interchange, message, partner_id=partner.id,
                                     filename=filename, transmission_id=transmission_id)
                doc = mapped.document
                schema_version = CANONICAL_MODELS[mapped.document_type].model_fields["schema_"].default
                out.append(MappedDocument(
                    doc_type=mapped.document_type, document=doc,
                    message_id=doc.message_id,  # type: ignore[attr-defined]
                    business_number=doc.business_number,  # type: ignore[attr-defined]
                    interchange_ref=interchange.control_ref, message_ref=message.ref,
                    schema_version=schema_version,
                    warnings=[w for w in mapped.warnings if w not in interchange.warnings]))
        return out


class EdifactReader:
    """Reads UN/EDIFACT and EANCOM interchanges."""

    format = "edifact"

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings

    def sniff(self, head: bytes) -> bool:
        # Junk before UNB still counts as EDIFACT, so that the reader names the junk's
        # position rather than the file being called "not a recognised format".
        return _SNIFF.match(head) is not None or b"UNB+" in head or b"UNH+" in head

    def parse(self, data: bytes, *, filename: str | None) -> EdifactPayload:
        interchanges = read_interchanges(data, filename=filename)
        senders = []
        for i in interchanges:
            s = Sender(i.sender_id, i.sender_qualifier)
            if s not in senders:
                senders.append(s)
        eancom = any(m.association and m.association.startswith("EAN")
                     for i in interchanges for m in i.messages)
        return EdifactPayload(
            interchanges=interchanges, mappings=self.mappings, senders=senders,
            standard="EANCOM" if eancom else "UN/EDIFACT",
            warnings=[w for i in interchanges for w in i.warnings])
