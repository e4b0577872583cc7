"""Outbound rows for the senders' tests: a document the ERP sent, rendered and PENDING in a
real store, its payload in the archive, as ``record_rendered`` commits it."""

from __future__ import annotations

import uuid

from gateway.core.records import NewOutboundDocument
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.outbound import Sealed
from gateway.store.records import OutboundRow


def pending_row(store: Store, archive: Archive, *, partner_id: str, channel: str,
                data: bytes, filename: str = "ordrsp-4711.edi",
                kind: str = "order-response", number: str = "4711") -> OutboundRow:
    """An outbound document ``kind`` for ``partner_id`` PENDING on ``channel``."""
    sha = archive.put(data)
    message_id = uuid.uuid4().hex
    tid = store.record_outbound_received(channel="erp", channel_ref=message_id,
                                         filename=None, size=len(data), sha256=sha,
                                         partner_id=partner_id, detail="from the test")
    document = NewOutboundDocument(schema_version="1.0", business_number=number,
                                   message_id=message_id, payload=b"{}")
    return store.record_rendered(
        tid, partner_id=partner_id, channel=channel, kind=kind, document=document,
        mapping="test", syntax="edifact", uses_control_ref=False,
        seal=lambda _ref: Sealed(sha256=sha, size=len(data), filename=filename))
