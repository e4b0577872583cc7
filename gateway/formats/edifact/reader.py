"""The EDIFACT reader as the pipeline sees it (``gateway.core.ports.Reader``).

Messages are independent: a message whose envelope, structure or content is wrong becomes a
``FailedMessage`` and the others of its interchange go on, unless the partner's policy is
``reject-interchange``. A message type edigw has no mapping for ends UNSUPPORTED, not as a
crash. What was rejected is remembered per message so that a CONTRL can answer it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from gateway.core import clock
from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.deadline import check
from gateway.core.errors import EdifactSyntaxError, MappingError, PayloadError
from gateway.core.ids import message_id
from gateway.core.ports import FailedMessage, InterchangeSeen, MappedDocument, Reply, Sender
from gateway.core.status import DocumentStatus
from gateway.formats.edifact.envelope import read_interchanges
from gateway.formats.edifact.model import Interchange, Message
from gateway.formats.edifact.receipts import RECEIPT_TYPES, read_receipt
from gateway.formats.edifact.severity import sort_errors
from gateway.formats.mapping import Mapping, MappingSet, map_message

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway.config import Partner
    from gateway.formats.edifact.stream import StreamedPayload

#: Canonical document type of each EDIFACT message type the gateway maps.
DOCUMENT_TYPES = {"ORDERS": "order", "PRICAT": "price-list", "INVOIC": "invoice"}

# UNA, UNB or a bare UNH, after an optional UTF-8 BOM and white space.
_SNIFF = re.compile(rb"^(\xef\xbb\xbf)?\s*(UNA.{6}|UNB.|UNH.)", re.DOTALL)


class Validate(Protocol):
    """The structure check of one message (``structure.validate_message``)."""

    def __call__(self, message: Message, *, decimal_mark: str = ".",
                 subset: str | None = None, repetition: str | None = None
                 ) -> list[EdifactSyntaxError]:
        ...


#: What ``EdifactPayload.documents`` may be given for messages judged elsewhere
#: (``gateway.formats.edifact.parallel``): by message index, (mapped document, validation warnings),
#: or None to judge the message here.
Outsourced = Callable[[int], "tuple[MappedDocument, list[str]] | None"]


def validator() -> Validate | None:
    """The structure check (``gateway.formats.edifact.structure``), loaded on first use;
    the reader, the streamed reader and the worker processes share it."""
    try:
        from gateway.formats.edifact.structure import validate_message
    except ImportError:  # pragma: no cover - the module ships with edigw
        return None
    return validate_message


@dataclass(slots=True)
class _Verdict:
    """What became of one message: kept for the CONTRL and the interchange record."""

    message: Message
    error: PayloadError | None


@dataclass(slots=True)
class EdifactPayload:
    """Interchanges read from one payload, mapped once the partner is known."""

    interchanges: list[Interchange]
    mappings: MappingSet
    format: str = "edifact"
    standard: str | None = None
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Per interchange (same order): the error that rejected it whole, and each message's
    #: verdict. Filled by ``documents``.
    verdicts: list[tuple[PayloadError | None, list[_Verdict]]] = field(default_factory=list)

    def summary(self) -> str:
        kinds = Counter(m.describe() for i in self.interchanges for m in i.messages)
        refs = ", ".join(i.control_ref or "-" for i in self.interchanges[:5])
        return (f"EDIFACT, {len(self.interchanges)} interchange(s) ({refs}"
                f"{' …' if len(self.interchanges) > 5 else ''}), "
                + ", ".join(f"{n} × {k}" for k, n in kinds.items()))

    def control_refs(self) -> list[str]:
        return [i.control_ref for i in self.interchanges if i.control_ref]

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None,
                  outsourced: Outsourced | None = None) -> list[MappedDocument | FailedMessage]:
        """Every message judged, interchange by interchange. ``outsourced(i)`` may give the
        result of message ``i`` (counted across interchanges) judged elsewhere, as (mapped
        document, validation warnings), or None to judge it here (``gateway.formats.edifact.parallel``)."""
        policy = partner.edifact
        known = dict(known_refs or {})
        validate = validator()
        out: list[MappedDocument | FailedMessage] = []
        self.verdicts = []
        index = 0
        for interchange in self.interchanges:
            rejected = interchange.error or self._duplicate(interchange, known, policy.duplicate_interchange)
            if interchange.control_ref and interchange.control_ref not in known:
                known[interchange.control_ref] = f"earlier in this file ({filename or 'payload'})"
            results: list[MappedDocument | FailedMessage] = []
            verdicts: list[_Verdict] = []
            first_failure: _Verdict | None = None
            result: MappedDocument | FailedMessage
            error: PayloadError | None
            for message in interchange.messages:
                check()  # the per-transmission time limit, once a message
                got = outsourced(index) if outsourced is not None and rejected is None else None
                index += 1
                if got is not None:
                    result, error = got[0], None
                    self.warnings += got[1]
                else:
                    result, error = self.judge(partner, interchange, message, rejected=rejected,
                                               validate=validate, transmission_id=transmission_id,
                                               filename=filename)
                results.append(result)
                verdicts.append(_Verdict(message, error))
                if error is not None and first_failure is None:
                    first_failure = verdicts[-1]
            if (rejected is None and first_failure is not None and len(verdicts) > 1
                    and policy.on_message_error == "reject-interchange"):
                cause = first_failure.error
                assert cause is not None
                rejected = EdifactSyntaxError(
                    f"interchange {interchange.control_ref or '-'} rejected whole (partner "
                    f"policy reject-interchange) because message {first_failure.message.ref} "
                    f"failed: {cause.reason}", position=cause.position, code=cause.code)
                results = [r if isinstance(r, FailedMessage) else
                           self._failed(partner, interchange, v.message, rejected,
                                        DocumentStatus.FAILED)
                           for r, v in zip(results, verdicts, strict=True)]
                verdicts = [v if v.error is not None else _Verdict(v.message, rejected)
                            for v in verdicts]
            out += results
            self.verdicts.append((rejected, verdicts))
        return out

    def judge(self, partner: Partner, interchange: Interchange, message: Message, *,
              rejected: PayloadError | None, validate: Validate | None,
              transmission_id: str | None,
              filename: str | None
              ) -> tuple[MappedDocument | FailedMessage, PayloadError | None]:
        """One message's fate, the same in memory and streamed (``stream.py``): rejected
        with its interchange, failed by its envelope or structure, unsupported, failed by its
        mapping, or mapped. Returns the result and the error a CONTRL reports (None when
        the message is accepted)."""
        policy = partner.edifact
        error = rejected or message.error
        mapping, unsupported = self._mapping(partner, message)
        receipt = (read_receipt(message) if error is None and mapping is None
                   and message.type in RECEIPT_TYPES else None)
        if receipt is not None:
            # A partner's receipt naming what it answers: the pipeline records it on what
            # we sent (read leniently: not checked against its directory); one naming
            # nothing of ours stays UNSUPPORTED, as any other type.
            assert unsupported is not None
            failed = self._failed(partner, interchange, message, unsupported,
                                  DocumentStatus.UNSUPPORTED)
            return replace(failed, receipt=receipt), None
        if error is None and validate is not None and policy.validation != "off":
            errors, warned = sort_errors(
                validate(message, decimal_mark=interchange.decimal_mark,
                         repetition=interchange.repetition), message,
                mapping, policy.validation)
            self.warnings += warned
            if errors:
                error = _first_of(errors)
                error.stage = "validate"
        if error is not None:
            return self._failed(partner, interchange, message, error, DocumentStatus.FAILED), error
        if mapping is None:
            assert unsupported is not None
            return self._failed(partner, interchange, message, unsupported,
                                DocumentStatus.UNSUPPORTED), None
        return self._map(partner, interchange, message, mapping, transmission_id, filename)

    def _duplicate(self, interchange: Interchange, known: dict[str, str],
                   policy: str) -> EdifactSyntaxError | None:
        ref = interchange.control_ref
        if policy == "accept" or not ref or ref not in known:
            return None
        text = (f"interchange reference {ref} (UNB 0020) from sender {interchange.sender_id} "
                f"was already received {known[ref]}")
        if policy == "reject":
            first = interchange.messages[0] if interchange.messages else None
            position = None
            if first is not None:
                position = first.source.position(None, element="UNB/0020")
            return EdifactSyntaxError(f"{text}; rejected as a duplicate (partner policy)",
                                      code="26", position=position)
        self.warnings.append(f"{text}; processed again (partner policy: warn)")
        return None

    def _mapping(self, partner: Partner, message: Message
                 ) -> tuple[Mapping | None, MappingError | None]:
        """The mapping for ``message``, or None and why it is unsupported."""
        doc_type = DOCUMENT_TYPES.get(message.type)
        if doc_type is None:
            return None, MappingError(
                f"unsupported message type {message.describe()}: edigw maps "
                f"{', '.join(sorted(DOCUMENT_TYPES))}",
                position=message.source.position(message.segments[0], message_ref=message.ref))
        try:
            return self.mappings.find(message, mapping_id=partner.mapping_for(doc_type, "edifact")), None
        except MappingError as exc:
            return None, exc

    def _map(self, partner: Partner, interchange: Interchange, message: Message,
             mapping: Mapping,
             transmission_id: str | None, filename: str | None
             ) -> tuple[MappedDocument | FailedMessage, PayloadError | None]:
        try:
            mapped = map_message(mapping, interchange, message, partner_id=partner.id,
                                 filename=filename, transmission_id=transmission_id)
        except (MappingError, EdifactSyntaxError) as exc:
            return self._failed(partner, interchange, message, exc, DocumentStatus.FAILED), exc
        doc = mapped.document
        # A set: an interchange may hold thousands of warnings (a package each), and the
        # document repeats them all; a list scan per warning was quadratic per message.
        known = set(interchange.warnings)
        schema_version = CANONICAL_MODELS[mapped.document_type].model_fields["schema_"].default
        return MappedDocument(
            doc_type=mapped.document_type, document=doc,
            message_id=doc.message_id,  # type: ignore[attr-defined]
            business_number=doc.business_number,  # type: ignore[attr-defined]
            interchange_ref=interchange.control_ref, message_ref=message.ref,
            schema_version=schema_version,
            warnings=[w for w in mapped.warnings if w not in known]), None

    @staticmethod
    def _failed(partner: Partner, interchange: Interchange, message: Message,
                error: PayloadError, status: str) -> FailedMessage:
        doc_type = DOCUMENT_TYPES.get(message.type)
        number = _business_number(message)
        description = f"{message.describe()} message {message.ref}"
        return FailedMessage(
            status=status, stage=error.stage if status == DocumentStatus.FAILED else "map",
            reason=f"{description}: {error}", description=description,
            message_id=message_id(partner.id, doc_type or message.type.lower(),
                                  interchange.sender_id, interchange.control_ref, message.ref,
                                  number),
            doc_type=doc_type or message.type.lower(), business_number=number,
            interchange_ref=interchange.control_ref, message_ref=message.ref,
            code=error.code)

    def interchanges_seen(self) -> list[InterchangeSeen]:
        return [seen for interchange, (rejected, _verdicts) in zip(
                    self.interchanges, self.verdicts, strict=False)
                if (seen := interchange_seen(interchange, len(interchange.messages), rejected))]

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        """A CONTRL per interchange, as the partner's ``edifact.contrl`` policy asks."""
        wish = partner.edifact.contrl
        if wish == "never":
            return []
        out: list[Reply] = []
        for n, (interchange, (rejected, verdicts)) in enumerate(
                zip(self.interchanges, self.verdicts, strict=False), 1):
            if not interchange.control_ref or interchange.sender_id is None:
                continue  # bare messages: nobody to address a CONTRL to
            if interchange.messages and all(m.type == "CONTRL" for m in interchange.messages):
                continue  # a CONTRL is never acknowledged by a CONTRL
            requested = interchange.ack_requested
            anything_rejected = rejected is not None or any(v.error for v in verdicts)
            if not (wish == "always" or requested
                    or (wish == "errors" and anything_rejected)):
                continue
            out.append(_contrl_reply(partner, transmission_id, n, interchange, rejected,
                                     verdicts))
        return out


