"""End to end over SFTP: every shared-corpus EANCOM ORDERS file (D96A, D01B) put on a real
sshd, taken by the SFTP channels of a real ``Gateway`` (partner profiles with ``[sftp]`` in
TOML, loaded as in production) and published to the machine's RabbitMQ.

Until ``gateway/app.py`` runs SFTP channels in ``edigw serve``, the test runs them itself
beside the gateway's pipeline and publisher, in this process. Each UNB sender is a partner
with its own remote folder. Every removal of a remote file is checked to come after the
transmission was committed; at the end every order is on the queue once and ``edigw
channels`` shows each SFTP channel healthy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.channels.sftp.channel import SftpChannel
from gateway.channels.sftp.connection import SftpConnection
from gateway.config import SftpSettings, load_settings
from gateway.core.ports import Receipt
from gateway.store.channels import ChannelRecords
from gateway.store.db import LogFilter
from tests.conftest import manifest_rows, require_corpus
from tests.corpus.test_corpus_orders_mapping import KNOWN_REJECTIONS
from tests.integration.e2e import Workspace
from tests.integration.naive_edifact import naive_senders, partner_id_for
from tests.integration.sshd import SshServer

pytestmark = [pytest.mark.integration, pytest.mark.corpus]

PREFIXES = ("EDIFACT ORDERS D96A", "EDIFACT ORDERS D01B")


def _corpus_files() -> list[tuple[str, bytes]]:
    folder = require_corpus()
    rows = [r for r in manifest_rows() if r["document_type"].startswith(PREFIXES)]
    assert rows, f"no {PREFIXES} rows in MANIFEST.tsv"
    return [(r["local_path"], (Path(folder) / r["local_path"]).read_bytes()) for r in rows]


def _partner_toml(pid: str, unb: tuple[str, str | None], server: SshServer) -> str:
    q = f", qualifier = {json.dumps(unb[1])}" if unb[1] else ""
    folder = server.path(f"in/{pid}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return f"""\
id = "{pid}"
name = "{pid} (sftp e2e)"
channels = ["sftp"]

[identifiers]
unb = [{{ id = {json.dumps(unb[0])}{q} }}]

[[documents]]
type = "order"
format = "edifact"

[sftp]
host = "127.0.0.1"
port = {server.port}
user = {json.dumps(server.user)}
key_file = {json.dumps(str(server.client_key))}
host_key = {json.dumps(server.host_key_line)}
poll_interval = 0.2
max_files = 5

