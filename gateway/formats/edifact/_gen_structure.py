"""Generate ``_structure_data.json.gz`` from the UN/EDIFACT directories (run once, by hand).

    .venv/bin/python -m gateway.formats.edifact._gen_structure \\
        ../shared/corpus/smooks-edi-cartridge/edifact-schemas/src/main/resources

The argument is the folder holding the UN directory packages as the shared corpus has them
(``d96a.zip``, ``d01b.zip.contents/`` …); nested zips are opened in memory, nothing is
extracted. For each directory version (``VERSIONS``) two tables are written:

- ``messages``: every batch message of the message directory (EDMD, TRMD or UNSM text), as
  its segment table: segments and segment groups in order, each with status (M/C) and
  maximum repetitions, groups holding their own entries;
- ``segments``: every segment of the segment directory (EDSD/TRSD) with its data elements
  in order: status, repetitions (syntax 4 directories), format (``an..35``) or, for a
  composite, its components with their status and format.

and, from the code lists (UNCL), the date/time/period formats of 2379 (``102`` ->
``CCYYMMDD``). Tables that are the same in several versions are stored once (``shared``):
every batch message of the eight directories is about 1 MB of JSON, 110 kB gzipped. The
output is deterministic (sorted keys, no timestamp), so a rerun changes nothing unless the
directories or this reader change. The UN text files themselves stay out of the repository.
``structure.py`` reads the result once, when the first message is validated.

Layouts handled: D93A (no position column, ASCII boxes), D96A..D03B (code page 437 boxes,
read here as Latin-1: ``Ä`` rule, ``¿`` opens, ``Ù``/``Á`` close a group) and D14B (ASCII
``+`` boxes, five-digit positions); change indicators (``+ * # | X -``) before a tag; a
segment name wrapped onto a second line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Directory versions generated; each must be present in the resources folder.
VERSIONS = ("D93A", "D96A", "D96B", "D97A", "D97B", "D01B", "D03B", "D14B")

_MESSAGE_FILE = re.compile(r"([A-Z]{6})_[DS]\.\d\d[A-Z]")
_SEGMENT_FILE = re.compile(r"(?:ED|TR)SD\.\d\d[A-Z]")
_CODE_LIST_FILE = re.compile(r"UNCL(?:-\d)?\.\d\d[A-Z]")

_CHANGE = r"[+*#|X-]?"
_SEG_HEAD = re.compile(rf"^\s*(?:\d{{4,5}})?\s*{_CHANGE}\s*([A-Z][A-Z0-9]{{2}})\s+(\S.*)$")
_SEG_ROW = re.compile(r"^(.*?\S)\s+([MC])\s+(\d+)(.*)$")
_GROUP_ROW = re.compile(r"Segment\s+group\s+(\d+)\b.*?\s([MC])\s+(\d+)(.*)$", re.IGNORECASE)
_UNH_ROW = re.compile(rf"^\s*(?:\d{{4,5}})?\s*{_CHANGE}\s*UNH\s+Message header\s+M\s+1\b")
#: Characters that end a group's box on a segment row: one per group closed.
_CLOSERS = set("Ù" "Á" "+")


# -- reading the packages ----------------------------------------------------------------

def _members(resources: Path, version: str) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every file of a version's package, nested zips opened."""
    low = version.lower()
    packed = resources / f"{low}.zip"
    if packed.exists():
        yield from _walk_zip(zipfile.ZipFile(packed))
        return
    folder = resources / f"{low}.zip.contents"
    if not folder.is_dir():
        raise SystemExit(f"{version}: neither {packed} nor {folder} exists")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() == ".zip":
            try:
                yield from _walk_zip(zipfile.ZipFile(path))
            except zipfile.BadZipFile:
                continue
        elif path.is_file():
            yield path.name, path.read_bytes()