def interchange_seen(interchange: Interchange, messages: int,
                     rejected: PayloadError | None) -> InterchangeSeen | None:
    """The record of one interchange for the store (None for bare messages: no UNB)."""
    if not interchange.control_ref:
        return None
    prepared = ":".join(p for p in (interchange.prepared_date,
                                    interchange.prepared_time) if p) or None
    return InterchangeSeen(
        control_ref=interchange.control_ref, sender_id=interchange.sender_id,
        sender_qualifier=interchange.sender_qualifier, recipient_id=interchange.recipient_id,
        prepared=prepared, message_count=messages,
        rejected=str(rejected) if rejected else None)


def _contrl_reply(partner: Partner, transmission_id: str, n: int, interchange: Interchange,
                  rejected: PayloadError | None, verdicts: list[_Verdict]) -> Reply:
    from gateway.formats.edifact.contrl import MessageReport, build_contrl

    our_ref = str(int(hashlib.sha256(f"{transmission_id}:{n}".encode()).hexdigest(), 16)
                  % 10**14).zfill(14)
    if rejected is not None and interchange.error is None:
        interchange.error = rejected if isinstance(rejected, EdifactSyntaxError) else \
            EdifactSyntaxError(str(rejected), code=rejected.code)
    data = build_contrl(interchange, [MessageReport(v.message, v.error) for v in verdicts],
                        control_ref=our_ref, prepared=clock.now(),
                        report_accepted=partner.edifact.contrl_accepted_messages)
    accepted = sum(1 for v in verdicts if v.error is None)
    action = ("interchange rejected" if rejected is not None else
              f"{accepted} of {len(verdicts)} message(s) accepted")
    safe_ref = re.sub(r"[^A-Za-z0-9_.-]", "_", interchange.control_ref or "x")
    return Reply(kind="contrl", filename=f"CONTRL_{partner.id}_{safe_ref}_{our_ref}.edi",
                 data=data, detail=f"CONTRL {our_ref} for interchange "
                 f"{interchange.control_ref}: {action}")