[[sftp.inbound]]
folder = {json.dumps(folder)}
patterns = ["*"]
after = "delete"
"""


def test_every_corpus_order_over_sftp_is_published_once_and_removed_after_it_is_stored(
        tmp_path, store_url, rabbit_url):
    """Each corpus ORDERS file on the SFTP server becomes one transmission on channel sftp and each of its orders one message on RabbitMQ; no remote file is removed before its transmission is committed; the channels end healthy."""
    files = _corpus_files()
    with SshServer.start(tmp_path / "sshd") as server, \
            Workspace.create(tmp_path / "gw", store_url) as ws:
        partner_of: dict[tuple[str, str | None], str] = {}
        for _path, data in files:
            for sender in naive_senders(data)[:1]:
                if sender not in partner_of:
                    pid = partner_of[sender] = partner_id_for(sender[0])
                    (ws.partners / f"{pid}.toml").write_text(_partner_toml(pid, sender, server))

        gw = Gateway.open(load_settings(ws.config))
        records = ChannelRecords(gw.store)
        removed_after_commit: list[str] = []
        problems: list[str] = []

        def committed(ref: str) -> bool:
            return any(t.channel_ref == ref for t in gw.store.log(LogFilter(limit=100_000)))

        class Checked:
            """The real connection; each remove first checks the file's receive committed."""

            def __init__(self, settings: SftpSettings) -> None:
                self.conn = SftpConnection.open(settings)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.conn, name)

            @property
            def alive(self) -> bool:
                return self.conn.alive

            def remove(self, path: str) -> None:
                ref = f"sftp://{self.conn.server}{path}"
                if not committed(ref):
                    problems.append(f"{path} removed before its transmission was committed")
                self.conn.remove(path)
                removed_after_commit.append(path)

        def process(receipts: list[Receipt]) -> None:
            gw.pipeline.process_many([r.transmission_id for r in receipts])

        channels = [SftpChannel(p, receiver=gw.pipeline, records=records, outcomes=gw.store,
                                on_received=process,
                                connect=Checked, settle=0.3, retry_initial=0.2, retry_max=1.0)
                    for p in gw.partners if p.sftp is not None]
        assert len(channels) == len(set(partner_of.values()))

        names: dict[str, tuple[str, bytes]] = {}
        for i, (path, data) in enumerate(files):
            pid = partner_of[naive_senders(data)[0]]
            name = f"{i:03d}-{Path(path).name}"
            names[name] = (path, data)
            server.put(f"in/{pid}/{name}", data)

        gw.start_publisher()
        stop = asyncio.Event()

        def settled() -> bool:
            counts = gw.store.counts_by_status()
            return (sum(counts.values()) == len(files) and set(counts) <= {
                "PUBLISHED", "HELD", "FAILED", "QUARANTINED", "DUPLICATE"}
                and gw.store.outbox_size() == 0
                and all(server.files(f"in/{pid}") == [] for pid in partner_of.values()))

        async def scenario() -> None:
            tasks = [asyncio.create_task(c.run(stop)) for c in channels]
            deadline = time.monotonic() + 120
            try:
                while not await asyncio.to_thread(settled):
                    assert time.monotonic() < deadline, (
                        f"not settled: {gw.store.counts_by_status()}, outbox "
                        f"{gw.store.outbox_size()}")
                    await asyncio.sleep(0.2)
            finally:
                stop.set()
                await asyncio.gather(*tasks)

        try:
            asyncio.run(scenario())
            rows = gw.store.log(LogFilter(limit=100_000))
            documents = {t.id: gw.store.documents_of(t.id) for t in rows}
        finally:
            gw.close()

        assert problems == []
        assert len(removed_after_commit) == len(files)
        by_name = Counter(t.filename for t in rows)
        assert by_name == Counter(list(names)), "every file is one transmission"
        first_with_sha: dict[str, str] = {}
        published: set[str] = set()
        for t in sorted(rows, key=lambda r: r.filename or ""):
            path, data = names[t.filename]
            assert t.channel == "sftp" and t.sha256 == hashlib.sha256(data).hexdigest()
            assert t.acknowledged_at is not None, f"{t.filename}: not acknowledged"
            if t.duplicate_of is not None:
                assert t.status == "DUPLICATE" and documents[t.id] == []
                continue
            first_with_sha[t.sha256] = t.id
            if path in KNOWN_REJECTIONS:
                assert (t.status, t.stage) == ("FAILED", "parse"), t
                continue
            # Demo files reusing an order number for another order: that one is held.
            held = [d for d in documents[t.id] if d.status == "CONFLICT"]
            assert t.status == ("HELD" if held else "PUBLISHED"), \
                f"{t.filename}: {t.status} {t.stage} {t.reason}"
            assert all(d.conflict_of for d in held), t.filename
            assert t.document_count == data.count(b"UNH+"), t.filename
            published |= {d.id for d in documents[t.id] if d.status == "PUBLISHED"}

        statuses = Counter(t.status for t in rows)
        print(f"sftp corpus: {len(files)} files, {dict(statuses)}, {len(published)} orders")
        assert published, "no order published"
        received = ws.consume(expected=len(published), timeout=30)
        ids = Counter(m.properties.headers["document_id"] for m in received)
        assert set(ids) == published and all(n == 1 for n in ids.values()), (
            f"{len(received)} messages for {len(published)} published orders")

        shown = {c["channel"]: c for c in json.loads(ws.cli("channels", "--json").stdout)}
        for pid in set(partner_of.values()):
            assert shown[f"sftp:{pid}"]["state"] == "OK", shown[f"sftp:{pid}"]


def test_edigw_serve_polls_the_partners_sftp_server(tmp_path, rabbit_url):
    """``edigw serve`` (a subprocess) starts the SFTP channel of a partner profile: an order
    put on the server is published, the remote file is gone, the channel shows OK."""
    from tests.integration.e2e import ACME_UNB, order_file

    with SshServer.start(tmp_path / "sshd") as server, \
            Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}") as ws:
        (ws.partners / "acme.toml").write_text(_partner_toml("acme", ACME_UNB, server))
        service = ws.serve()
        server.put("in/acme/po-1.edi", order_file(1))
        row = service.wait_until(lambda: ws.settled("po-1.edi"), 60, "po-1.edi settled")
        assert (row.status, row.channel) == ("PUBLISHED", "sftp"), row.reason
        (message,) = ws.consume(expected=1)
        assert json.loads(message.body)["order_number"] == "PO-000001"
        service.wait_until(lambda: server.files("in/acme") == [], 10, "remote file removed")
        shown = {c["channel"]: c for c in json.loads(ws.cli("channels", "--json").stdout)}
        assert shown["sftp:acme"]["state"] == "OK", shown
