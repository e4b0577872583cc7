"""Factur-X / ZUGFeRD / Order-X PDFs: the embedded XML read by the XML reader.

``PdfReader`` takes the XML reader it hands the extracted XML to (``gateway.app`` wires
them), so this package imports no other format's code.
"""

from gateway.formats.pdf.extract import EmbeddedXml, PdfPayloadError, extract_embedded_xml
from gateway.formats.pdf.profiles import Profile, profile_of
from gateway.formats.pdf.reader import PdfPayload, PdfReader

__all__ = ["EmbeddedXml", "PdfPayload", "PdfPayloadError", "PdfReader", "Profile",
           "extract_embedded_xml", "profile_of"]
