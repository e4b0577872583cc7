"""The SFTP channel's decisions with an in-memory server, receiver and health records."""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.channels.sftp.channel import SftpChannel
from gateway.channels.sftp.connection import RemoteFile
from gateway.channels.sftp.errors import SftpError
from gateway.config import Partner, SftpSettings
from gateway.core.ports import Incoming, Receipt


class FakeServer:
    """Files by absolute path; ``fail_remove`` makes removals fail as a permission error."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.folders: set[str] = set()
        self.fail_remove = False
        self.down = False
        self.logins = 0
        #: mtime of a file (100 unless set here).
        self.mtimes: dict[str, int] = {}
        #: Called with the path after each download, before anything else: a partner writing.
        self.after_download: Callable[[str], None] = lambda _path: None
        self.downloads = 0

    def connect(self, _settings: SftpSettings) -> FakeConnection:
        if self.down:
            raise SftpError("connect: Connection refused", server="fake")
        self.logins += 1
        return FakeConnection(self)


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.alive = True

    def list(self, folder: str) -> list[RemoteFile]:
        return [RemoteFile(folder, posixpath.basename(p), len(d), self.server.mtimes.get(p, 100))
                for p, d in self.server.files.items() if posixpath.dirname(p) == folder]

    def download(self, path: str, into: io.BufferedIOBase) -> int:
        data = self.server.files[path]
        into.write(data)
        self.server.downloads += 1
        self.server.after_download(path)
        return len(data)

    def remove(self, path: str) -> None:
        if self.server.fail_remove:
            raise SftpError("remove: Permission denied", path=path)
        del self.server.files[path]

    def rename(self, source: str, target: str) -> None:
        assert target not in self.server.files
        self.server.files[target] = self.server.files.pop(source)

    def exists(self, path: str) -> bool:
        return path in self.server.files or path in self.server.folders

    def stat(self, path: str) -> RemoteFile:
        if path not in self.server.files:
            raise FileNotFoundError(path)
        return RemoteFile(posixpath.dirname(path), posixpath.basename(path),
                          len(self.server.files[path]), self.server.mtimes.get(path, 100))

    def mkdir(self, path: str) -> None:
        self.server.folders.add(path)

    def close(self) -> None:
        self.alive = False


class FakeReceiver:
    """Receipts like the pipeline's: same bytes again is a duplicate, same place unacked is resumed."""

    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self.by_sha: dict[bytes, str] = {}
        self.unacked: dict[tuple[str | None, bytes], str] = {}
        self.acked: list[tuple[str, str]] = []
        self.count = 0

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        from gateway.core.pipeline import PayloadTooLarge

        for item in items:
            if item.size > self.limit:
                raise PayloadTooLarge(item, self.limit)
        out = []
        for item in items:
            data = item.path.read_bytes() if item.path else item.data
            left = self.unacked.get((item.channel_ref, data))
            if left:
                out.append(Receipt(left, resumed=True))
                continue
            tid = f"t{self.count}-{item.filename}"
            self.count += 1
            out.append(Receipt(tid, duplicate_of=self.by_sha.get(data)))
            self.by_sha.setdefault(data, tid)
            self.unacked[(item.channel_ref, data)] = tid
        return out

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        done = {r.transmission_id for r in receipts}
        self.unacked = {k: v for k, v in self.unacked.items() if v not in done}
        self.acked += [(r.transmission_id, detail) for r in receipts]


class FakeOutcomes:
    """Every transmission PROCESSED, but those named in ``failed`` (FAILED)."""

    def __init__(self) -> None:
        self.failed: set[str] = set()
        self.waiting: set[str] = set()
        #: DUPLICATE transmissions -> their originals.
        self.duplicates: dict[str, str] = {}

    def get_transmissions(self, tids):
        return {t: Row("DUPLICATE", self.duplicates[t]) if t in self.duplicates
                else Row("FAILED" if t in self.failed else "RECEIVED" if t in self.waiting
                         else "PROCESSED") for t in tids}


class Row:
    def __init__(self, status: str, duplicate_of: str | None = None) -> None:
        self.status = status
        self.duplicate_of = duplicate_of


