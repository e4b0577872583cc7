"""Which remote files a poll takes (``gateway.channels.sftp.selection``), without a server."""

from __future__ import annotations

from gateway.channels.sftp.connection import RemoteFile
from gateway.channels.sftp.selection import Settling, wanted

RULES = dict(patterns=["*.edi", "ORD*"], temp_prefixes=[".", "~"],
             temp_suffixes=[".tmp", ".part"])


def test_temporary_names_are_never_wanted():
    """Dot- and tilde-names and .tmp/.part suffixes are files being written."""
    assert wanted("a.edi", **RULES) and wanted("ORD1", **RULES)
    for name in (".a.edi", "~a.edi", "a.edi.part", "a.edi.tmp", "a.txt", "ord1"):
        assert not wanted(name, **RULES), name


def test_a_file_is_ready_only_when_unchanged_for_the_settle_time():
    """Unchanged size and mtime across looks at least ``settle`` apart make a file ready; any change starts over."""
    s = Settling(settle=1.0)
    f = RemoteFile("/in", "a.edi", 10, 100)
    assert s.look("/in", [f], now=0.0) == []
    assert s.look("/in", [f], now=0.5) == []
    grown = RemoteFile("/in", "a.edi", 20, 100)
    assert s.look("/in", [grown], now=1.2) == []
    assert s.look("/in", [grown], now=2.0) == []
    assert s.look("/in", [grown], now=2.3) == [grown]


def test_forgetting_a_file_makes_it_settle_again_and_folders_are_kept_apart():
    """After ``forget`` a file needs the settle time again; a look at one folder keeps what another folder's looks saw."""
    s = Settling(settle=0.0)
    a, b = RemoteFile("/in", "a", 1, 1), RemoteFile("/other", "b", 1, 1)
    s.look("/in", [a], now=0)
    s.look("/other", [b], now=0)
    assert s.look("/in", [a], now=1) == [a]
    assert s.look("/other", [b], now=1) == [b]
    s.forget(a.path)
    assert s.look("/in", [a], now=2) == []
    assert s.look("/in", [], now=3) == [] and s.look("/in", [a], now=4) == []
