"""The PDF reader as the pipeline sees it (``gateway.core.ports.Reader``).

A Factur-X / ZUGFeRD invoice (or an Order-X order) is a PDF/A-3 with the structured XML
attached. The XML is what the gateway maps: ``PdfReader`` extracts it and hands it to the
XML reader it was given, so a Factur-X PDF and its XML sent alone give the same canonical
document with the same ``message_id``. Only the document's ``source`` differs: its standard
names the family and profile read from the XML's guideline id (``Factur-X EN 16931``) and
its filename is the PDF's. The PDF itself is archived as received by the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from gateway.core.errors import PayloadError
from gateway.core.ports import (
    FailedMessage,
    InterchangeSeen,
    MappedDocument,
    ParsedPayload,
    Reader,
    Reply,
    Sender,
)
from gateway.formats.pdf.extract import MAX_PDF_BYTES, PDF_MAGIC, extract_embedded_xml
from gateway.formats.pdf.profiles import Profile, profile_of

if TYPE_CHECKING:
    from gateway.config import Partner

# BT-24 specification identifier: CII D16B / Order-X D20B / ZUGFeRD 1.0 context paths.
_GUIDELINE = ("/*/*[local-name()='ExchangedDocumentContext' or "
              "local-name()='SpecifiedExchangedDocumentContext']"
              "/*[local-name()='GuidelineSpecifiedDocumentContextParameter']"
              "/*[local-name()='ID']")


@dataclass(slots=True)
class PdfPayload:
    """The XML payload of a PDF, with what the PDF added: the profile and the attachment."""

    inner: ParsedPayload
    attachment: str
    profile: Profile | None
    attachments: tuple[str, ...] = ()
    format: str = "pdf"

    # The ``ParsedPayload`` attributes are those of the XML inside, except the standard,
    # which the PDF's profile names when it has one; setting one sets the inner payload's.

    @property
    def warnings(self) -> list[str]:
        return self.inner.warnings

    @warnings.setter
    def warnings(self, value: list[str]) -> None:
        self.inner.warnings = value

    @property
    def standard(self) -> str | None:
        return self.profile.standard if self.profile else self.inner.standard

    @standard.setter
    def standard(self, value: str | None) -> None:
        self.inner.standard = value

    @property
    def senders(self) -> list[Sender]:
        return self.inner.senders

    @senders.setter
    def senders(self, value: list[Sender]) -> None:
        self.inner.senders = value

    def summary(self) -> str:
        what = self.profile.standard if self.profile else "XML"
        return f"PDF with {what} attachment {self.attachment}: {self.inner.summary()}"

    def control_refs(self) -> list[str]:
        return _optional(self.inner, "control_refs")

    def interchanges_seen(self) -> list[InterchangeSeen]:
        return _optional(self.inner, "interchanges_seen")

    def replies(self, *, partner: Partner, transmission_id: str) -> list[Reply]:
        return _optional(self.inner, "replies", partner=partner, transmission_id=transmission_id)

    def documents(self, *, partner: Partner, transmission_id: str | None,
                  filename: str | None, known_refs: dict[str, str] | None = None
                  ) -> list[MappedDocument | FailedMessage]:
        results = self.inner.documents(partner=partner, transmission_id=transmission_id,
                                       filename=filename, known_refs=known_refs)
        out: list[MappedDocument | FailedMessage] = []
        for result in results:
            if isinstance(result, MappedDocument):
                result.document = self._from_pdf(result.document, filename)
            else:
                result.description = f"{result.description} (in PDF attachment {self.attachment})"
            out.append(result)
        return out

    def _from_pdf(self, document: Any, filename: str | None) -> Any:
        """The document with a source that says it came from this PDF and profile."""
        source = getattr(document, "source", None)
        if source is None:
            return document
        update: dict[str, Any] = {"filename": filename or source.filename}
        if self.profile is not None:
            update["standard"] = self.profile.standard
        return document.model_copy(update={"source": source.model_copy(update=update)})


def _optional(payload: Any, name: str, **kwargs: Any) -> list[Any]:
    method = getattr(payload, name, None)
    return list(method(**kwargs)) if method is not None else []


def guideline_id(xml: bytes) -> tuple[str | None, str | None]:
    """(guideline id, root element local name) of an XML the XML reader has accepted.

    Parsed again with entities, DTDs and the network off, which the XML reader has
    already enforced; any failure only means "no profile".
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    try:
        root = etree.fromstring(xml, parser=parser)
    except etree.XMLSyntaxError:
        return None, None
    found = root.xpath(_GUIDELINE)
    text = (found[0].text or "").strip() if found else None
    return text or None, etree.QName(root).localname


class PdfReader:
    """Reads Factur-X / ZUGFeRD / XRechnung / Order-X PDFs through ``xml_reader``."""

    format = "pdf"

    def __init__(self, *, xml_reader: Reader, max_bytes: int = MAX_PDF_BYTES) -> None:
        self.xml_reader = xml_reader
        self.max_bytes = max_bytes

    def sniff(self, head: bytes) -> bool:
        # ISO 32000-1 7.5.2: the header is the first line, though readers accept junk
        # within the first 1024 bytes; so does this.
        return PDF_MAGIC in head[:1024]

    def parse(self, data: bytes, *, filename: str | None) -> PdfPayload:
        embedded = extract_embedded_xml(data, max_bytes=self.max_bytes)
        inner_name = f"{filename or 'payload.pdf'}#{embedded.filename}"
        try:
            inner = self.xml_reader.parse(embedded.data, filename=inner_name)
        except PayloadError as exc:
            exc.reason = f"PDF attachment {embedded.filename}: {exc.reason}"
            exc.args = (f"PDF attachment {embedded.filename}: {exc.args[0]}",) if exc.args \
                else exc.args
            raise
        # The XML reader has read the guideline id already (XmlPayload.kind); another
        # reader is asked nothing and the XML is read once more for it.
        kind = getattr(inner, "kind", None)
        if kind is not None and getattr(kind, "root", None):
            guideline, root = getattr(kind, "customization", None), kind.root
        else:
            guideline, root = guideline_id(embedded.data)
        return PdfPayload(inner=inner, attachment=embedded.filename,
                          profile=profile_of(guideline, root=root),
                          attachments=embedded.attachments)