class FakeRecords:
    def __init__(self) -> None:
        self.health: list[tuple[str, str]] = []
        self.files: set[tuple[str, int, int]] = set()

    def ok(self, channel, kind, *, partner_id=None, detail=None):
        self.health.append(("ok", detail or ""))

    def failed(self, channel, kind, error, *, partner_id=None):
        self.health.append(("failed", error))
        return len(self.health)

    def remembered(self, channel, files):
        return {f for f in files if f in self.files}

    def remember(self, channel, files):
        self.files |= {(p, z, m) for p, z, m, _ in files}


def make(server: FakeServer, receiver: FakeReceiver | None = None, **sftp) -> tuple[
        SftpChannel, FakeReceiver, FakeRecords, list[Receipt]]:
    settings = dict(host="h", user="u", password="pw", host_key="ssh-ed25519 AAAA",
                    inbound=[{"folder": "/in"}])
    settings.update(sftp)
    partner = Partner(id="acme", name="ACME", sftp=SftpSettings(**settings))
    receiver = receiver or FakeReceiver()
    records = FakeRecords()
    handed: list[Receipt] = []
    channel = SftpChannel(partner, receiver=receiver, records=records, outcomes=FakeOutcomes(),
                          on_received=handed.extend, settle=0.0, connect=server.connect,
                          retry_initial=0.5, retry_max=4)
    return channel, receiver, records, handed


def two_polls(channel: SftpChannel):
    channel.poll_once()
    return channel.poll_once()


def test_a_file_whose_removal_fails_is_processed_once_and_acknowledged_when_it_comes_again():
    """Removal refused: the order is processed (it is stored), the problem is in the health, and once removal works the file is acknowledged without a second processing."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"ORDER"
    channel, receiver, records, handed = make(server)
    result = two_polls(channel)
    assert result.problems == [] and len(handed) == 1 and server.files == {}
    server.fail_remove = True
    server.files["/in/b.edi"] = b"ORDER-B"
    result = two_polls(channel)
    assert "Permission denied" in result.problems[0]
    channel.record_ok(result)
    assert records.health[-1][0] == "failed" and "not acknowledged" in records.health[-1][1]
    assert [r.transmission_id for r in handed] == ["t0-a.edi", "t1-b.edi"]
    server.fail_remove = False
    two_polls(channel)
    assert server.files == {} and len(handed) == 2
    assert [t for t, _ in receiver.acked] == ["t0-a.edi", "t1-b.edi"]


def test_a_file_over_max_size_is_left_on_the_server_and_said_in_the_health_detail():
    """Over ``max_size``: never downloaded nor removed; the others are taken."""
    server = FakeServer()
    server.files["/in/big.edi"] = b"x" * 100
    server.files["/in/ok.edi"] = b"y"
    channel, receiver, records, handed = make(server, max_size=50)
    result = two_polls(channel)
    assert list(server.files) == ["/in/big.edi"] and len(handed) == 1
    channel.record_ok(result)
    assert records.health[-1][0] == "ok" and "big.edi (100 bytes)" in records.health[-1][1]


def test_a_payload_the_receiver_refuses_does_not_hold_back_the_others():
    """The receiver's own size limit refuses one file of a batch: the others are received."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"a" * 10
    server.files["/in/b.edi"] = b"b"
    channel, receiver, _records, handed = make(server, receiver=FakeReceiver(limit=5))
    result = two_polls(channel)
    assert [r.transmission_id for r in handed] == ["t0-b.edi"]
    assert list(server.files) == ["/in/a.edi"] and "a.edi" in result.refused[0]


def test_move_never_overwrites_a_file_of_the_same_name():
    """A second file of the same name is moved under a name carrying its transmission id."""
    server = FakeServer()
    server.files["/done/m.edi"] = b"old"
    server.files["/in/m.edi"] = b"new"
    channel, *_ = make(server, inbound=[{"folder": "/in", "after": "move",
                                         "move_to": "/done"}])
    two_polls(channel)
    assert server.files["/done/m.edi"] == b"old"
    assert [p for p in server.files if p.startswith("/done/m.t")] != []


