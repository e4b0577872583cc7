"""The formats edigw reads: their names and their readers, in the one place that lists them.

``FORMAT_NAMES`` are the names a transmission records (``transmissions.format``) and the
console filters on, in the order the console shows them. ``MANUAL_FORMATS`` are those a
person produces (a typed text order, an order laid out for print) rather than a partner's
system; statistics count them apart. ``default_readers`` builds the readers in the order
their ``sniff`` is tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.ports import Reader
    from gateway.formats.mapping.registry import MappingSet

#: Every format name a transmission can carry, in the console's order.
FORMAT_NAMES: tuple[str, ...] = ("edifact", "xml", "csv", "sms", "pdf")

#: Formats a person produces (a typed text order, a printed PDF order), not a partner's system.
MANUAL_FORMATS: frozenset[str] = frozenset({"sms", "pdf"})

#: The formats a partner profile may declare for its documents (``[[documents]] format``):
#: those read through a mapping or an envelope of their own. A PDF is read as the XML it
#: carries, so it is declared as ``xml``.
PROFILE_FORMATS: tuple[str, ...] = ("edifact", "xml", "csv", "sms")


def default_readers(mappings: MappingSet) -> list[Reader]:
    """The format readers, in the order their ``sniff`` is tried: PDF first (``%PDF-``; its
    bytes may contain anything), then EDIFACT, XML, text-message envelopes (an exact first
    line), and CSV last (it only claims text that looks delimited and nothing else took).
    The PDF reader hands the XML it extracts to the same XML reader. The readers are
    imported here, not with the names above: the configuration reads those cheaply."""
    from gateway.formats.csv.reader import CsvReader
    from gateway.formats.edifact.reader import EdifactReader
    from gateway.formats.pdf.reader import PdfReader
    from gateway.formats.sms.reader import SmsReader
    from gateway.formats.xml.reader import XmlReader

    xml = XmlReader(mappings)
    return [PdfReader(xml_reader=xml), EdifactReader(mappings), xml, SmsReader(),
            CsvReader(mappings)]
