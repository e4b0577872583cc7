"""Find the invoice or order XML a Factur-X / ZUGFeRD / Order-X PDF carries.

The ``factur-x`` library does the finding (it knows the attachment names and the root
elements of each flavour); every error of it or of ``pypdf`` beneath it is translated here
into ``PdfPayloadError``, so the pipeline never sees a PDF library's exception. The XML is
not checked here: the caller hands it to the hardened XML reader, which refuses DTDs,
entities and oversize documents.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from gateway.core.errors import PayloadError, Position

#: A Factur-X PDF is a few hundred kilobytes; 25 MiB leaves room for scanned annexes while
#: keeping a hostile file from tying up a worker.
MAX_PDF_BYTES = 25 * 1024 * 1024

#: Attachment names of the XML, per the Factur-X 1.0, ZUGFeRD 1.0/2.x, XRechnung and
#: Order-X specifications; matched without regard to case.
XML_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml", "order-x.xml")

PDF_MAGIC = b"%PDF-"


class PdfPayloadError(PayloadError):
    """A PDF that cannot be read, or that carries no invoice or order XML."""

    stage = "parse"


@dataclass(frozen=True, slots=True)
class EmbeddedXml:
    """The XML found in a PDF and the name it was attached under."""

    filename: str
    data: bytes
    #: Names of every attachment of the PDF, for the transmission's summary.
    attachments: tuple[str, ...]


def extract_embedded_xml(data: bytes, *, max_bytes: int = MAX_PDF_BYTES) -> EmbeddedXml:
    """The embedded Factur-X / ZUGFeRD / XRechnung / Order-X XML of a PDF.

    Raises ``PdfPayloadError`` for a PDF over ``max_bytes``, one that cannot be read or is
    encrypted, and one without such an attachment (naming the attachments it has). An
    attachment with an expected name whose XML the library could not use is still
    returned, so that the XML reader says precisely what is wrong with it.
    """
    if not data.lstrip()[:5] == PDF_MAGIC:
        raise PdfPayloadError("not a PDF: the file does not start with %PDF-",
                              position=Position(line=1, column=1))
    if len(data) > max_bytes:
        raise PdfPayloadError(f"PDF of {len(data)} bytes is over the limit of {max_bytes} "
                              "bytes for PDF invoices")
    import facturx  # the library and pypdf take a while to import; PDFs are rare
    from pypdf import PdfReader as PypdfReader

    try:
        with _quiet():
            reader = PypdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise PdfPayloadError("the PDF is encrypted: its attachments cannot be read; "
                                      "ask the partner for an unencrypted Factur-X PDF")
            attachments = {entry.name: entry.content for entry in reader.attachment_list}
            name, xml = facturx.get_xml_from_pdf(data, check_xsd=False)
    except PdfPayloadError:
        raise
    except Exception as exc:  # pypdf raises many kinds for a broken file; all mean the same
        raise PdfPayloadError(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from exc
    names = tuple(attachments)
    if name and xml:
        return EmbeddedXml(filename=name, data=xml, attachments=names)
    # The library skips XML it cannot parse or whose root it does not know. An attachment
    # under a standard name goes to the XML reader anyway, for its precise reason.
    for attached, content in attachments.items():
        if attached.lower() in XML_NAMES and content:
            return EmbeddedXml(filename=attached, data=content, attachments=names)
    listed = ", ".join(names[:10]) if names else "none"
    raise PdfPayloadError(
        "the PDF carries no Factur-X, ZUGFeRD, XRechnung or Order-X XML (attachments: "
        f"{listed}); a plain PDF invoice cannot be read, ask the partner for Factur-X")


class _quiet:
    """pypdf and factur-x log every oddity of a file at WARNING; the reason we raise is
    what matters, so their loggers are held at ERROR while a PDF is read."""

    _names = ("pypdf", "facturx", "facturx.facturx")

    def __enter__(self) -> None:
        self._levels = [(lg, lg.level) for lg in map(logging.getLogger, self._names)]
        for lg, _ in self._levels:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for lg, level in self._levels:
            lg.setLevel(level)