def _walk_zip(archive: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    for name in archive.namelist():
        if name.endswith("/"):
            continue
        data = archive.read(name)
        if name.lower().endswith(".zip"):
            try:
                yield from _walk_zip(zipfile.ZipFile(io.BytesIO(data)))
            except zipfile.BadZipFile:
                continue
        else:
            yield name.rsplit("/", 1)[-1].upper(), data


#: JSON rows as the tables hold them: a message table's entries (``[tag, status, max]`` or
#: ``[group number, status, max, entries]``), a segment's elements, a composite's components.
Rows = list[list[Any]]

# -- message directory ---------------------------------------------------------------------

def parse_message(text: str) -> Rows | None:
    """The segment table of one message as nested entries, or None for interactive messages.

    A segment is ``[tag, status, max]``; a group is ``[number, status, max, entries]``.
    """
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        if _UNH_ROW.match(line):
            start = i
    if start is None:  # interactive (UIH..UIT) messages are not generated
        return None
    root: Rows = []
    stack: list[Rows] = [root]
    i = start
    while i < len(lines):
        line = lines[i]
        i += 1
        if m := _GROUP_ROW.search(line):
            group: list[Any] = [int(m.group(1)), m.group(2), int(m.group(3)), []]
            stack[-1].append(group)
            stack.append(group[3])
            continue
        head = _SEG_HEAD.match(line)
        if not head:
            continue
        tag, rest = head.group(1), head.group(2)
        row = _SEG_ROW.match(rest)
        if row is None and i < len(lines):  # the name may wrap onto the next line
            row = _SEG_ROW.match(rest.rstrip() + " " + lines[i].strip())
            if row is not None:
                i += 1
        if row is None:  # a heading such as "TAG  NAME  S  REPT"
            continue
        stack[-1].append([tag, row.group(2), int(row.group(3))])
        closes = sum(1 for ch in row.group(4) if ch in _CLOSERS)
        for _ in range(closes):
            stack.pop()
            if not stack:
                raise ValueError(f"more groups closed than opened at {line!r}")
        if tag == "UNT":
            break
    if len(stack) != 1:
        raise ValueError(f"{len(stack) - 1} segment group(s) not closed")
    _check_groups(root)
    return root


def _check_groups(root: Rows) -> None:
    numbers: list[int] = []

    def walk(entries: Rows) -> None:
        if not entries or not isinstance(entries[0][0], str):
            raise ValueError("a segment group must start with its trigger segment")
        for entry in entries:
            if isinstance(entry[0], int):
                numbers.append(entry[0])
                walk(entry[3])

    walk(root)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"segment groups out of sequence: {numbers}")
    if root[0][0] != "UNH" or root[-1][0] != "UNT":
        raise ValueError("the segment table must run from UNH to UNT")


# -- segment directory ---------------------------------------------------------------------

_FORMAT = r"(?:an|a|n)(?:\.\.)?\d+"
# 010   C002  DOCUMENT/MESSAGE NAME                 C            (D96A..D03B)
# 030    1225 MESSAGE FUNCTION CODE                 C    1 an..3  (D14B adds repetitions)
#       1001   Document/message name, coded         C  an..3     (a component)
#   C543 AGREEMENT TYPE IDENTIFICATION              C            (D93A: no positions)
_ELEMENT = re.compile(
    rf"^\s*(?P<pos>\d{{3}})?\s*{_CHANGE}\s*(?P<code>[A-Z]\d{{3}}|\d{{4}})\s+(?P<name>\S.*?)"
    rf"\s+(?P<status>[MC])(?:\s+(?P<rep>\d+))?(?:\s+(?P<fmt>{_FORMAT}))?\s*$")
_ELEMENT_START = re.compile(rf"^\s*(?:\d{{3}})?\s*{_CHANGE}\s*(?:[A-Z]\d{{3}}|\d{{4}})\s+\S")
_SEGMENT_TITLE = re.compile(rf"^\s*{_CHANGE}\s*([A-Z][A-Z0-9]{{2}})\s{{2,}}[A-Z][A-Z0-9 /,&().'-]+$")