def _first_of(errors: list[EdifactSyntaxError]) -> EdifactSyntaxError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    more = "; ".join(e.reason for e in errors[1:4])
    return EdifactSyntaxError(
        f"{first.reason} (and {len(errors) - 1} more: {more}{' …' if len(errors) > 4 else ''})",
        position=first.position, code=first.code)


def _business_number(message: Message) -> str | None:
    """The document number as sent (BGM 1004: element 2, component 1 in every directory)."""
    for segment in message.segments[1:4]:
        if segment.tag == "BGM":
            return segment.get(1, 0) or None
    return None


class EdifactReader:
    """Reads UN/EDIFACT and EANCOM interchanges."""

    format = "edifact"

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings

    def disabled_mappings(self) -> dict[str, str]:
        """The mappings left out (a file that did not load): id -> why; a partner naming
        one is disabled (``core.lifecycle.disabled_by``)."""
        return self.mappings.disabled()

    def sniff(self, head: bytes) -> bool:
        # Junk before UNB still counts as EDIFACT, so that the reader names the junk's
        # position rather than the file being called "not a recognised format".
        return _SNIFF.match(head) is not None or b"UNB+" in head or b"UNH+" in head

    def stream(self, blocks: Iterable[bytes], *, filename: str | None,
               window: int | None = None, slice_segments: int | None = None
               ) -> StreamedPayload:
        """A large payload read block by block (``gateway.formats.edifact.stream``)."""
        from gateway.formats.edifact import stream

        return stream.StreamedPayload(
            blocks, mappings=self.mappings, filename=filename,
            window=window or stream.WINDOW, slice_segments=slice_segments or stream.SLICE_SEGMENTS)

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