def test_leave_remembers_files_and_does_not_take_them_again():
    """after = leave: taken once, remembered by path, size and mtime."""
    server = FakeServer()
    server.files["/in/l.edi"] = b"L"
    channel, receiver, records, handed = make(server, inbound=[{"folder": "/in",
                                                                "after": "leave"}])
    for _ in range(4):
        channel.poll_once()
    assert len(handed) == 1 and records.files == {("/in/l.edi", 1, 100)}
    assert "/in/l.edi" in server.files


def test_backoff_doubles_up_to_its_cap_and_one_session_serves_many_polls():
    """Failures wait 0.5, 1, 2, 4, 4 s; while healthy, polls reuse one login."""
    channel, *_ = make(FakeServer())
    waits = []
    for n in range(1, 6):
        channel.failures = n
        waits.append(channel.backoff())
    assert waits == [0.5, 1, 2, 4, 4]
    server = FakeServer()
    channel, *_ = make(server)
    for _ in range(5):
        channel.poll_once()
    assert server.logins == 1


def test_a_server_that_is_down_raises_and_the_next_poll_connects_again():
    """A failed connect raises ``SftpError``; once the server is back a new session is made."""
    server = FakeServer()
    channel, *_ = make(server)
    channel.poll_once()
    server.down = True
    channel._conn.alive = False  # the session died with the server
    with pytest.raises(SftpError, match="Connection refused"):
        channel.poll_once()
    server.down = False
    channel.poll_once()
    assert server.logins == 2


def test_a_file_stays_on_the_server_until_its_transmission_is_processed():
    """Received but not yet processed: the file is held on the server (and not taken again); once processed it is removed and acknowledged."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"ORDER"
    channel, receiver, _records, handed = make(server)
    channel.outcomes.waiting.add("t0-a.edi")
    for _ in range(4):
        channel.poll_once()
    assert list(server.files) == ["/in/a.edi"] and len(handed) == 1 and receiver.acked == []
    channel.outcomes.waiting.clear()
    channel.poll_once()
    assert server.files == {} and [t for t, _ in receiver.acked] == ["t0-a.edi"]


@pytest.mark.parametrize("on_failure", ["move", "delete", "keep"])
def test_a_failed_file_is_moved_aside_deleted_or_kept_as_configured(on_failure):
    """on_failure: move (default, into <folder>/failed), delete, or keep (remembered, not taken again); a processed file is still deleted."""
    server = FakeServer()
    server.files["/in/bad.edi"] = b"BAD"
    server.files["/in/good.edi"] = b"GOOD"
    inbound = {"folder": "/in"} if on_failure == "move" else {"folder": "/in",
                                                               "on_failure": on_failure}
    channel, receiver, records, handed = make(server, inbound=[inbound])
    channel.outcomes.failed = {"t0-bad.edi"}
    for _ in range(4):
        channel.poll_once()
    assert len(handed) == 2
    expected = {"move": {"/in/failed/bad.edi": b"BAD"}, "delete": {},
                "keep": {"/in/bad.edi": b"BAD"}}[on_failure]
    assert server.files == expected
    detail = dict(receiver.acked)["t0-bad.edi"]
    assert detail.startswith("not processed: ")
    if on_failure == "keep":
        assert records.files == {("/in/bad.edi", 3, 100)}


def test_settle_of_the_partner_profile_wins_over_the_gateway_default():
    """[sftp] settle of the profile is used; without it the gateway's default (5 s unless set)."""
    from gateway.config import GatewaySettings

    assert GatewaySettings().sftp.settle == 5.0
    assert GatewaySettings(sftp={"settle": 8}).sftp.settle == 8.0
    channel, *_ = make(FakeServer(), settle=2.5)
    assert channel.settling.settle == 2.5
    channel, *_ = make(FakeServer())
    assert channel.settling.settle == 0.0  # the default make() passes
    with pytest.raises(ValueError):
        SftpSettings(host="h", user="u", password="pw", host_key="ssh-ed25519 AAAA",
                     settle=0)


