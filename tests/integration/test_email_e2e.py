"""End to end by mail: the shared corpus's EANCOM ORDERS D96A files mailed to a real Dovecot
mailbox, taken by the mailbox channel, processed, published to RabbitMQ, and acknowledged by
mail to an aiosmtpd peer.

The gateway's core is opened from a workspace's settings (``Gateway.open``) and the mailbox
channel is run beside it in this process, as ``gateway.app`` will wire it; ``edigw log`` is
the real command line on the same store.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.channels.email.channel import MailboxChannel
from gateway.config import load_settings
from gateway.core.ports import Receipt
from tests.conftest import manifest_rows, require_corpus
from tests.corpus.test_corpus_orders_mapping import KNOWN_REJECTIONS
from tests.integration.dovecot import start_dovecot
from tests.integration.e2e import Workspace
from tests.integration.mailtest import SmtpPeer, mail, mailbox, replies_for, wait_until
from tests.integration.naive_edifact import naive_senders, partner_id_for

pytestmark = [pytest.mark.integration, pytest.mark.corpus]

CATCH_ALL = "mailer"  # the partner whose address mails files without a UNB sender


@pytest.fixture
def ws(tmp_path, rabbit_url):
    with Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}") as ws:
        yield ws


def _partner(ws: Workspace, pid: str, unb: tuple[str, str | None] | None) -> None:
    ids = ""
    if unb is not None:
        q = f', qualifier = "{unb[1]}"' if unb[1] else ""
        ids = f'unb = [{{ id = "{unb[0]}"{q} }}]\n'
    (ws.partners / f"{pid}.toml").write_text(
        f'id = "{pid}"\nname = "{pid} (mail e2e)"\nchannels = ["email"]\n\n'
        f'[identifiers]\n{ids}email = ["{pid}@partners.test"]\n\n'
        '[email]\nacknowledgements = true\n\n'
        '[[documents]]\ntype = "order"\nformat = "edifact"\n')


def test_corpus_orders_mailed_reach_the_queue_once_with_acknowledgements(ws):
    """Each corpus ORDERS D96A file mailed by its partner: every order once on the queue, every
    file in `edigw log` with channel email, one acknowledgement per mail at the SMTP peer."""
    folder = require_corpus()
    rows = [r for r in manifest_rows() if r["document_type"].startswith("EDIFACT ORDERS D96A")]
    assert rows
    files = [(r["local_path"], (Path(folder) / r["local_path"]).read_bytes()) for r in rows]
    sender_of: dict[str, str] = {}
    made: set[str] = set()
    for path, data in files:
        senders = naive_senders(data)
        pid = partner_id_for(senders[0][0]) if senders else CATCH_ALL
        if pid not in made:
            _partner(ws, pid, senders[0] if senders else None)
            made.add(pid)
        sender_of[path] = f"{pid}@partners.test"

    server = start_dovecot()
    peer = SmtpPeer().start()
    gw = Gateway.open(load_settings(ws.config))
    try:
        for i, (path, data) in enumerate(files):
            name = f"{i:03d}-{Path(path).name}"
            server.append(mail((name, data), sender=sender_of[path],
                               subject=f"order file {i}").as_bytes())
        gw.start_publisher()
        received: list[Receipt] = []
        replies = replies_for(_core_view(gw), peer)
        channel = MailboxChannel(mailbox(server, "INBOX", poll_interval=0.5), partners=gw.partners,
                                 receiver=gw.pipeline, verdicts=gw.store,
                                 records=_core_view(gw).records, on_received=received.extend,
                                 replies=replies)

        async def main() -> None:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(channel.run(stop)),
                     asyncio.create_task(replies.run(stop))]
            await wait_until(lambda: channel.taken == len(files), timeout=60)
            tids = [r.transmission_id for r in received]
            outcomes = await asyncio.to_thread(gw.pipeline.process_many, tids)
            replies.processed(outcomes)
            await wait_until(lambda: not replies.pending and replies.sent, timeout=30)
            await wait_until(lambda: gw.store.outbox_size() == 0, timeout=30)
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(main())
        left_in_inbox = server.uids("INBOX")
    finally:
        gw.close()
        peer.stop()
        server.stop()
        server.cleanup()

    log = {row["filename"]: row for row in ws.log_json()}
    assert len(log) == len(files) and {r["channel"] for r in log.values()} == {"email"}
    assert left_in_inbox == []
    published = 0
    seen: set[str] = set()
    for i, (path, data) in enumerate(files):
        row = log[f"{i:03d}-{Path(path).name}"]
        if row["sha256"] in seen:
            assert row["status"] == "DUPLICATE"
            continue
        seen.add(row["sha256"])
        if path in KNOWN_REJECTIONS:
            assert row["status"] == "FAILED", row
            continue
        # A demo file reusing an order number for another order has that one held (HELD).
        held = [d for d in ws.store.documents_of(row["id"]) if d.status == "CONFLICT"]
        assert row["status"] == ("HELD" if held else "PUBLISHED"), (path, row["status"],
                                                                     row["reason"])
        assert row["document_count"] == data.count(b"UNH+"), path
        published += sum(1 for d in ws.store.documents_of(row["id"]) if d.status == "PUBLISHED")
    messages = ws.consume(expected=published, timeout=30)
    ids = [m.properties.message_id for m in messages]
    assert len(messages) == published and len(set(ids)) == len(ids)
    # one acknowledgement per mail not wholly a duplicate, to the partner that sent it
    acks = [email.message_from_bytes(m, policy=email.policy.default) for m in peer.messages]
    assert len(acks) == len(files) - sum(1 for r in log.values() if r["status"] == "DUPLICATE")
    assert all(a["Subject"].startswith(("Received: order file", "Received with problems"))
               for a in acks)
    print(f"mail e2e: {len(files)} mails, {published} orders published, {len(acks)} acks")


class _core_view:
    def __init__(self, gw: Gateway) -> None:
        from gateway.store.channels import ChannelRecords

        self.store = gw.store
        self.records = ChannelRecords(gw.store)


def test_edigw_serve_takes_mail_and_acknowledges_it(tmp_path, ws):
    """``edigw serve`` (a subprocess) runs the ``[[mailboxes]]`` of gateway.toml and replies
    through ``[smtp]``: a mailed order is published, the mail moved, the partner acknowledged."""
    from tests.integration.mailtest import SmtpPeer, order

    server = start_dovecot()
    peer = SmtpPeer().start()
    try:
        server.create("serve")
        ws.config.write_text(ws.config.read_text() + f"""
