"""The SFTP channel against a real OpenSSH sshd (``tests/integration/sshd.py``) and a real
``Gateway`` pipeline on SQLite: taking files exactly once, acknowledging last, the pinned
host key, health and recovery, and CONTRLs put back under a temporary name.

The channel is driven one poll at a time (``poll_once``) where the order of events matters,
and by its own ``run`` loop where back-off and recovery are the point.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.bench_spine import interchange
from gateway.app import Gateway
from gateway.channels.outbound import OutboundDispatcher
from gateway.channels.sftp.channel import SftpChannel
from gateway.channels.sftp.connection import SftpConnection
from gateway.channels.sftp.errors import HostKeyRefused
from gateway.channels.sftp.sender import SftpSender
from gateway.config import (
    EdifactPolicy,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    PartnerOutbound,
    SftpSettings,
    UnbIdentifier,
)
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt
from gateway.store.channels import ChannelRecords
from gateway.store.db import LogFilter
from gateway.store.records import OutboundRow
from tests.integration.sshd import SshServer, keygen

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SENDER = "5412345000013"


def order(number: str, icref: str = "1001") -> bytes:
    """A small EANCOM ORDERS interchange from SENDER (synthetic)."""
    body = ["UNH+1+ORDERS:D:96A:UN:EAN008", f"BGM+220+{number}+9", "DTM+137:20261127:102",
            "NAD+BY+5412345000013::9", "NAD+SU+5400000000003::9",
            "LIN+1++4000862141404:EN", "QTY+21:5", "UNS+S", "UNT+9+1"]
    segs = ["UNA:+.? '", f"UNB+UNOC:3+{SENDER}:14+5400000000003:14+261127:1200+{icref}'"]
    segs += [s + "'" for s in body] + [f"UNZ+1+{icref}'"]
    return "\n".join(segs).encode("latin-1")


@pytest.fixture
def server(tmp_path) -> Iterator[SshServer]:
    with SshServer.start(tmp_path / "sshd") as server:
        yield server


def make_partner(sftp: SftpSettings, **policy: Any) -> Partner:
    return Partner(id="acme", name="ACME", channels=["sftp"], identifiers=Identifiers(
        unb=[UnbIdentifier(id=SENDER, qualifier="14")]), sftp=sftp,
        outbound=PartnerOutbound(channel="sftp"), edifact=EdifactPolicy(**policy))


def open_gateway(tmp_path: Path, partner: Partner, store_url: str | None = None) -> Gateway:
    settings = GatewaySettings(
        store={"url": store_url or f"sqlite:///{tmp_path / 'edigw.sqlite3'}"},
        archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    return Gateway.open(settings, partners=PartnerDirectory([partner]))


class Harness:
    """A gateway, a channel for one partner, and the receipts handed to processing."""

    def __init__(self, tmp_path: Path, server: SshServer, *, receiver: Any = None,
                 connect: Callable[[SftpSettings], Any] = SftpConnection.open,
                 stream_above: int = 16 << 20, policy: dict[str, Any] | None = None,
                 **settings: Any) -> None:
        self.server = server
        self.partner = make_partner(server.settings(**settings), **(policy or {}))
        self.gw = open_gateway(tmp_path, self.partner)
        self.records = ChannelRecords(self.gw.store)
        self.processed: list[str] = []
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.channel = self.new_channel(receiver=receiver, connect=connect,
                                        stream_above=stream_above)

    def new_channel(self, *, receiver: Any = None,
                    connect: Callable[[SftpSettings], Any] = SftpConnection.open,
                    stream_above: int = 16 << 20, settle: float | None = 0.2) -> SftpChannel:
        """A channel on the harness's gateway; ``settle=None``: the channel's own default."""
        timing: dict[str, Any] = {} if settle is None else {"settle": settle}
        return SftpChannel(self.partner, receiver=receiver or self.gw.pipeline,
                           records=self.records, outcomes=self.gw.store, on_received=self.process,
                           stream_above=stream_above, spool=self.spool, connect=connect,
                           retry_initial=0.1, retry_max=0.5, **timing)

    def process(self, receipts: list[Receipt]) -> None:
        tids = [r.transmission_id for r in receipts]
        self.processed += tids
        self.gw.pipeline.process_many(tids)

    def poll_until(self, condition: Callable[[], bool], timeout: float = 10.0,
                   channel: SftpChannel | None = None) -> None:
        channel = channel or self.channel
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met within the time-out")
            channel.poll_once()
            time.sleep(0.05)

    def transmissions(self) -> list[Any]:
        return sorted(self.gw.store.log(LogFilter(limit=100_000)),
                      key=lambda r: (r.received_at, r.id))

    def documents(self) -> list[Any]:
        return [d for t in self.transmissions() for d in self.gw.store.documents_of(t.id)]

    def close(self) -> None:
        self.channel.close()
        self.gw.close()


@pytest.fixture
def harness(tmp_path, server) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        h = Harness(tmp_path / f"gw{len(made)}", server, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


class FailingOnce:
    """A receiver whose first ``receive_many`` fails as a store outage would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        self.calls += 1
        if self.calls == 1:
            raise StoreError("database is locked (simulated)")
        return self.inner.receive_many(items)

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        self.inner.acknowledged(receipts, detail)


