"""From mapped messages to what the store keeps: documents (whole, or a price list cut in
parts under the broker's message size), failed messages as document rows, and the stage and
reason a transmission is noted with when some of its messages failed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from gateway.core.errors import MappingError
from gateway.core.ids import content_message_id
from gateway.core.records import NewDocument, NewInterchange, Note
from gateway.core.status import DocumentStatus

if TYPE_CHECKING:  # pydantic, the canonical models and the ports cost every ``edigw``
    # command that reads the store (``store.judge`` takes ``routing_key`` from here)
    from pydantic import BaseModel

    from gateway.core.canonical import PriceList, PriceListItem
    from gateway.core.ports import FailedMessage, MappedDocument

#: ``part_count`` of a part whose total is not known yet (a price list still being read):
#: replaced in place when the message is complete. Its digits are as many as any total's.
UNKNOWN_TOTAL_VALUE = 999_999_999
UNKNOWN_TOTAL = b'"part_count":%d' % UNKNOWN_TOTAL_VALUE


class _Dumps(Protocol):
    def to_json_bytes(self) -> bytes: ...


def json_of(document: BaseModel) -> bytes:
    """The JSON a mapped document is published as: every canonical model (and a document
    a worker process dumped already) has ``to_json_bytes``."""
    return cast(_Dumps, document).to_json_bytes()


def part_payloads(document: PriceList, max_bytes: int, *, first: int, total: bool
                  ) -> list[bytes]:
    """The JSON of ``document`` cut into parts of at most ``max_bytes``, numbered from
    ``first``; ``part_count`` is their number when ``total``, else ``UNKNOWN_TOTAL`` (set
    later). Each part repeats the header (number, parties, validity …) with a run of the
    items. Raises MappingError when one item alone does not fit."""
    items = list(document.items)
    unknown = UNKNOWN_TOTAL_VALUE

    def dump(run: list[PriceListItem], number: int, count: int) -> bytes:
        return document.model_copy(update={"items": run, "part_number": number,
                                           "part_count": count}).to_json_bytes()

    empty = len(dump([], unknown, unknown))
    full = len(dump(items, unknown, unknown))
    room = max_bytes - empty
    per_item = (full - empty) / max(len(items), 1)
    size = max(1, int(room * 0.95 / per_item)) if per_item else max(len(items), 1)
    runs = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
    fitted: list[list[PriceListItem]] = []
    while runs:
        run = runs.pop(0)
        if len(dump(run, unknown, unknown)) <= max_bytes:
            fitted.append(run)
        elif len(run) == 1:
            item = run[0]
            raise MappingError(
                f"item {item.line_number or item.gtin or item.item_code or '?'} alone makes a "
                f"part of {len(dump(run, unknown, unknown))} bytes, over the {max_bytes}-byte "
                "message size (broker.max_message_bytes)")
        else:
            half = len(run) // 2
            runs[:0] = [run[:half], run[half:]]
    count = len(fitted) if total else unknown
    return [dump(run, n, count) for n, run in enumerate(fitted, first)]


def routing_key(doc_type: str, partner_id: str, *, test: bool = False) -> str:
    """The routing key a document is published with: ``<doctype>.<partner>``, or
    ``test.<doctype>.<partner>`` for a partner in test (bound to the test queue only)."""
    return f"{'test.' if test else ''}{doc_type}.{partner_id}"


def new_document(m: MappedDocument, partner_id: str, payload: bytes, *,
                 part: int | None = None, test: bool = False) -> NewDocument:
    """A mapped document (or one part of it) as the store keeps it, with the digest of its
    content. A whole document's message id combines the reader's (reference-based) id with
    that digest, here and inside its JSON: a corrected document sent under the same
    references is not dropped by a consumer as a repeat. A part's message id (the AMQP
    message id a consumer drops repeats by) is the list's with ``-p<n>``; the canonical
    ``message_id`` inside stays the list's, the same in every part. ``test``: its partner
    is in test (``routing_key``)."""
    from gateway.core.canonical import content_digest

    sha = content_digest(payload)
    if part is None:
        mid = content_message_id(m.message_id, sha)
        payload = payload.replace(b'"message_id":"%s"' % m.message_id.encode(),
                                  b'"message_id":"%s"' % mid.encode(), 1)
    else:
        mid = f"{m.message_id}-p{part}"
    return NewDocument(
        doc_type=m.doc_type, schema_version=m.schema_version,
        business_number=m.business_number, interchange_ref=m.interchange_ref,
        message_ref=m.message_ref, message_id=mid, payload=payload,
        routing_key=routing_key(m.doc_type, partner_id, test=test), content_sha=sha, part=part)


def oversized(m: MappedDocument, exc: MappingError) -> FailedMessage:
    """A mapped document that cannot be published (an item over the message size)."""
    from gateway.core.ports import FailedMessage  # the ports: not for every store reader

    description = f"{m.doc_type} {m.business_number or m.message_id}"
    return FailedMessage(status=DocumentStatus.FAILED, stage="map",
                         reason=f"{description}: {exc}", message_id=m.message_id,
                         description=description, doc_type=m.doc_type,
                         business_number=m.business_number,
                         interchange_ref=m.interchange_ref, message_ref=m.message_ref)


def failed_document(m: FailedMessage, partner_id: str) -> NewDocument:
    """A message that failed, stored as a document row without outbox row."""
    error = {"status": m.status, "stage": m.stage, "reason": m.reason, "code": m.code,
             "message": m.description}
    return NewDocument(
        doc_type=m.doc_type or "unknown", schema_version="-", business_number=m.business_number,
        interchange_ref=m.interchange_ref, message_ref=m.message_ref, message_id=m.message_id,
        payload=json.dumps(error, ensure_ascii=False).encode("utf-8"),
        routing_key=f"{m.doc_type or 'unknown'}.{partner_id}", status=m.status, stage=m.stage,
        reason=m.reason)


def warnings_event(warnings: list[str], count: int) -> tuple[str, str]:
    """The timeline line of a transmission's warnings (the first 20, and how many more)."""
    shown = warnings[:20]
    more = count - len(shown)
    return ("warnings", "; ".join(shown) + (f" … and {more} more" if more > 0 else ""))