[[mailboxes]]
name = "orders"
host = "{server.host}"
port = {server.port}
tls = "none"
user = "{server.user}"
password = "{server.password}"
folder = "serve"
processed_folder = "serve/processed"
poll_interval = 0.5

[smtp]
host = "127.0.0.1"
port = {peer.port}
sender = "edigw@wholesaler.test"
""")
        (ws.partners / "acme.toml").write_text("""\
id = "acme"
name = "ACME Bakeries"
channels = ["email"]

[identifiers]
unb = [{ id = "5412345000013", qualifier = "14" }]
email = ["buyer@acme.test"]

[email]
acknowledgements = true
""")
        service = ws.serve()
        server.append(bytes(mail(("po.edi", order("PO-SERVE-1"))).as_bytes()), "serve")
        row = service.wait_until(lambda: ws.settled("po.edi"), 60, "po.edi settled")
        assert (row.status, row.channel, row.partner_id) == ("PUBLISHED", "email", "acme"), \
            row.reason
        service.wait_until(lambda: server.uids("serve") == [], 15, "mail moved")
        service.wait_until(lambda: peer.messages, 30, "acknowledgement mailed")
        reply = email.message_from_bytes(peer.messages[0], policy=email.policy.default)
        assert reply["To"].addresses[0].addr_spec == "buyer@acme.test"
        assert "PO-SERVE-1" in reply.get_body(("plain",)).get_content()
    finally:
        peer.stop()
        server.stop()
        server.cleanup()