# -- taking files ------------------------------------------------------------------------------

def test_file_is_removed_only_after_it_is_stored(harness):
    """A receive that fails leaves the remote file in place and records nothing; the next poll stores it, then removes it, and its order is processed once."""
    h = harness()
    h.channel.receiver = FailingOnce(h.gw.pipeline)
    h.server.put("in/order-1.edi", order("PO-1"))
    with pytest.raises(StoreError):
        h.poll_until(lambda: h.channel.receiver.calls >= 1)
    assert h.server.files("in") == ["order-1.edi"]
    assert h.transmissions() == []

    h.poll_until(lambda: h.server.files("in") == [])
    (t,) = h.transmissions()
    assert (t.channel, t.filename, t.partner_id) == ("sftp", "order-1.edi", "acme")
    assert t.acknowledged_at is not None
    assert t.channel_ref == f"sftp://{h.channel.server}{h.server.path('in/order-1.edi')}"
    events = [e["event"] for e in h.gw.store.events(t.id)]
    assert events.index("received") < events.index("acknowledged"), events
    assert [d.business_number for d in h.documents()] == ["PO-1"]


def test_growing_file_is_not_taken_until_stable(harness):
    """A file still being appended to (a piece every 0.4 s, for 3 s) is left alone until its size and mtime stop changing for the settle time (default: over SFTP's one-second mtime); what is taken is the whole file."""
    h = harness()
    h.channel = h.new_channel(settle=SftpChannel.__init__.__kwdefaults__["settle"])
    data = order("PO-GROW")  # written in pieces below
    target = Path(h.server.path("in/growing.edi"))
    step = len(data) // 8 + 1
    pieces = [data[i:i + step] for i in range(0, len(data), step)]
    done = threading.Event()

    def write() -> None:
        with open(target, "wb") as fh:
            for piece in pieces:
                fh.write(piece)
                fh.flush()
                time.sleep(0.4)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not done.is_set():
            h.channel.poll_once()
            assert h.transmissions() == [], "taken while still being written"
            time.sleep(0.05)
    finally:
        writer.join()
    h.poll_until(lambda: h.server.files("in") == [])
    (t,) = h.transmissions()
    assert h.gw.archive.get(t.sha256) == data


@pytest.mark.parametrize("settle", [None, 0.5], ids=["default-settle", "settle-too-short"])
def test_file_written_in_place_with_pauses_is_never_lost(harness, settle):
    """A partner writes 10 orders under the final name in 4 chunks 3.3 s apart, with after = delete: at the end the whole file was read (10 orders stored) or it is still whole on the server (a half taken with a too-short settle fails and is moved aside, the writer finishing it there); never half taken and deleted."""
    h = harness()
    h.channel = h.new_channel(settle=settle)
    data = interchange("IC-PAUSE", 1, 10)
    target = Path(h.server.path("in/orders.edi"))
    step = len(data) // 4 + 1
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    assert len(chunks) == 4
    done = threading.Event()

    def write() -> None:
        with open(target, "wb") as fh:
            for n, chunk in enumerate(chunks):
                if n:
                    time.sleep(3.3)
                fh.write(chunk)
                fh.flush()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 30:
            h.channel.poll_once()
            if done.is_set() and h.server.files("in") in ([], ["failed"]):
                break
            time.sleep(0.2)
    finally:
        writer.join()
    stored = [h.gw.archive.get(t.sha256) for t in h.transmissions()]
    on_server = [p.read_bytes() for p in h.server.remote.rglob("*") if p.is_file()]
    numbers = {d.business_number for d in h.documents()}
    assert data in stored or data in on_server, (
        f"lost: stored {[len(b) for b in stored]} bytes, on the server "
        f"{[len(b) for b in on_server]}, of {len(data)}")
    if data in stored:
        assert numbers == {f"PO{n:09d}" for n in range(1, 11)}, numbers