def failure_note(failures: list[FailedMessage], total: int) -> Note:
    """Stage and reason of a transmission some (or all) of whose messages failed."""
    first = failures[0]
    bad = sum(1 for f in failures if f.status == DocumentStatus.FAILED)
    stage, reason = note(first.stage if bad else "unsupported", first.reason, bad,
                         len(failures) - bad, total)
    return Note(stage, reason, failed=len(failures) == total)


def note(stage: str, first_reason: str, bad: int, unsupported: int,
         total: int) -> tuple[str, str]:
    """Stage and reason of a transmission whose messages failed: ``bad`` failed and
    ``unsupported`` unsupported of ``total``, the first failure's stage and reason."""
    parts = []
    if bad:
        parts.append(f"{bad} of {total} message(s) failed")
    if unsupported:
        parts.append(f"{unsupported} of {total} message(s) unsupported")
    reason = first_reason if bad + unsupported == 1 and total == 1 else \
        f"{' and '.join(parts)}; first: {first_reason}"
    return stage, reason


def nothing_read(rejected: list[NewInterchange], summary: Callable[[], str]
                 ) -> tuple[str, str]:
    """Stage and reason of a payload that gave no document at all (``summary``: the
    payload's, asked for only when no interchange was rejected)."""
    if rejected:
        return "envelope", "; ".join(
            f"interchange {i.control_ref or '?'} rejected: {i.reason}" for i in rejected[:5])
    return "map", f"no document in the payload ({summary()})"


def rejected_note(rejected: list[NewInterchange]) -> Note:
    """The note of a transmission some of whose interchanges were rejected whole."""
    return Note("envelope", f"{len(rejected)} interchange(s) rejected; first: "
                f"{rejected[0].control_ref or '?'}: {rejected[0].reason}")


def describe(exc: BaseException) -> str:
    """An exception named for an operator: its type, its message (cut), and where in the
    gateway's code it was raised."""
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + " …"
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "/gateway/" in name:
            where = f" (in {name[name.rindex('/gateway/') + 1:]}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"internal error: {type(exc).__name__}: {text}{where}"
