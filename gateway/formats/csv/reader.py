"""The CSV reader as the pipeline sees it (``gateway.core.ports.Reader``).

A CSV file does not say what it is nor who sent it, so three things decide, in order:

1. a mapping's ``match`` (its header columns, file name pattern or first line) recognises
   the file before the partner is known; if that mapping names a ``sender`` field (the
   buyer's GLN column of an order), the file's ``senders`` carry it with its scheme
   (``Sender(id, "gln")``) and the pipeline finds the partner by that identifier;
2. otherwise the channel names the partner (a partner-specific inbox);
3. the partner's profile then names the mapping (``[[documents]] format = "csv"``); it wins
   over ``match``, so an overlay for one partner is used for that partner's files.

When nothing names the partner, ``unidentified`` says so in CSV terms. Each group of rows
(an order, a price list) is mapped on its own: a bad one comes back as a ``FailedMessage``
and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.errors import FormatNotRecognised, MappingError, PayloadError
from gateway.core.ports import FailedMessage, InterchangeSeen, MappedDocument, Reply, Sender
from gateway.core.status import DocumentStatus
from gateway.formats.csv.apply import FileMapper, GroupResult, Table, decode_for, read_table
from gateway.formats.csv.dialect import Decoded, looks_delimited
from gateway.formats.csv.mapping import CsvMapping

if TYPE_CHECKING:
    from gateway.config import Partner
    from gateway.formats.mapping import MappingSet

#: Records read to recognise a file by its header or first line.
_HEAD_ROWS = 2


@dataclass(slots=True)
class CsvPayload:
    """A delimited file, recognised (or not) by a mapping's match; mapped once the partner
    is known."""

    data: bytes
    filename: str | None
    mappings: list[CsvMapping]
    format: str = "csv"
    standard: str | None = "CSV"
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The mappings whose ``match`` fits the file (one of them is used when the partner's
    #: profile names none).
    matched: list[CsvMapping] = field(default_factory=list)
    #: Why the partner cannot be told from the file (for the pipeline's UnknownPartner).
    unidentified: str = ""
    #: What was read, by mapping id: decoding and splitting happen once per mapping.
    _tables: dict[str, Table] = field(default_factory=dict)
    _decoded: dict[tuple[str, str], Decoded | PayloadError] = field(default_factory=dict)

    # -- recognising ---------------------------------------------------------------------------

    def recognise(self) -> None:
        """Find the mappings whose match fits; read the senders of the one that does."""
        for mapping in self.mappings:
            if not mapping.auto_match or mapping.match is None:
                continue
            try:
                head = read_table(mapping, self._decode(mapping), limit=_HEAD_ROWS)
            except PayloadError:
                continue  # not this mapping's encoding or layout
            if mapping.match.fits(head.header, head.first_line, self.filename):
                self.matched.append(mapping)
        advice = "name it by a partner-specific inbox or an identifier column"
        if len(self.matched) != 1:
            fits = (f"several CSV mappings match it ({', '.join(m.id for m in self.matched)})"
                    if self.matched else "no CSV mapping's match fits its header")
            self.unidentified = f"CSV file: partner unknown, {advice} ({fits})"
            return
        mapping = self.matched[0]
        self.standard = mapping.standard
        if not mapping.senders:
            self.unidentified = (f"CSV file: partner unknown, {advice} (mapping {mapping.id} "
                                 "recognises the file but names no sender column)")
            return
        mapper = FileMapper(mapping, self.table(mapping), filename=self.filename)
        self.senders = mapper.senders()
        if not self.senders:
            self.unidentified = (f"CSV file: partner unknown, {advice} (the sender column of "
                                 f"mapping {mapping.id} is empty)")

    def _decode(self, mapping: CsvMapping) -> Decoded:
        key = (mapping.encoding, mapping.fallback_encoding)
        if key not in self._decoded:
            try:
                self._decoded[key] = decode_for(mapping, self.data)
            except PayloadError as exc:
                self._decoded[key] = exc
        found = self._decoded[key]
        if isinstance(found, PayloadError):
            raise found
        return found

    def table(self, mapping: CsvMapping) -> Table:
        """The file as ``mapping`` reads it (read once per mapping)."""
        if mapping.id not in self._tables:
            self._tables[mapping.id] = read_table(mapping, self._decode(mapping))
        return self._tables[mapping.id]

    # -- the ParsedPayload protocol ---------------------------------------------------------

    def summary(self) -> str:
        lines = self.data.count(b"\n") + 1
        size = f"{lines} line(s)"
        if len(self.matched) == 1:
            return f"CSV, {size}, recognised by mapping {self.matched[0].id}"
        if self.matched:
            return f"CSV, {size}, matched by {', '.join(m.id for m in self.matched)}"
        return f"CSV, {size}, not recognised by any mapping's match"

    def control_refs(self) -> list[str]:
        return []  # CSV has no interchange control reference

    def interchanges_seen(self) -> list[InterchangeSeen]:
        return []  # no interchanges either

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        return []  # nothing answers a CSV file (yet)

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None
                  ) -> list[MappedDocument | FailedMessage]:
        mapping = self.choose(partner)
        table = self.table(mapping)
        mapper = FileMapper(mapping, table, filename=filename or self.filename)
        results = mapper.map(partner_id=partner.id, transmission_id=transmission_id)
        self.standard = mapping.standard
        self.warnings += [w for w in mapper.warnings if w not in self.warnings]
        schema = CANONICAL_MODELS[mapping.document].model_fields["schema_"].default
        return [self._result(r, mapping, schema) for r in results]

    def choose(self, partner: Partner) -> CsvMapping:
        """The mapping for this file: the partner's CSV mapping, else the one match found."""
        by_id = {m.id: m for m in self.mappings}
        named = [(d.type, d.mapping) for d in partner.documents
                 if d.format == "csv" and d.mapping]
        candidates: list[CsvMapping] = []
        for doc_type, ident in named:
            mapping = by_id.get(ident)
            if mapping is None:
                raise MappingError(f"partner {partner.id} names CSV mapping {ident!r}, which "
                                   f"does not exist (CSV mappings: "
                                   f"{', '.join(sorted(by_id)) or 'none'})")
            if mapping.document != doc_type:
                raise MappingError(f"partner {partner.id} names mapping {ident!r} for "
                                   f"{doc_type}, but it makes a {mapping.document}")
            candidates.append(mapping)
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            fitting = [m for m in candidates if m in self.matched] or \
                [m for m in candidates if self._fits_columns(m)]
            if len(fitting) == 1:
                return fitting[0]
            raise MappingError(
                f"partner {partner.id} names several CSV mappings "
                f"({', '.join(m.id for m in candidates)}) and the file fits "
                f"{'none' if not fitting else 'several'} of them; give each a match")
        if len(self.matched) == 1:
            return self.matched[0]
        if self.matched:
            raise MappingError(f"several CSV mappings match this file "
                               f"({', '.join(m.id for m in self.matched)}); name one in "
                               f"partner {partner.id}'s profile")
        raise MappingError(
            f"no CSV mapping for this file: partner {partner.id} names none ([[documents]] "
            "format = \"csv\", mapping = \"…\") and no mapping's match fits it")

    def _fits_columns(self, mapping: CsvMapping) -> bool:
        try:
            FileMapper(mapping, self.table(mapping), filename=self.filename)
        except PayloadError:
            return False
        return True

    @staticmethod
    def _result(result: GroupResult, mapping: CsvMapping,
                schema: str) -> MappedDocument | FailedMessage:
        if result.error is not None or result.document is None:
            error = result.error
            reason = error.reason if error is not None else "not mapped"
            return FailedMessage(
                status=DocumentStatus.FAILED, stage="map", reason=f"{result.description}: {reason}",
                message_id=result.message_id, description=result.description,
                doc_type=mapping.document, business_number=result.number,
                message_ref=result.span, code=error.code if error is not None else None)
        doc = result.document
        return MappedDocument(
            doc_type=mapping.document, document=doc, message_id=result.message_id,
            business_number=result.number, interchange_ref=None, message_ref=result.span,
            schema_version=schema, warnings=list(result.warnings))


class CsvReader:
    """Reads delimited text (CSV, semicolon, tab, pipe) through ``format: csv`` mappings.

    Register it after the EDIFACT and XML readers: text cannot prove it is CSV, so ``sniff``
    only says it looks delimited.
    """

    format = "csv"

    def __init__(self, mappings: MappingSet) -> None:
        self.mappings = mappings

    def disabled_mappings(self) -> dict[str, str]:
        """The mappings left out (a file that did not load): id -> why; a partner naming
        one is disabled (``core.lifecycle.disabled_by``)."""
        return self.mappings.disabled()

    def sniff(self, head: bytes) -> bool:
        return looks_delimited(head)

    def parse(self, data: bytes, *, filename: str | None) -> CsvPayload:
        if not data.strip():
            raise FormatNotRecognised("empty file, nothing to read")
        payload = CsvPayload(data=data, filename=filename,
                             mappings=list(self.mappings.of_format("csv")))
        payload.recognise()
        return payload