class AppendingConnection:
    """The real session; ``write`` (the partner appending) runs once, right after the first
    download and before the channel looks at the file again."""

    def __init__(self, settings: SftpSettings, write: Callable[[str], None]) -> None:
        self.conn = SftpConnection.open(settings)
        self.write = write
        self.downloads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    @property
    def alive(self) -> bool:
        return self.conn.alive

    def download(self, path: str, into: Any) -> int:
        got = self.conn.download(path, into)
        self.downloads += 1
        if self.downloads == 1:
            self.write(path)
        return got


def test_file_growing_during_the_download_is_not_stored_and_is_taken_whole_later(harness):
    """The partner appends to an EDIFACT file cut at a segment boundary while the channel downloads it: the partial read is never stored (no transmission, nothing archived, nothing processed); the whole file is taken at a later poll, once settled again, and removed."""
    data = order("PO-GROWING", "4102")
    lines = data.split(b"\n")
    head = b"\n".join(lines[:6]) + b"\n"  # whole segments: UNA to the first NAD
    assert data.startswith(head) and head.endswith(b"'\n")
    rest = data[len(head):]
    made: list[AppendingConnection] = []

    def connect(settings: SftpSettings) -> AppendingConnection:
        def append(path: str) -> None:
            with open(path, "ab") as fh:
                fh.write(rest)

        made.append(AppendingConnection(settings, append))
        return made[-1]

    h = harness(connect=connect)
    h.server.put("in/growing.edi", head)
    h.poll_until(lambda: made and made[0].downloads >= 1)
    assert h.transmissions() == [] and h.processed == []
    assert h.server.files("in") == ["growing.edi"]
    h.poll_until(lambda: h.server.files("in") == [])
    (t,) = h.transmissions()
    assert h.gw.archive.get(t.sha256) == data
    assert [d.business_number for d in h.documents()] == ["PO-GROWING"]


