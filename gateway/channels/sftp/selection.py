"""Which remote files to take this poll (sans-IO: listings in, files out).

A file is taken when it matches one of the folder's patterns, its name is not a temporary
one (a prefix such as ``.`` or a suffix such as ``.part`` that uploaders use while writing),
and it is complete: its size and modification time are the same at two looks at least
``settle`` seconds apart. SFTP v3 gives modification times in whole seconds, so a writer that
pauses within one second could look unchanged to two quick looks: ``settle`` defaults to
just over a second whatever the poll interval.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.channels.sftp.connection import RemoteFile


def wanted(name: str, *, patterns: Iterable[str], temp_prefixes: Iterable[str],
           temp_suffixes: Iterable[str]) -> bool:
    """Whether a file of this name is one to take once complete."""
    if any(name.startswith(p) for p in temp_prefixes if p):
        return False
    if any(name.endswith(s) for s in temp_suffixes if s):
        return False
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class Settling:
    """Remembers what each file looked like, and since when, across looks."""

    settle: float = 1.1
    _seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)

    def look(self, folder: str, files: Iterable[RemoteFile], now: float) -> list[RemoteFile]:
        """The files of ``folder`` unchanged since a look ``settle`` seconds ago or more."""
        ready: list[RemoteFile] = []
        current: dict[str, tuple[int, int, float]] = {}
        for f in files:
            before = self._seen.get(f.path)
            if before is not None and before[:2] == (f.size, f.mtime):
                current[f.path] = before
                if now - before[2] >= self.settle:
                    ready.append(f)
            else:
                current[f.path] = (f.size, f.mtime, now)
        # Files gone from the folder are forgotten; other folders' entries are kept.
        prefix = folder.rstrip("/") + "/"
        self._seen = {p: v for p, v in self._seen.items() if not p.startswith(prefix)
                      or "/" in p[len(prefix):]}
        self._seen.update(current)
        return ready

    def forget(self, path: str) -> None:
        """Start over for this file (it changed under us, or its receive failed)."""
        self._seen.pop(path, None)
