"""Step 1, durable receive: archive every payload of a batch (one sync), then record all
in one commit; only then may the channel acknowledge its transport."""

from __future__ import annotations

import hashlib

import structlog

from gateway.core.errors import PayloadError
from gateway.core.ids import new_id
from gateway.core.ports import ArchivePort, Incoming, Receipt, StorePort
from gateway.core.records import NewTransmission

log = structlog.get_logger("edigw.pipeline")


class PayloadTooLarge(PayloadError):
    """Refused at receive: larger than the channel's limit (nothing archived)."""

    stage = "receive"

    def __init__(self, item: Incoming, limit: int, size: int | None = None) -> None:
        self.item = item
        size = item.size if size is None else size
        super().__init__(f"{item.filename or 'payload'} is {size} bytes, over the "
                         f"{limit}-byte limit")


def receive_many(store: StorePort, archive: ArchivePort, items: list[Incoming], *,
                 max_size: int) -> list[Receipt]:
    """Archive every payload (one sync for the batch), then record all in one commit.

    The same bytes received before are recorded as a DUPLICATE of the first; a payload
    received from the same place before a crash but never acknowledged is acknowledged
    only (its receipt ``resumed``)."""
    sizes = [item.size for item in items]
    for item, size in zip(items, sizes, strict=True):
        if size > max_size:
            raise PayloadTooLarge(item, max_size, size)
    # A large payload given as a file is archived at once, by streaming (hashing it
    # needs a full read anyway); small ones are hashed here and archived together below.
    digests = [archive.put_file(item.path)[0] if item.path is not None
               else hashlib.sha256(item.data).hexdigest() for item in items]
    by_channel: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_channel.setdefault(item.channel, []).append(i)
    originals: dict[str, str] = {}
    unacked: dict[tuple[str, str], str] = {}
    for channel, idx in by_channel.items():
        found, left = store.receive_lookup(
            channel, [(items[i].channel_ref, digests[i]) for i in idx])
        originals.update(found)
        unacked.update(left)
    # The same bytes from another partner's channel (or portal account) are not a repeat
    # of that partner's file: it is received and processed on its own (identification then
    # quarantines it if it names the other partner), and nothing of the other is told.
    hinted = {originals[digests[i]] for i, item in enumerate(items)
              if item.partner_hint and digests[i] in originals}
    owners = ({tid: row.partner_id for tid, row in
               store.get_transmissions(sorted(hinted)).items()} if hinted else {})
    fresh = [i for i, item in enumerate(items) if item.path is None
             and not (item.channel_ref and (item.channel_ref, digests[i]) in unacked)]
    archive.put_many([items[i].data for i in fresh])
    receipts: list[Receipt] = []
    rows: list[NewTransmission] = []
    for i, item in enumerate(items):
        digest = digests[i]
        left_over = unacked.get((item.channel_ref, digest)) if item.channel_ref else None
        if left_over is not None:
            # Received before a crash but never acknowledged: acknowledge only.
            receipts.append(Receipt(left_over, resumed=True))
            continue
        original = originals.get(digest)
        if (original and item.partner_hint
                and owners.get(original) not in (None, item.partner_hint)):
            original = None
        tid = new_id()
        originals.setdefault(digest, tid)
        rows.append(NewTransmission(
            id=tid, channel=item.channel, channel_ref=item.channel_ref,
            filename=item.filename, size=sizes[i], sha256=digest,
            partner_id=item.partner_hint, duplicate_of=original))
        receipts.append(Receipt(tid, duplicate_of=original))
        if original:
            log.info("duplicate_received", transmission_id=tid, duplicate_of=original,
                     filename=item.filename)
    store.record_received_many(rows)
    return receipts