def test_file_changed_while_read_is_kept_and_read_again(harness):
    """The partner writes more right after the channel read and stored the file (after the look that follows the download): the file is not removed; the half read is a transmission of its own, acknowledged as changed while read; the whole file is read at a later poll and then removed."""
    data = order("PO-LATE", "4101")
    half, rest = data[:len(data) // 2], data[len(data) // 2:]

    class AppendAfterReceive:
        """The gateway's receiver; the partner appends the rest right after the first
        durable receive."""

        def __init__(self, inner: Any, path: str) -> None:
            self.inner, self.path, self.appended = inner, path, False

        def receive_many(self, items: list[Incoming]) -> list[Receipt]:
            receipts = self.inner.receive_many(items)
            if not self.appended:
                self.appended = True
                with open(self.path, "ab") as fh:
                    fh.write(rest)
            return receipts

        def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
            self.inner.acknowledged(receipts, detail)

    h = harness()
    path = h.server.put("in/late.edi", half)
    h.channel.receiver = AppendAfterReceive(h.gw.pipeline, str(path))
    h.poll_until(lambda: len(h.transmissions()) == 1)
    assert h.server.files("in") == ["late.edi"], "changed while read: kept on the server"
    (first,) = h.transmissions()
    assert h.gw.archive.get(first.sha256) == half and first.acknowledged_at is not None
    assert any("changed" in (e["detail"] or "") and "while read" in (e["detail"] or "")
               for e in h.gw.store.events(first.id)), h.gw.store.events(first.id)
    h.poll_until(lambda: h.server.files("in") == [])
    whole = [t for t in h.transmissions() if t.id != first.id]
    assert [h.gw.archive.get(t.sha256) for t in whole] == [data]
    assert [d.business_number for d in h.documents()] == ["PO-LATE"]


def test_file_that_fails_to_parse_is_moved_aside_not_deleted(harness):
    """A file whose transmission FAILED is moved into <folder>/failed (created), not deleted; its timeline says where it went."""
    h = harness()
    bad = order("PO-BAD", "4201").replace(b"UNZ+1+4201'", b"")  # no UNZ: truncated
    h.server.put("in/bad.edi", bad)
    h.poll_until(lambda: "bad.edi" not in h.server.files("in"))
    assert h.server.files("in") == ["failed"]
    assert (Path(h.server.path("in/failed/bad.edi"))).read_bytes() == bad
    (t,) = h.transmissions()
    assert t.status == "FAILED" and t.acknowledged_at is not None
    assert any("moved to" in (e["detail"] or "") and "/failed/bad.edi" in (e["detail"] or "")
               for e in h.gw.store.events(t.id)), h.gw.store.events(t.id)
    h.server.put("in/bad.edi", bad + b"\n")  # sent again, failing again: never overwritten
    h.poll_until(lambda: "bad.edi" not in h.server.files("in"))
    assert len(h.server.files("in/failed")) == 2


def test_temporary_names_and_other_patterns_are_never_taken(harness):
    """Names with a temporary prefix or suffix, or matching no pattern, stay; the others go."""
    h = harness(inbound=[{"folder": "in", "patterns": ["*.edi", "ORD*"]}])
    for name in (".upload.edi", "~lock.edi", "a.edi.part", "b.edi.tmp", "notes.txt"):
        h.server.put(f"in/{name}", b"x")
    h.server.put("in/a.edi", order("PO-A", "2001"))
    h.server.put("in/ORD42", order("PO-B", "2002"))
    h.poll_until(lambda: "a.edi" not in h.server.files("in")
                 and "ORD42" not in h.server.files("in"))
    for _ in range(3):
        h.channel.poll_once()
        time.sleep(0.1)
    assert h.server.files("in") == sorted([".upload.edi", "~lock.edi", "a.edi.part",
                                           "b.edi.tmp", "notes.txt"])
    assert sorted(t.filename for t in h.transmissions()) == ["ORD42", "a.edi"]


def test_max_files_per_poll_takes_the_oldest_first(harness):
    """With max_files = 2 a poll takes two files, oldest first, and the next poll goes on at once."""
    h = harness(max_files=2)
    for i in range(5):
        path = h.server.put(f"in/f{i}.edi", order(f"PO-{i}", f"30{i}"))
        t = 1_700_000_000 + (5 - i) * 10  # f4 is the oldest
        os.utime(path, (t, t))
    time.sleep(0.05)
    h.channel.poll_once()
    time.sleep(0.25)
    result = h.channel.poll_once()
    assert result.taken == 2 and result.full
    assert h.server.files("in") == ["f0.edi", "f1.edi", "f2.edi"]
    h.poll_until(lambda: h.server.files("in") == [])
    assert len(h.transmissions()) == 5


@pytest.mark.parametrize("crash_at", ["processing", "removal"])
def test_crash_before_removal_gives_no_second_order(harness, crash_at):
    """Stored, then a crash before the remote delete (before processing, or at the delete, which waits for the outcome): after the restart the same file comes again and is only acknowledged; the same bytes under a new name are a duplicate; one order in all."""

    class Crash(BaseException):
        pass

    class CrashOnRemove:
        def __init__(self, settings: SftpSettings) -> None:
            self.conn = SftpConnection.open(settings)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

        @property
        def alive(self) -> bool:
            return self.conn.alive

        def remove(self, path: str) -> None:
            raise Crash(path)

    def crash(receipts: list[Receipt]) -> None:
        raise Crash("processing")

    h = harness(connect=CrashOnRemove)
    if crash_at == "processing":
        h.channel.on_received = crash
    data = order("PO-CRASH", "4001")
    h.server.put("in/crash.edi", data)
    with pytest.raises(Crash):
        h.poll_until(lambda: False, timeout=5)
    assert h.server.files("in") == ["crash.edi"]
    (t,) = h.transmissions()
    left = "RECEIVED" if crash_at == "processing" else "PROCESSED"
    assert (t.status, t.acknowledged_at) == (left, None)
    h.channel.close()

    # The restart: work left RECEIVED is processed, then the channel polls again.
    assert h.gw.pipeline.resume() == (1 if left == "RECEIVED" else 0)
    h.processed.clear()  # a new process
    again = h.new_channel()
    h.poll_until(lambda: h.server.files("in") == [], channel=again)
    assert [x.id for x in h.transmissions()] == [t.id], "acknowledged, not received again"
    assert h.processed == [], "a resumed file is not handed to processing again"

    h.server.put("in/crash-resent.edi", data)  # the partner sends the same bytes again
    h.poll_until(lambda: h.server.files("in") == [], channel=again)
    first, dup = h.transmissions()
    assert dup.status == "DUPLICATE" and dup.duplicate_of == first.id
    assert [d.business_number for d in h.documents()] == ["PO-CRASH"]
    again.close()


def test_after_move_puts_the_file_into_the_move_folder_without_overwriting(harness):
    """after = move: the file goes to move_to once stored; a second file of the same name does not overwrite the first."""
    h = harness(inbound=[{"folder": "in", "after": "move", "move_to": "done"}])
    h.server.put("in/m.edi", order("PO-M1", "5001"))
    h.poll_until(lambda: h.server.files("in") == [])
    h.server.put("in/m.edi", order("PO-M2", "5002"))
    h.poll_until(lambda: h.server.files("in") == [])
    moved = h.server.files("done")
    assert len(moved) == 2 and "m.edi" in moved, moved
    assert sorted(d.business_number for d in h.documents()) == ["PO-M1", "PO-M2"]


def test_after_leave_takes_a_file_once_and_again_when_it_changes(harness):
    """after = leave: the file stays on the server and is taken once, however often polled; new content under the same name is taken again."""
    h = harness(inbound=[{"folder": "in", "after": "leave"}])
    path = h.server.put("in/l.edi", order("PO-L1", "6001"))
    h.poll_until(lambda: len(h.transmissions()) == 1)
    for _ in range(4):
        h.channel.poll_once()
        time.sleep(0.25)
    assert h.server.files("in") == ["l.edi"]
    assert len(h.transmissions()) == 1
    # A second channel (a restart) remembers it from the store, not from memory.
    fresh = h.new_channel()
    for _ in range(3):
        fresh.poll_once()
        time.sleep(0.25)
    assert len(h.transmissions()) == 1
    path.write_bytes(order("PO-L2", "6002"))
    h.poll_until(lambda: len(h.transmissions()) == 2, channel=fresh)
    assert sorted(d.business_number for d in h.documents()) == ["PO-L1", "PO-L2"]
    fresh.close()


def test_large_file_is_spooled_to_disk_not_held_in_memory(harness):
    """A file over stream_above reaches the receiver as a spool file (Incoming.path), is archived whole, and the spool file is gone afterwards."""
    seen: list[Incoming] = []
    h = harness(stream_above=1000)

    class Watching:
        def receive_many(self, items: list[Incoming]) -> list[Receipt]:
            seen.extend(items)
            return h.gw.pipeline.receive_many(items)

        def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
            h.gw.pipeline.acknowledged(receipts, detail)

    h.channel.receiver = Watching()
    big = order("PO-BIG", "7001") + b"\n" * 5000
    h.server.put("in/big.edi", big)
    h.server.put("in/small.edi", order("PO-SMALL", "7002"))
    h.poll_until(lambda: h.server.files("in") == [])
    by_name = {i.filename: i for i in seen}
    assert by_name["big.edi"].path is not None and by_name["big.edi"].data == b""
    assert by_name["small.edi"].path is None
    assert list(h.spool.iterdir()) == []
    t = next(t for t in h.transmissions() if t.filename == "big.edi")
    assert h.gw.archive.get(t.sha256) == big


# -- the server's identity, health and recovery ------------------------------------------------

def test_wrong_host_key_is_refused_before_login(harness, tmp_path, server):
    """A server presenting another key than the pinned one is refused, naming both fingerprints; no login reaches it, and the health records the refusal."""
    other = keygen(tmp_path / "other_host_key")
    h = harness()
    h.partner = h.partner.model_copy(update={"sftp": h.partner.sftp.model_copy(
        update={"host_key": other})})
    channel = h.new_channel()
    server.put("in/x.edi", order("PO-X"))
    log_before = server.log.read_text()
    stop = asyncio.Event()

    async def run() -> None:
        task = asyncio.create_task(channel.run(stop))
        while (h.records.get(channel.name) or _never()).consecutive_failures < 2:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(run(), 20))
    health = h.records.get(channel.name)
    assert health is not None and not health.healthy
    assert "host key refused" in health.last_error
    from gateway.channels.sftp.hostkey import PinnedHostKeys, fingerprint

    expected = fingerprint(PinnedHostKeys.from_line("x", other).keys[0])
    presented = fingerprint(PinnedHostKeys.from_line("x", server.host_key_line).keys[0])
    assert expected in health.last_error and presented in health.last_error
    with pytest.raises(HostKeyRefused) as refused:
        SftpConnection.open(h.partner.sftp)
    assert refused.value.expected == [f"ssh-ed25519 {expected}"]
    assert refused.value.presented == presented
    new_log = server.log.read_text()[len(log_before):]
    assert "Accepted" not in new_log and "Failed" not in new_log, new_log
    assert server.files("in") == ["x.edi"]


