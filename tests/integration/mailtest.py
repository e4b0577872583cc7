"""Helpers for the e-mail channel's tests: an aiosmtpd peer, a gateway core, mails to send."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from gateway.channels.email.channel import MailboxChannel
from gateway.channels.email.mailer import Mailer
from gateway.channels.email.replies import MailReplies
from gateway.channels.email.settings import MailboxSettings, SmtpSettings
from gateway.config import Identifiers, Partner, PartnerDirectory, PartnerEmail
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Receipt
from gateway.formats.mapping import MappingSet
from gateway.formats.registry import default_readers as _readers
from gateway.store.archive import Archive
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.records import LogFilter, TransmissionRow
from tests.integration.dovecot import Dovecot, free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "mappings/edifact/eancom-orders-d96a.sample.edi").read_bytes()
PARTNER_ADDRESS = "buyer@acme.test"


def order(number: str) -> bytes:
    """The shipped EANCOM D96A sample order with its own order number and interchange ref."""
    return (SAMPLE.replace(b"PO-2024-0107", number.encode())
            .replace(b"ICR0042", ("R" + number[-12:]).encode()))


def mail(*attachments: tuple[str, bytes] | tuple[str, bytes, str], sender: str = PARTNER_ADDRESS,
         subject: str = "Orders") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Buyer <{sender}>"
    msg["To"] = "orders@edigw.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}.{id(msg)}@acme.test>"
    msg.set_content("Please find our orders attached.")
    for att in attachments:
        name, data = att[0], att[1]
        ctype = att[2] if len(att) > 2 else "application/edifact"  # type: ignore[misc]
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg


def zipped(*entries: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


class SmtpPeer:
    """aiosmtpd on a free loopback port, keeping every mail it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class Core:
    """A store, an archive and a pipeline with the real readers, like a running gateway."""

    store: Store
    pipeline: Pipeline
    records: ChannelRecords
    partners: PartnerDirectory
    received: list[Receipt] = field(default_factory=list)

    def process(self) -> None:
        tids = [r.transmission_id for r in self.received]
        self.received.clear()
        if tids:
            self.pipeline.process_many(tids)

    def transmissions(self) -> list[TransmissionRow]:
        """Every transmission, in the order of their place in the mailbox."""
        rows = self.store.log(LogFilter(limit=1000))
        return sorted(rows, key=lambda r: (r.channel_ref or "", r.received_at))


def make_partners(*, acknowledgements: bool = True) -> PartnerDirectory:
    return PartnerDirectory([Partner(
        id="acme", name="ACME Bakeries", channels=["email"],
        identifiers=Identifiers(email=[PARTNER_ADDRESS]),
        email=PartnerEmail(acknowledgements=acknowledgements, failure_notices=True))])


@contextmanager
def core(tmp_path: Path, partners: PartnerDirectory | None = None) -> Iterator[Core]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    partners = partners or make_partners()
    pipeline = Pipeline(store=store, archive=Archive(tmp_path / "archive"), partners=partners,
                        readers=_readers(MappingSet.load(ROOT / "mappings")))
    try:
        yield Core(store=store, pipeline=pipeline, records=ChannelRecords(store),
                   partners=partners)
    finally:
        store.close()


def mailbox(server: Dovecot, folder: str, **kw) -> MailboxSettings:
    values = dict(name="orders", host=server.host, port=server.port, tls="none",
                  user=server.user, password=server.password, folder=folder,
                  processed_folder=f"{folder}/processed", poll_interval=30.0, timeout=5.0)
    values.update(kw)
    return MailboxSettings(**values)


def channel(c: Core, settings: MailboxSettings, *, receiver=None,
            replies: MailReplies | None = None) -> MailboxChannel:
    return MailboxChannel(settings, partners=c.partners, receiver=receiver or c.pipeline,
                          verdicts=c.store, records=c.records, on_received=c.received.extend,
                          replies=replies, backoff_max=0.5)


def replies_for(c: Core, peer: SmtpPeer) -> MailReplies:
    mailer = Mailer(SmtpSettings(host="127.0.0.1", port=peer.port, sender="edigw@wholesaler.test",
                                 operators=["ops@wholesaler.test"], timeout=5),
                    records=c.records)
    return MailReplies(mailer, c.store, wait=30, look_every=0.1)


async def wait_until(predicate, timeout: float = 15.0, every: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)
