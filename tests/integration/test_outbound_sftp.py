"""Outbound documents put by the ``SftpSender`` onto a real OpenSSH server
(``tests/integration/sshd.py``) with its host key pinned, through the ``OutboundDispatcher``
over a real SQLite store and archive: the file arrives whole under its name, written under
a temporary name first, its size checked before the rename; a file already there is never
overwritten; a server with another host key is refused and the delivery retried.

The session is the real ``SftpConnection``; the tests wrap it only to see the order of the
calls the sender makes (each call goes through to the server).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.outbound import OutboundDispatcher
from gateway.channels.sftp.connection import SftpConnection
from gateway.channels.sftp.sender import SftpSender
from gateway.config import Partner, PartnerDirectory, PartnerOutbound, SftpSettings
from gateway.core.status import OutboundStatus, TransmissionStatus
from gateway.store.archive import Archive
from gateway.store.db import Store
from tests.integration.rabbit import sqlite_store
from tests.integration.sshd import SshServer, keygen
from tests.outbound_rows import pending_row

pytestmark = pytest.mark.integration

DOCUMENT = (b"UNA:+.? 'UNB+UNOC:3+5400000000003:14+5412345000013:14+261127:1200+1'"
            b"UNH+1+ORDRSP:D:96A:UN:EAN005'BGM+231+4711+29'UNT+3+1'UNZ+1+1'\n" * 40)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[SshServer]:
    server = SshServer.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


class Spy:
    """A real ``SftpConnection`` whose calls are noted as they pass through."""

    def __init__(self, inner: SftpConnection, calls: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("write", "rename", "stat", "exists", "read"):
            def call(*args: Any) -> Any:
                self.calls.append((name, str(args[0]).rsplit("/", 1)[-1]))
                return attr(*args)
            return call
        return attr

    @property
    def alive(self) -> bool:
        return self.inner.alive


class Side:
    """Our side: store, archive, the partner's profile and a dispatcher with the sender."""

    def __init__(self, tmp_path: Path, settings: SftpSettings) -> None:
        self.store: Store = sqlite_store(tmp_path / "edigw.sqlite3")
        self.archive = Archive(tmp_path / "archive")
        self.partner = Partner(id="retail", name="Retail", channels=["sftp"], sftp=settings,
                               outbound=PartnerOutbound(channel="sftp"))
        self.partners = PartnerDirectory([self.partner])
        self.calls: list[tuple[str, str]] = []
        self.folder = "out"
        self.sender = SftpSender(connect=lambda s: Spy(SftpConnection.open(s), self.calls))
        self.dispatcher = OutboundDispatcher(self.store, self.archive,
                                             senders={"sftp": self.sender},
                                             partner=self.partners.get, retry_initial=0.01)

    def queue(self, data: bytes, filename: str) -> str:
        return pending_row(self.store, self.archive, partner_id="retail", channel="sftp",
                           data=data, filename=filename).id

    def close(self) -> None:
        self.sender.close()
        self.store.close()


@pytest.fixture
def side(tmp_path, server) -> Iterator[Side]:
    s = Side(tmp_path, server.settings(inbound=[], outbound_folder=f"out-{tmp_path.name}"))
    s.folder = f"out-{tmp_path.name}"
    yield s
    s.close()


def test_document_put_under_temp_name_size_checked_then_renamed(side, server):
    oid = side.queue(DOCUMENT, "ordrsp-4711.edi")

    assert side.dispatcher.deliver_pending() == 1

    target = server.remote / side.folder / "ordrsp-4711.edi"
    assert target.read_bytes() == DOCUMENT
    assert server.files(side.folder) == ["ordrsp-4711.edi"]  # no temporary file left
    assert side.calls == [("exists", "ordrsp-4711.edi"), ("write", ".ordrsp-4711.edi.part"),
                          ("stat", ".ordrsp-4711.edi.part"),
                          ("rename", ".ordrsp-4711.edi.part")]
    row = side.store.get_outbound(oid)
    assert row is not None and row.status == OutboundStatus.DELIVERED
    assert row.detail is not None and row.detail.startswith("order-response put to sftp://")
    assert row.detail.endswith(f"127.0.0.1:{server.port}{target}")
    assert side.store.get_transmission(row.transmission_id).status == \
        TransmissionStatus.DELIVERED


def test_file_of_that_name_is_never_overwritten_and_a_repeat_is_not_sent_twice(side, server):
    (server.remote / side.folder).mkdir(exist_ok=True)
    (server.remote / side.folder / "ordrsp-1.edi").write_bytes(b"the partner's own file")
    side.queue(DOCUMENT, "ordrsp-1.edi")
    assert side.dispatcher.deliver_pending() == 1
    assert (server.remote / side.folder / "ordrsp-1.edi").read_bytes() == b"the partner's own file"
    assert (server.remote / side.folder / "ordrsp-1.2.edi").read_bytes() == DOCUMENT

    # The same bytes again under the same name (delivered before a crash): found, not re-sent.
    side.calls.clear()
    side.queue(DOCUMENT, "ordrsp-1.edi")
    assert side.dispatcher.deliver_pending() == 1
    assert not [c for c in side.calls if c[0] in ("write", "rename")]
    assert server.files(side.folder) == ["ordrsp-1.2.edi", "ordrsp-1.edi"]


def test_server_with_another_host_key_is_refused_and_retried(tmp_path, server):
    other = keygen(tmp_path / "other_host_key")
    s = Side(tmp_path, server.settings(inbound=[], outbound_folder="out-refused",
                                       host_key=other))
    try:
        oid = s.queue(DOCUMENT, "ordrsp-9.edi")
        assert s.dispatcher.deliver_pending() == 0
        row = s.store.get_outbound(oid)
        assert row is not None and row.status == OutboundStatus.PENDING and row.attempts == 1
        assert "host key" in (row.last_error or "").lower()
        assert server.files("out-refused") == []
    finally:
        s.close()


def test_throughput(side, server, record_property):
    """Deliveries per second over one reused session (measured, not asserted beyond > 0)."""
    n = 100
    for i in range(n):
        side.queue(DOCUMENT + str(i).encode(), f"ordrsp-{i}.edi")
    started = time.perf_counter()
    assert side.dispatcher.deliver_pending() == n
    rate = n / (time.perf_counter() - started)
    record_property("sftp_deliveries_per_second", round(rate, 1))
    print(f"\nSFTP: {rate:.1f} deliveries/s ({n} files of {len(DOCUMENT)} bytes)")
    assert len(server.files(side.folder)) == n