def test_edigw_channels_shows_both_fingerprints_of_a_refused_host_key(harness, tmp_path, server):
    """`edigw channels` prints the whole host-key refusal, the pinned and the presented fingerprint, so the operator can check them with the partner and pin."""
    from click.testing import CliRunner

    from gateway.channels.sftp.hostkey import PinnedHostKeys, fingerprint
    from gateway.cli import main

    other = keygen(tmp_path / "other_host_key")
    h = harness()
    h.partner = h.partner.model_copy(update={"sftp": h.partner.sftp.model_copy(
        update={"host_key": other})})
    channel = h.new_channel()
    with pytest.raises(HostKeyRefused) as refused:
        channel.poll_once()
    channel.failures = 1
    channel._record_failed(str(refused.value))
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text(
        'id = "acme"\nname = "ACME"\nchannels = ["sftp"]\n[sftp]\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nuser = "{server.user}"\nkey_file = "{server.client_key}"\n'
        f'host_key = "{other}"\n')
    config = tmp_path / "gateway.toml"
    config.write_text(f'partners = "{partners}"\ninbox = []\n'
                      f'[store]\nurl = "{h.gw.settings.store.url}"\n')
    out = CliRunner().invoke(main, ["--config", str(config), "channels"])
    assert out.exit_code == 0, out.output
    expected = fingerprint(PinnedHostKeys.from_line("x", other).keys[0])
    presented = fingerprint(PinnedHostKeys.from_line("x", server.host_key_line).keys[0])
    assert "host key refused" in out.output
    assert expected in out.output and presented in out.output, out.output


