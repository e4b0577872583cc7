"""EDIFACT reader: bytes in, interchanges of messages of segments out (sans-IO)."""

from gateway.formats.edifact.envelope import read_interchanges
from gateway.formats.edifact.model import Interchange, Message, Segment, Source
from gateway.formats.edifact.tokenizer import Separators

__all__ = ["Interchange", "Message", "Segment", "Separators", "Source", "read_interchanges"]
