"""The XML reader as the pipeline sees it (``gateway.core.ports.Reader``).

``parse`` reads the bytes safely, detects the standard, validates against its XSD (and, for
UBL, the shared code lists) and finds the mapping that claims the document, whose ``senders``
rules name the sending party's identifiers. Nothing is refused there but unreadable or
hostile XML (``XmlError``): a schema error, an XML edigw has no mapping for or a mapping that
fails becomes one ``FailedMessage`` from ``documents``, so that the document is recorded,
searchable by its number, and can be reprocessed after a fix.

An XML payload holds one business document, unless its mapping says with ``documents`` which
nodes are each one (a partner's ``<envelope>`` of ``<message>`` orders): then each node
becomes its own ``MappedDocument`` or ``FailedMessage``, a bad one failing alone and a node of
another kind skipped as DocumentStatus.UNSUPPORTED, while the others go on.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree

from gateway.core.canonical import CANONICAL_MODELS
from gateway.core.errors import MappingError, PayloadError, Position
from gateway.core.ids import message_id
from gateway.core.ports import FailedMessage, InterchangeSeen, MappedDocument, Reply, Sender
from gateway.core.status import DocumentStatus
from gateway.formats.xml import schemas
from gateway.formats.xml.detect import XmlKind, detect
from gateway.formats.xml.mapping import DocumentNode, XmlMapping, find_xml_mapping
from gateway.formats.xml.safe import DEFAULT_LIMITS, ParseLimits, XmlError, parse_xml

if TYPE_CHECKING:
    from gateway.config import Partner
    from gateway.formats.mapping import MappingSet


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE,
         codecs.BOM_UTF16_BE)


@dataclass(slots=True)
class XmlPayload:
    """One XML file, parsed and validated; mapped once the partner is known."""

    tree: etree._ElementTree
    kind: XmlKind
    mappings: list[XmlMapping]
    #: The mapping that claims the document by its ``match`` (None: none does).
    mapping: XmlMapping | None
    #: Why the document cannot be used whatever the partner: schema or code list.
    invalid: XmlError | None = None
    #: Why no mapping could be chosen (two claim it equally).
    ambiguous: MappingError | None = None
    encoding: str = "utf-8"
    size: int = 0
    format: str = "xml"
    standard: str | None = None
    senders: list[Sender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def root(self) -> etree._Element:
        return self.tree.getroot()

    def summary(self) -> str:
        parts = [f"XML, {self.kind.describe()}"]
        if self.kind.customization:
            parts.append(f"customization {self.kind.customization}")
        if self.kind.schema:
            parts.append("schema " + ("invalid" if self.invalid else "valid")
                         if schemas.schema_path(self.kind.schema) else "no schema")
        parts.append(f"{self.size} bytes {self.encoding}")
        return ", ".join(parts)

    def control_refs(self) -> list[str]:
        return []

    def interchanges_seen(self) -> list[InterchangeSeen]:
        return []

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        return []

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None
                  ) -> list[MappedDocument | FailedMessage]:
        try:
            mapping = self._mapping_for(partner)
        except MappingError as exc:
            return [self._failed(partner, self.mapping, exc, DocumentStatus.FAILED, stage="map")]
        if mapping is None:  # said first: a fix of the document would not help
            reason = MappingError(self.kind.unsupported_reason())
            return [self._failed(partner, None, reason, DocumentStatus.UNSUPPORTED, stage="map")]
        if self.invalid is not None:
            return [self._failed(partner, mapping, self.invalid, DocumentStatus.FAILED)]
        senders = self.senders if mapping is self.mapping else mapping.sender_ids(self.root)
        try:
            nodes = mapping.document_nodes(self.root)
        except MappingError as exc:
            return [self._failed(partner, mapping, exc, DocumentStatus.FAILED)]
        if not nodes:
            assert mapping.documents is not None  # without it the root is the document
            empty = MappingError(f"no document in the file: documents "
                                 f"{mapping.documents.each.text!r} selects nothing",
                                 position=Position(line=self.root.sourceline,
                                                   element=mapping.documents.each.text))
            return [self._failed(partner, mapping, empty, DocumentStatus.FAILED)]
        return [self._document(partner, mapping, node, senders, transmission_id, filename)
                for node in nodes]

    def _document(self, partner: Partner, mapping: XmlMapping, node: DocumentNode,
                  senders: list[Sender], transmission_id: str | None, filename: str | None
                  ) -> MappedDocument | FailedMessage:
        """One document of the file, or why it is not one; never raises."""
        if node.skipped is not None:
            return self._failed(partner, mapping, MappingError(node.skipped),
                                DocumentStatus.UNSUPPORTED, stage="map", node=node)
        # A document's own sender names it (its message_id); the file's first otherwise.
        own = mapping.document_senders(node.node) if mapping.documents is not None else []
        named = own or senders
        sender = named[0] if named else None
        try:
            mapped = mapping.map(node.node, partner_id=partner.id, filename=filename,
                                 transmission_id=transmission_id, sender=sender,
                                 standard=self._standard(), version=self._version())
        except MappingError as exc:
            return self._failed(partner, mapping, exc, DocumentStatus.FAILED, node=node)
        doc: Any = mapped.document
        return MappedDocument(
            doc_type=mapped.document_type, document=doc, message_id=doc.message_id,
            business_number=doc.business_number, interchange_ref=None, message_ref=None,
            schema_version=CANONICAL_MODELS[mapped.document_type].model_fields["schema_"].default,
            warnings=mapped.warnings)

    def _standard(self) -> str | None:
        return self.kind.standard if self.kind.kind != "xml" else None

    def _version(self) -> str | None:
        return self.kind.version if self.kind.kind != "xml" else None

    def _mapping_for(self, partner: Partner) -> XmlMapping | None:
        """The partner's own mapping for this document when its profile names one, else the
        one that claims it by ``match``."""
        named = self._named(partner)
        if named is None:
            if self.ambiguous is not None:
                raise self.ambiguous
            return self.mapping
        kind = self.kind
        return find_xml_mapping(self.mappings, root=kind.root, namespace=kind.namespace,
                                customization=kind.customization, profile=kind.profile,
                                mapping_id=named, document=self.root)

    def _named(self, partner: Partner) -> str | None:
        if self.kind.doc_type is not None:
            return partner.mapping_for(self.kind.doc_type, "xml")
        # Partner XML: a profile entry with format xml naming a mapping for this root.
        kind = self.kind
        by_id = {m.id: m for m in self.mappings}
        for entry in getattr(partner, "documents", []):
            chosen = by_id.get(entry.mapping or "")
            # A mapping without match is chosen by the profile alone (partners' own XML).
            if (entry.format == "xml" and chosen is not None
                    and (chosen.match is None
                         or chosen.match.matches(kind.root, kind.namespace, kind.customization,
                                                 kind.profile, self.root))):
                return chosen.id
        return None

    def _failed(self, partner: Partner, mapping: XmlMapping | None, error: PayloadError,
                status: str, stage: str | None = None,
                node: DocumentNode | None = None) -> FailedMessage:
        """A failed (or unsupported) document; ``node`` when it is one of several in the
        file, whose label (``message 2 of 3 at line 58``) and own number the reason gives."""
        several = node is not None and mapping is not None and mapping.documents is not None
        at = node.node if node is not None and several else self.root
        number, issued = mapping.reference(at) if mapping is not None else (None, None)
        doc_type = mapping.document if mapping is not None else self.kind.doc_type
        own = mapping.document_senders(at) if several and mapping is not None else []
        named = own or self.senders
        sender = named[0] if named else None
        refs: list[str | None] = [sender.id if sender else None, number, issued]
        if several and node is not None:
            description = f"{self.kind.describe()}, {node.label}" + (
                f", {doc_type} {number}" if number else "")
            if number is None:  # two unnamed failures of one file must not share an id
                refs.append(f"#{node.index}")
        else:
            description = self.kind.describe() + (f" {number}" if number else "")
        return FailedMessage(
            status=status, stage=stage or error.stage,
            reason=(str(error) if status == DocumentStatus.UNSUPPORTED
                    else f"{description}: {error}"),
            message_id=message_id(partner.id, doc_type or "xml", *refs),
            description=description, doc_type=doc_type, business_number=number,
            code=error.code)


class XmlReader:
    """Reads UBL, CII, Factur-X XML, Order-X and partners' own XML."""

    format = "xml"

    def __init__(self, mappings: MappingSet, *, limits: ParseLimits = DEFAULT_LIMITS,
                 validate: bool = True) -> None:
        self.mappings = mappings
        self.limits = limits
        self.validate = validate

    def disabled_mappings(self) -> dict[str, str]:
        """The mappings left out (a file that did not load): id -> why; a partner naming
        one is disabled (``core.lifecycle.disabled_by``)."""
        return self.mappings.disabled()

    def sniff(self, head: bytes) -> bool:
        """A ``<`` first, after an optional byte order mark and white space (also UTF-16)."""
        for bom in _BOMS:
            if head.startswith(bom):
                head = head[len(bom):]
                break
        head = head.lstrip(b" \t\r\n\x00")
        return head.startswith(b"<")

    def parse(self, data: bytes, *, filename: str | None) -> XmlPayload:
        """Parse, detect, validate and choose the mapping; ``XmlError`` only for XML that
        cannot be read (not well-formed, hostile, too big or too deep)."""
        from gateway.formats.xml.safe import detect_encoding

        tree = parse_xml(data, limits=self.limits, filename=filename)
        root = tree.getroot()
        kind = detect(root)
        invalid = None
        if self.validate:
            try:
                schemas.validate(tree, kind.schema)
                if kind.kind == "ubl":
                    schemas.check_code_lists(root)
            except XmlError as exc:
                invalid = exc
        xml_mappings = self._xml_mappings()
        mapping, ambiguous = None, None
        try:
            mapping = find_xml_mapping(xml_mappings, root=kind.root, namespace=kind.namespace,
                                       customization=kind.customization, profile=kind.profile,
                                       document=root)
        except MappingError as exc:
            ambiguous = exc
        senders = mapping.sender_ids(root) if mapping is not None else []
        return XmlPayload(tree=tree, kind=kind, mappings=xml_mappings, mapping=mapping,
                          invalid=invalid, ambiguous=ambiguous,
                          encoding=detect_encoding(data)[0], size=len(data),
                          standard=kind.standard, senders=senders)

    def _xml_mappings(self) -> list[XmlMapping]:
        return [m for m in self.mappings.of_format("xml") if isinstance(m, XmlMapping)]