def _never() -> Any:
    class Nothing:
        consecutive_failures = 0
    return Nothing()


def test_known_hosts_file_pins_the_key_for_host_and_port(tmp_path, server):
    """A known_hosts file with an entry for [127.0.0.1]:port connects; one for another port is an error saying so."""
    good = tmp_path / "known_hosts"
    good.write_text(f"[127.0.0.1]:{server.port} {server.host_key_line}\n")
    settings = server.settings().model_copy(update={"host_key": None, "known_hosts": good})
    SftpConnection.open(settings).close()
    bad = tmp_path / "known_hosts_other"
    bad.write_text(f"[127.0.0.1]:{server.port + 1} {server.host_key_line}\n")
    from gateway.channels.sftp.errors import SftpError

    with pytest.raises(SftpError, match=r"has no key for \[127\.0\.0\.1\]"):
        SftpConnection.open(settings.model_copy(update={"known_hosts": bad}))


def test_server_going_away_shows_in_health_and_channel_recovers(harness, server):
    """With the server stopped the channel's health counts failures with the error; when it comes back the channel reconnects by itself and takes what waited."""
    h = harness()
    channel = h.channel
    server.put("in/before.edi", order("PO-BEFORE", "8001"))
    stop = asyncio.Event()
    seen_failures: list[int] = []

    async def scenario() -> None:
        task = asyncio.create_task(channel.run(stop))
        try:
            await _until(lambda: server.files("in") == [] and _healthy(h, channel), 15)
            await asyncio.to_thread(server.stop)
            await _until(lambda: _failures(h, channel) >= 3, 15)
            seen_failures.append(_failures(h, channel))
            server.put("in/after.edi", order("PO-AFTER", "8002"))  # waits on the disk
            await asyncio.to_thread(server.restart)
            await _until(lambda: server.files("in") == [] and _healthy(h, channel), 15)
        finally:
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen_failures and seen_failures[0] >= 3
    health = h.records.get(channel.name)
    assert health.healthy and health.consecutive_failures == 0
    assert sorted(d.business_number for d in h.documents()) == ["PO-AFTER", "PO-BEFORE"]


