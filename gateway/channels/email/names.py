"""Safe file names from what a mail or a zip says, and what each payload looks like.

A name in a mail (RFC 2231 parameter, RFC 2047 encoded word) or in a zip entry is the
sender's text: it may hold ``../``, an absolute path, a drive letter, control characters.
It is reduced to a base name that is safe anywhere, and the caller is told when the
original tried to leave its folder so that the attempt is recorded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.header import decode_header, make_header

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_MAX_NAME = 180


@dataclass(frozen=True, slots=True)
class SafeName:
    """A base name fit to store, and why the original was not (None when it was fine)."""

    name: str
    unsafe: str | None = None


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words that some mailers put inside a quoted parameter
    (``filename="=?UTF-8?B?...?="``), which RFC 2231 parsing leaves as they are."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def safe_name(raw: str | None, fallback: str) -> SafeName:
    """The last path component of ``raw`` with control and reserved characters removed.

    ``../../etc/passwd`` gives ``passwd`` with the traversal noted; ``C:\\x\\order.edi``
    gives ``order.edi``; an empty result gives ``fallback``.
    """
    if not raw:
        return SafeName(fallback)
    text = unicodedata.normalize("NFC", raw)
    parts = re.split(r"[/\\]+", text)
    base = parts[-1] if parts else ""
    cleaned = _UNSAFE_CHARS.sub("_", base).strip().strip(".")
    reasons: list[str] = []
    if any(p == ".." for p in parts):
        reasons.append("path traversal")
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text):
        reasons.append("absolute path")
    elif len(parts) > 1 and not reasons:
        reasons.append("folder in the name")
    if cleaned != base and not reasons:
        reasons.append("control or reserved characters")
    if len(cleaned) > _MAX_NAME:
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[:_MAX_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 \
            else cleaned[:_MAX_NAME]
    if not cleaned:
        cleaned = fallback
        reasons = reasons or ["no usable name"]
    unsafe = f"name {raw!r} reduced to {cleaned!r} ({', '.join(reasons)})" if reasons else None
    return SafeName(cleaned, unsafe)


# -- what a payload looks like ---------------------------------------------------------------

#: Names and content types whose payload edigw can read (EDIFACT, XML, CSV, PDF) or open (zip).
_READABLE_EXT = (".edi", ".edifact", ".eancom", ".txt", ".dat", ".xml", ".csv", ".pdf",
                 ".ord", ".inv", ".pri", ".pricat", ".orders", ".invoic", ".ubl", ".cii")
_CSV_TYPES = ("text/csv", "text/comma-separated-values", "application/csv",
              "text/tab-separated-values")
_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")


def kind_of(data: bytes, name: str, content_type: str = "") -> str | None:
    """``edifact``, ``xml``, ``pdf``, ``csv``, ``zip`` or None (not a document edigw reads).

    Content decides first (a ``.txt`` holding UNB is EDIFACT). A zip counts only when named
    or typed as one, so that an office file (also a zip inside) is not opened as an archive.
    CSV has no signature: its name or content type must say so.
    """
    head = data[:512].lstrip(b"\xef\xbb\xbf\r\n\t ")
    lower = name.lower()
    ctype = content_type.lower()
    if head.startswith((b"UNA", b"UNB")):
        return "edifact"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip" if lower.endswith(".zip") or ctype in _ZIP_TYPES else None
    if head.startswith(b"<") or data[:4] in (b"\xff\xfe<\x00", b"\xfe\xff\x00<"):
        return "xml"
    if lower.endswith((".csv", ".tsv")) or ctype in _CSV_TYPES:
        return "csv"
    if lower.endswith(_READABLE_EXT) and ctype not in ("text/html",) and head:
        # A named document edigw may still read (a delimited .txt): let the readers decide.
        return "text"
    return None