def test_a_file_growing_during_the_download_is_not_stored_and_is_taken_whole_later():
    """The partner appends between the download and the look after it: nothing of the partial read is received or handed to processing; once settled again the whole file is taken."""
    from structlog.testing import capture_logs

    server = FakeServer()
    server.files["/in/a.csv"] = b"sku;qty\nA;1\n"

    def append_once(path: str) -> None:
        if server.downloads == 1:
            server.files[path] += b"B;2\n"

    server.after_download = append_once
    channel, receiver, _records, handed = make(server)
    with capture_logs() as logs:
        result = two_polls(channel)
    assert receiver.count == 0 and handed == [] and receiver.by_sha == {}
    assert "a.csv (changed while read)" in result.kept
    (event,) = [e for e in logs if e["event"] == "sftp_file_changed_while_read"]
    assert event["read"] == (12, 100) and event["now"] == (16, 100)
    assert event["stored"] is False
    two_polls(channel)
    assert list(receiver.by_sha) == [b"sku;qty\nA;1\nB;2\n"] and len(handed) == 1
    assert server.files == {}


def test_a_file_rewritten_to_the_same_size_during_the_download_is_not_stored():
    """Same size, newer mtime after the download (rewritten in place): the read is discarded; the file is taken once it settles."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"OLD"

    def rewrite_once(path: str) -> None:
        if server.downloads == 1:
            server.files[path], server.mtimes[path] = b"NEW", 101

    server.after_download = rewrite_once
    channel, receiver, _records, handed = make(server)
    two_polls(channel)
    assert handed == [] and receiver.by_sha == {}
    two_polls(channel)
    assert list(receiver.by_sha) == [b"NEW"] and server.files == {}


def test_a_download_shorter_than_listed_is_not_stored_and_a_file_gone_is_skipped():
    """Fewer bytes read than listed (the stat after agrees with the listing) is not a whole file; a file removed by someone else before the look after the download is skipped."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"WHOLE"
    server.files["/in/b.edi"] = b"GONE"
    channel, receiver, _records, handed = make(server)
    conn = channel._connection()
    short = conn.download

    def download(path: str, into: io.BufferedIOBase) -> int:
        got = short(path, into)
        if path == "/in/b.edi":
            del server.files[path]
            return got
        return got - 1

    conn.download = download  # type: ignore[method-assign]
    two_polls(channel)
    assert handed == [] and receiver.by_sha == {} and list(server.files) == ["/in/a.edi"]


def test_a_spooled_download_of_a_changed_file_leaves_no_spool_file(tmp_path: Path):
    """A large file (spooled to disk) that changed during its download: discarded, and its spool file removed."""
    server = FakeServer()
    server.files["/in/big.edi"] = b"x" * 64

    def append_once(path: str) -> None:
        if server.downloads == 1:
            server.files[path] += b"y"

    server.after_download = append_once
    channel, receiver, _records, handed = make(server)
    channel.stream_above, channel.spool = 16, tmp_path
    two_polls(channel)
    assert handed == [] and list(tmp_path.iterdir()) == []
    two_polls(channel)
    assert list(receiver.by_sha) == [b"x" * 64 + b"y"]


@pytest.mark.parametrize("original", ["FAILED", "RECEIVED", "PROCESSED"])
def test_a_duplicate_follows_its_originals_outcome(original):
    """The same bytes again under another name: moved aside like its FAILED original, left in place while the original waits for processing, deleted when the original was processed."""
    server = FakeServer()
    server.files["/in/a.edi"] = b"SAME"
    channel, receiver, _records, handed = make(server)
    two_polls(channel)
    assert server.files == {}
    server.files["/in/b.edi"] = b"SAME"
    channel.outcomes.duplicates = {"t1-b.edi": "t0-a.edi"}
    channel.outcomes.failed = {"t0-a.edi"} if original == "FAILED" else set()
    channel.outcomes.waiting = {"t0-a.edi"} if original == "RECEIVED" else set()
    two_polls(channel)
    assert len(handed) == 1 and receiver.count == 2
    expected = {"FAILED": {"/in/failed/b.edi"}, "RECEIVED": {"/in/b.edi"},
                "PROCESSED": set()}[original]
    assert set(server.files) == expected