def test_stopped_sshd_answers_no_one_not_even_a_logged_in_session(server):
    """``SshServer.stop`` really takes the server away: a fresh connection is refused and a session logged in before is broken (the outage tests above rely on it)."""
    import socket

    from gateway.channels.sftp.errors import SftpError

    conn = SftpConnection.open(server.settings())
    try:
        assert conn.list(server.path("in")) == []
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        with pytest.raises(SftpError):
            conn.list(server.path("in"))
    finally:
        conn.close()


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the time-out")
        await asyncio.sleep(0.05)


def _failures(h: Harness, channel: SftpChannel) -> int:
    health = h.records.get(channel.name)
    if health is None:
        return 0
    if health.consecutive_failures and health.last_error:
        assert "Connection refused" in health.last_error or "connect" in health.last_error, \
            health.last_error
    return health.consecutive_failures


def _healthy(h: Harness, channel: SftpChannel) -> bool:
    health = h.records.get(channel.name)
    return health is not None and health.healthy


def test_one_session_is_reused_across_polls(harness, server):
    """While the server answers, polls share one SSH session (one login in the server's log)."""
    h = harness()
    for _ in range(5):
        h.channel.poll_once()
    assert server.log.read_text().count("Accepted publickey") == 1


def test_secrets_never_reach_the_logs(harness, server, tmp_path, caplog):
    """A key passphrase is used to log in but appears in no log record (paramiko's debug log included) and in no error."""
    passphrase = "s3cret-Passphrase-42"
    key = tmp_path / "client_with_passphrase"
    pub = keygen(key, passphrase=passphrase)
    (server.root / "keys" / "authorized_keys").write_text(pub + "\n")
    settings = server.settings(key_file=key, key_passphrase=passphrase)
    caplog.set_level(logging.DEBUG)
    SftpConnection.open(settings).close()
    from gateway.channels.sftp.errors import SftpError

    with pytest.raises(SftpError) as wrong:
        SftpConnection.open(settings.model_copy(update={"key_file": server.client_key,
                                                        "key_passphrase": None}))
    assert "login refused" in str(wrong.value)
    assert passphrase not in repr(settings)
    assert any(r.name.startswith("paramiko") for r in caplog.records)
    assert all(passphrase not in r.getMessage() for r in caplog.records)
    assert passphrase not in str(wrong.value)


# -- outbound ------------------------------------------------------------------------------------