def parse_segments(text: str) -> dict[str, Rows]:
    """Segment tag -> elements: ``[code, status, repeats, format]`` for a simple element,
    ``[code, status, repeats, [[code, status, format], …]]`` for a composite."""
    segments: dict[str, Rows] = {}
    current: Rows | None = None
    composite: list[Any] | None = None  # the composite element being read
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := _SEGMENT_TITLE.match(line):
            current = segments.setdefault(m.group(1), [])
            composite = None
            continue
        m = _ELEMENT.match(line)
        if m is None and _ELEMENT_START.match(line) and i + 1 < len(lines):
            m = _ELEMENT.match(line.rstrip() + " " + lines[i + 1].strip())  # a wrapped name
        if current is None or m is None:
            continue
        code, status, fmt = m.group("code"), m.group("status"), m.group("fmt")
        # A component has no position and a name in mixed case; D93A gives no positions
        # at all, but names its segment's own elements in capitals.
        if m.group("pos") is None and _mixed(m.group("name")):
            if composite is None or fmt is None:
                raise ValueError(f"component outside a composite: {line!r}")
            composite[3].append([code, status, fmt])
        elif code[0].isalpha():
            composite = [code, status, int(m.group("rep") or 1), []]
            current.append(composite)
        else:
            if fmt is None:
                raise ValueError(f"simple element without a format: {line!r}")
            current.append([code, status, int(m.group("rep") or 1), fmt])
            composite = None
    for tag, elements in segments.items():
        for element in elements:
            if isinstance(element[3], list) and not element[3]:
                raise ValueError(f"{tag}: composite {element[0]} without components")
    return segments


def _mixed(name: str) -> bool:
    return any(ch.islower() for ch in name)


# -- code list 2379 ------------------------------------------------------------------------

_LIST_HEAD = re.compile(rf"^\s*{_CHANGE}\s*2379\s+\S")
# Codes start within the first ten columns; their descriptions are indented further.
_LIST_CODE = re.compile(r"^\s{0,10}(?:[+*#|X-]\s*)?(\d{1,3})\s+(\S.*?)\s*$")
_LIST_END = re.compile(r"^\s*(?:Ä{10}|-{10})")


def parse_date_formats(text: str) -> dict[str, str]:
    """UNCL 2379 (date/time/period format): code -> its name, e.g. ``102`` -> ``CCYYMMDD``."""
    codes: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if not inside:
            inside = bool(_LIST_HEAD.match(line))
            continue
        if _LIST_END.match(line):
            break
        if m := _LIST_CODE.match(line):
            codes[m.group(1)] = m.group(2)
    return codes


# -- output --------------------------------------------------------------------------------

def read_version(resources: Path, version: str
                 ) -> tuple[dict[str, Rows], dict[str, Rows], dict[str, str]]:
    """(messages, segments, date formats) of one directory version."""
    messages: dict[str, Rows] = {}
    segments: dict[str, Rows] | None = None
    dates: dict[str, str] = {}
    for name, data in _members(resources, version):
        text = data.decode("latin-1")
        if m := _MESSAGE_FILE.fullmatch(name):
            try:
                table = parse_message(text)
            except ValueError as exc:
                raise ValueError(f"{version} {name}: {exc}") from exc
            if table is not None:
                messages[m.group(1)] = table
        elif _SEGMENT_FILE.fullmatch(name):
            segments = parse_segments(text)
        elif _CODE_LIST_FILE.fullmatch(name):
            dates.update(parse_date_formats(text))
    if not messages or not segments:
        raise SystemExit(f"{version}: message or segment directory not found")
    return messages, segments, dates


def generate(resources: Path, versions: tuple[str, ...] = VERSIONS) -> bytes:
    """The gzipped JSON document ``structure.py`` loads."""
    shared: dict[str, object] = {}
    out: dict[str, dict[str, dict[str, str]]] = {}

    def share(value: object) -> str:
        blob = json.dumps(value, separators=(",", ":"))
        key = hashlib.sha1(blob.encode()).hexdigest()[:10]
        shared[key] = value
        return key

    dates: dict[str, str] = {}
    for version in versions:
        messages, segments, version_dates = read_version(resources, version)
        dates.update(version_dates)  # codes keep their meaning; later directories add some
        out[version] = {
            "messages": {name: share(table) for name, table in sorted(messages.items())},
            "segments": {tag: share(spec) for tag, spec in sorted(segments.items())},
        }
        print(f"{version}: {len(messages)} messages, {len(segments)} segments", file=sys.stderr)
    document = {"format": 1, "versions": out, "shared": shared, "date_formats": dates}
    blob = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(blob, compresslevel=9, mtime=0)


if __name__ == "__main__":
    target = Path(__file__).with_name("_structure_data.json.gz")
    target.write_bytes(generate(Path(sys.argv[1])))
    print(f"wrote {target} ({target.stat().st_size} bytes)")
