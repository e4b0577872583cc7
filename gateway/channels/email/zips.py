"""Opening a zip attachment without trusting it.

The sizes a zip declares (central directory, local headers) are the sender's word; a zip bomb
lies or simply compresses a lot. So every entry is decompressed in chunks and the limits are
checked on the bytes actually produced: the total across entries, each entry's size, and the
ratio of what came out to the real size of the zip. Entries are counted before any is read.
One level only: a zip inside a zip is not opened (it is refused with that reason), as a
nested archive is the usual way to multiply a bomb.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

from gateway.channels.email.names import kind_of, safe_name
from gateway.core.errors import EdigwError

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ZipLimits:
    max_total: int
    max_ratio: float
    max_entries: int
    max_entry: int


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """A readable document found in a zip."""

    position: int  # 1-based among the zip's entries
    name: str  # a safe base name
    data: bytes
    unsafe: str | None = None  # why the entry's own name was not safe, when it was not


@dataclass(slots=True)
class ZipContent:
    """What a zip gave: its documents, the entries left out (and why), or why it was refused."""

    entries: list[ZipEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: str | None = None


class _Bomb(EdigwError):
    pass


def open_zip(data: bytes, name: str, limits: ZipLimits) -> ZipContent:
    """The documents in the zip ``data`` (named ``name``), or the reason it is refused.

    A zip over any limit is refused as a whole: taking half of a bomb is no safer.
    """
    out = ZipContent()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        out.refused = f"zip {name} cannot be opened: {exc}"
        return out
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_entries:
            out.refused = (f"zip {name} holds {len(infos)} entries, over the limit of "
                           f"{limits.max_entries} (zip bomb?)")
            return out
        total = 0
        budget_ratio = limits.max_ratio * max(len(data), 1)
        for position, info in enumerate(infos, start=1):
            entry_name = safe_name(info.filename, f"entry-{position}")
            if info.flag_bits & 0x1:
                out.skipped.append(f"{entry_name.name}: encrypted, cannot be read")
                continue
            try:
                body = _read_entry(archive, info, limits, total, budget_ratio)
            except _Bomb as bomb:
                out.entries.clear()
                out.refused = f"zip {name} refused: {bomb} (zip bomb?)"
                return out
            except (zipfile.BadZipFile, OSError, ValueError, EOFError,
                    NotImplementedError, RuntimeError) as exc:
                out.skipped.append(f"{entry_name.name}: cannot be decompressed ({exc})")
                continue
            total += len(body)
            kind = kind_of(body, entry_name.name)
            if kind == "zip" or body[:4] == b"PK\x03\x04" and entry_name.name.lower().endswith(
                    (".zip", ".jar")):
                out.skipped.append(f"{entry_name.name}: a zip inside a zip is not opened "
                                   "(one level only)")
                continue
            if kind is None:
                out.skipped.append(f"{entry_name.name}: not EDIFACT, XML, CSV or PDF")
                continue
            out.entries.append(ZipEntry(position, entry_name.name, body, entry_name.unsafe))
    return out


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits,
                total_before: int, budget_ratio: float) -> bytes:
    """Decompress one entry, stopping as soon as any limit is passed."""
    chunks: list[bytes] = []
    size = 0
    compressed = max(info.compress_size, 1)
    with archive.open(info) as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            chunks.append(chunk)
            if size > limits.max_entry:
                raise _Bomb(f"entry {info.filename!r} expands past the "
                            f"{limits.max_entry}-byte attachment limit")
            if total_before + size > limits.max_total:
                raise _Bomb(f"its entries expand past the {limits.max_total}-byte total limit")
            if size > limits.max_ratio * compressed and size > _CHUNK:
                raise _Bomb(f"entry {info.filename!r} expands more than "
                            f"{limits.max_ratio:g} times its compressed size")
            if total_before + size > budget_ratio and size > _CHUNK:
                raise _Bomb(f"its entries expand more than {limits.max_ratio:g} times the "
                            "zip's size")
    return b"".join(chunks)