def test_contrl_appears_in_outbound_folder_only_under_its_final_name(harness, server):
    """A CONTRL for an order goes to the partner's outbound folder: while it is being written only a dot-name exists; the final name appears complete; sending again does not duplicate it."""
    h = harness(outbound_folder="out", policy={"contrl": "always"})
    h.server.put("in/o.edi", order("PO-C", "9001"))
    h.poll_until(lambda: h.server.files("in") == [])
    (t,) = h.transmissions()
    (row,) = h.gw.store.outbound_of(t.id)
    # The gateway's own dispatcher (it has the sftp sender) put it right after processing.
    assert row.channel == "sftp" and row.status in ("PENDING", "DELIVERED")

    out = Path(server.path("out"))
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for p in list(out.iterdir()):
                try:
                    seen.append((p.name, p.stat().st_size))
                except FileNotFoundError:
                    pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sender = SftpSender()
    try:
        dispatcher = OutboundDispatcher(h.gw.store, h.gw.archive, senders={"sftp": sender},
                                        partner=h.gw.partners.get)
        assert dispatcher.deliver_pending() == (1 if row.status == "PENDING" else 0)
        # A big payload through the same sender, to see it while it is being written.
        big = b"UNA:+.? 'UNB+UNOC:3+X+Y+261127:1200+1'" + b"X" * (4 << 20)
        fake = OutboundRow(**{**row.as_dict(), "filename": "BIG.edi", "id": "big"})
        sender.send(fake, big, h.partner)
    finally:
        stop.set()
        watcher.join()
    (sent,) = h.gw.store.outbound_of(t.id)
    assert sent.status == "DELIVERED" and "put to sftp://" in (sent.detail or ""), sent
    data = h.gw.archive.get(row.sha256)
    assert (out / row.filename).read_bytes() == data
    for name, size in seen:
        assert name in (row.filename, "BIG.edi") or (name.startswith(".") and
                                                     name.endswith(".part")), name
        if name == "BIG.edi":
            assert size == len(big), "the final name appeared before the file was complete"
    assert sorted(server.files("out")) == sorted([row.filename, "BIG.edi"])

    # Sent again (a crash after the rename, before the row was marked): not duplicated.
    sender.send(row, data, h.partner)
    assert sorted(server.files("out")) == sorted([row.filename, "BIG.edi"])
    # Other bytes under the same name never overwrite the first.
    sender.send(row, data + b"\n", h.partner)
    stem, _, ext = row.filename.rpartition(".")
    assert f"{stem}.2.{ext}" in server.files("out")
    sender.close()


@pytest.mark.parametrize("crash", [False, True], ids=["kept", "crash-before-keep"])
def test_failed_file_kept_on_the_server_is_neither_deleted_nor_processed_again_after_a_restart(
        harness, crash):
    """on_failure = keep: a FAILED file stays on the server; after a restart (also one that came between its outcome and the keep) it is not received nor processed again; the same bytes written again (new mtime) are recorded as a DUPLICATE of the failed transmission and still kept, never deleted."""

    class Crash(BaseException):
        pass

    h = harness(inbound=[{"folder": "in", "on_failure": "keep"}])
    bad = order("PO-KEEP", "4301").replace(b"UNZ+1+4301'", b"")  # no UNZ: fails to parse
    path = h.server.put("in/bad.edi", bad)
    if crash:
        def crash_at_keep(channel: str, files: list[Any]) -> None:
            raise Crash(channel)

        h.channel.records = type("Records", (), {
            "remembered": h.records.remembered, "remember": staticmethod(crash_at_keep)})()
        with pytest.raises(Crash):
            h.poll_until(lambda: False, timeout=5)
        (t,) = h.transmissions()
        assert (t.status, t.acknowledged_at) == ("FAILED", None)
    else:
        h.poll_until(lambda: bool(h.transmissions()) and h.transmissions()[0].acknowledged_at
                     is not None)
    h.channel.close()

    assert h.gw.pipeline.resume() == 0  # the restart: nothing left RECEIVED
    h.processed.clear()
    again = h.new_channel()
    h.poll_until(lambda: h.transmissions()[0].acknowledged_at is not None, channel=again)
    for _ in range(4):
        again.poll_once()
        time.sleep(0.25)
    (t,) = h.transmissions()
    assert t.status == "FAILED" and h.processed == []
    assert h.server.files("in") == ["bad.edi"] and path.read_bytes() == bad
    assert any("not processed: kept on" in (e["detail"] or "") for e in h.gw.store.events(t.id))

    os.utime(path, (time.time() + 5, time.time() + 5))  # the same bytes written again
    h.poll_until(lambda: len(h.transmissions()) == 2, channel=again)
    for _ in range(4):
        again.poll_once()
        time.sleep(0.25)
    first, dup = h.transmissions()
    assert (dup.status, dup.duplicate_of) == ("DUPLICATE", first.id)
    assert h.processed == [] and len(h.transmissions()) == 2
    assert h.server.files("in") == ["bad.edi"], "a duplicate of a failed file is kept"
    assert dup.acknowledged_at is not None
    again.close()
