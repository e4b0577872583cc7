"""Mailbox channel: takes partners' documents from an IMAP folder (``[[mailboxes]]``).

For each message in the folder not yet flagged ``$EdigwProcessed``:

1. its size is checked (over ``max_message_bytes`` only the header is fetched, to record it);
2. it is fetched and read (``mime.read_mail``): each usable attachment, or zip entry, becomes
   an ``Incoming`` with ``channel_ref = "<mailbox>:<UIDVALIDITY>:<UID>:<part>"``; a mail with
   a refusal (oversize attachment, zip bomb …) or without any usable attachment also gives
   a record of the mail itself (``mail-<uid>.eml``, ``channel_ref`` ending ``:mail``) marked
   FAILED at stage ``receive`` with the reason, so operators see it in ``edigw log``;
3. everything is received durably (``Receiver.receive_many``);
4. verdicts are written: attachments from an unknown sender are QUARANTINED at stage
   ``identify`` (kept, not processed: the sender address is not a profile's, whatever the
   payload claims inside), and an unsafe name is noted on its transmission;
5. only then the message is flagged (``\\Seen``, ``$EdigwProcessed``) and moved to
   ``processed_folder`` (created if missing; MOVE, else COPY + ``\\Deleted`` + EXPUNGE),
   the receipts acknowledged, the rest handed to processing and the reply registered.

A crash before step 5 leaves the message in the folder: it is read again, its attachments
come back as the same transmissions (``Receipt.resumed``) or as duplicates by content, never
as second orders. A message flagged but not moved (the move failed) is only moved.

The channel polls every ``poll_interval`` seconds, or waits in IDLE when the server offers
it and ``idle = true``. A failed round is recorded in the health of ``imap:<name>`` and the
connection is retried with back-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from gateway.channels.email.imap import ImapSession, MailError
from gateway.channels.email.mailer import HealthRecords
from gateway.channels.email.mime import (
    MailContent,
    MailLimits,
    parse_message,
    read_mail,
    sender_address,
)
from gateway.channels.email.replies import MailReplies, PendingReply, ReceivedItem, reply_to
from gateway.channels.email.settings import MailboxSettings
from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge_async
from gateway.core.errors import PayloadError, StoreError
from gateway.core.ports import Incoming, Receipt, Receiver
from gateway.core.status import TransmissionStatus
from gateway.core.supervise import Backoff

if TYPE_CHECKING:
    from gateway.config import Partner, PartnerDirectory

log = structlog.get_logger("edigw.channels.email")

CHANNEL = "email"


class Verdicts(Protocol):
    """What the channel writes about a received transmission (``gateway.store.db.Store``)."""

    def record_failed(self, tid: str, *, stage: str, reason: str, status: str = ...) -> None:
        ...

    def add_event(self, tid: str, event: str, detail: str | None = None) -> None:
        ...


@dataclass(slots=True)
class _Mail:
    """One message on its way: what it gave and what the channel decided."""

    uid: int
    items: list[Incoming]
    unsafe: dict[int, str]  # item index -> why its name was not safe
    record_index: int | None  # the item that records the mail itself, when there is one
    problem: str | None
    partner: Partner | None
    sender: str | None
    unknown_reason: str | None
    subject: str = ""
    message_id: str | None = None


class MailboxChannel:
    """Polls (or IDLEs on) one IMAP folder and hands attachments to a ``Receiver``."""

    def __init__(self, settings: MailboxSettings, *, partners: PartnerDirectory,
                 receiver: Receiver, verdicts: Verdicts, records: HealthRecords | None = None,
                 on_received: Callable[[list[Receipt]], None] = lambda receipts: None,
                 replies: MailReplies | None = None, batch: int = 50,
                 backoff_max: float = 60.0) -> None:
        self.settings = settings
        self.partners = partners
        self.receiver = receiver
        self.verdicts = verdicts
        self.records = records
        self._backoff: Backoff | None = None
        self.on_received = on_received
        self.replies = replies
        self.batch = batch
        self.backoff_max = backoff_max
        self.limits = MailLimits(max_attachment_bytes=settings.max_attachment_bytes,
                                 max_zip_total=settings.max_zip_total,
                                 max_zip_ratio=settings.max_zip_ratio,
                                 max_zip_entries=settings.max_zip_entries)
        self.name = f"imap:{settings.name}"
        self.last_error: str | None = None
        self.taken = 0
        self._session: ImapSession | None = None

    # -- one round ------------------------------------------------------------------------

    async def poll_once(self, session: ImapSession) -> int:
        """Take every waiting message of the folder; returns how many were taken."""
        s = self.settings
        # A message flagged before but still here (its move failed) is read again: its
        # attachments come back as the same transmissions (resumed) and are acknowledged.
        waiting = await session.search("UNDELETED")
        taken = 0
        for uid in waiting[:self.batch]:
            size = await session.size(uid)
            if size is None:
                continue  # expunged by someone else meanwhile
            if size > s.max_message_bytes:
                header = await session.fetch(uid, header_only=True) or b""
                mail = await asyncio.to_thread(self._oversized, session.uidvalidity, uid,
                                               header, size)
            else:
                raw = await session.fetch(uid)
                if raw is None:
                    continue
                mail = await asyncio.to_thread(self._read, session.uidvalidity, uid, raw)
            if not await self._take(session, uid, mail):
                continue  # the store failed: the message stays and is taken next round
            taken += 1
        self.taken += taken
        return taken

    def _read(self, uidvalidity: int, uid: int, raw: bytes) -> _Mail:
        content = read_mail(raw, self.limits)
        mail = self._mail(uid, content)
        ref = f"{self.settings.name}:{uidvalidity}:{uid}"
        for att in content.attachments:
            if att.unsafe:
                mail.unsafe[len(mail.items)] = att.unsafe
            mail.items.append(Incoming(
                data=att.data, channel=CHANNEL, channel_ref=f"{ref}:{att.index}",
                filename=att.filename,
                partner_hint=mail.partner.id if mail.partner and not mail.unknown_reason
                else None))
        if mail.problem:
            mail.record_index = len(mail.items)
            mail.items.append(Incoming(data=raw, channel=CHANNEL, channel_ref=f"{ref}:mail",
                                       filename=f"mail-{uid}.eml"))
        return mail

    def _oversized(self, uidvalidity: int, uid: int, header: bytes, size: int) -> _Mail:
        content = MailContent(sender=None, subject="", message_id=None)
        message = parse_message(header)
        content.sender = sender_address(message)
        content.subject = str(message.get("Subject") or "")
        mail = self._mail(uid, content)
        mail.problem = (f"message is {size} bytes, over the {self.settings.max_message_bytes}"
                        "-byte limit: not downloaded (its header is kept)")
        mail.record_index = 0
        mail.items.append(Incoming(data=header, channel=CHANNEL,
                                   channel_ref=f"{self.settings.name}:{uidvalidity}:{uid}:mail",
                                   filename=f"mail-{uid}-header.eml"))
        return mail

    def _mail(self, uid: int, content: MailContent) -> _Mail:
        partner = self.partners.by_identifier("email", content.sender) \
            if content.sender else None
        unknown: str | None = None
        if content.sender is None:
            unknown = "mail without a readable sender address (From)"
        elif partner is None:
            unknown = f"mail from {content.sender}: no partner profile lists this address"
        elif not partner.enabled:
            unknown = f"mail from {content.sender}: partner {partner.id} is disabled"
        return _Mail(uid=uid, items=[], unsafe={}, record_index=None, problem=content.problem,
                     partner=partner, sender=content.sender, unknown_reason=unknown,
                     subject=content.subject, message_id=content.message_id)

    async def _take(self, session: ImapSession, uid: int, mail: _Mail) -> bool:
        """Receive the mail's items durably (and record their verdicts), then flag and move
        the mail, then register the reply; False when the store failed (nothing lost)."""
        async def acknowledge(receipts: list[Receipt]) -> Acknowledgement[list[Receipt]]:
            await session.flag(uid)
            await self._move(session, uid)
            work = [r for i, r in enumerate(receipts)
                    if i != mail.record_index and not mail.unknown_reason]
            return Acknowledgement(
                acknowledged=receipts, process=work, answer=receipts,
                detail=f"mail flagged and moved to {self.settings.processed_folder}")

        try:
            ack = await receive_then_acknowledge_async(
                self.receiver, mail.items, acknowledge, self.on_received,
                received=lambda receipts: self._verdicts(mail, receipts))
        except (StoreError, PayloadError) as exc:
            self.last_error = str(exc)
            log.error("receive_failed", mailbox=self.settings.name, uid=mail.uid,
                      error=str(exc))
            return False
        self._reply(mail, ack.answer or [])
        return True

    def _verdicts(self, mail: _Mail, receipts: list[Receipt]) -> None:
        """What the channel itself knows of the items, recorded before the mail is
        acknowledged: the mail refused, unsafe attachment names, an unknown sender."""
        for i, receipt in enumerate(receipts):
            if not receipt.needs_processing:
                continue  # a duplicate, or a leftover whose verdict was written before
            tid = receipt.transmission_id
            if i == mail.record_index:
                self.verdicts.record_failed(tid, stage="receive", reason=mail.problem or "",
                                            status=TransmissionStatus.FAILED)
                log.warning("mail_refused", mailbox=self.settings.name, uid=mail.uid,
                            transmission_id=tid, sender=mail.sender, reason=mail.problem)
                continue
            if i in mail.unsafe:
                self.verdicts.add_event(tid, "unsafe-name", mail.unsafe[i])
                log.warning("unsafe_attachment_name", transmission_id=tid,
                            detail=mail.unsafe[i])
            if mail.unknown_reason:
                self.verdicts.record_failed(tid, stage="identify", reason=mail.unknown_reason,
                                            status=TransmissionStatus.QUARANTINED)
        if mail.unknown_reason:
            log.warning("mail_quarantined", mailbox=self.settings.name, uid=mail.uid,
                        sender=mail.sender, reason=mail.unknown_reason)

    def _reply(self, mail: _Mail, receipts: list[Receipt]) -> None:
        """Register the reply to the partner, if it wants one."""
        if self.replies is None or mail.partner is None or mail.unknown_reason:
            return
        fresh = [r for r in receipts if not r.resumed]
        if not fresh:
            return  # taken again after a crash: its reply is the first reading's
        items = [ReceivedItem(r.transmission_id, it.filename or "", it.size)
                 for it, r in zip(mail.items, receipts, strict=True)]
        self.replies.expect(PendingReply(
            key=f"{self.settings.name}:{mail.uid}", partner=mail.partner,
            to=reply_to(mail.partner, mail.sender), subject=mail.subject,
            message_id=mail.message_id, items=items))

    async def _move(self, session: ImapSession, uid: int) -> None:
        await session.move(uid, self.settings.processed_folder)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll or IDLE until ``stop`` is set; reconnects with back-off after a failure."""
        s = self.settings
        log.info("mailbox_channel_started", mailbox=s.name, host=s.host, folder=s.folder)
        backoff = Backoff(min(1.0, self.backoff_max), self.backoff_max)
        self._backoff = backoff
        while not stop.is_set():
            delay = 0.0
            try:
                await self._session_loop(stop)
                backoff.reset()
                delay = backoff.initial
            except MailError as exc:
                delay = backoff.next()
                self.last_error = str(exc)
                failures = await self._failed(str(exc))
                log.warning("mailbox_failed", mailbox=s.name, error=str(exc),
                            consecutive_failures=failures, retry_in=delay)
            except Exception as exc:  # never let one bad round stop the channel
                delay = backoff.next()
                self.last_error = repr(exc)
                await self._failed(repr(exc))
                log.exception("mailbox_round_failed", mailbox=s.name)
            finally:
                if self._session is not None:
                    await self._session.close()
                    self._session = None
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _session_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._session = session = await ImapSession.open(s)
        while not stop.is_set():
            taken = await self.poll_once(session)
            await self._ok(f"{taken} mail(s) taken" if taken else "no new mail")
            if self._backoff is not None:
                self._backoff.reset()  # a session that worked: the next drop starts afresh
            if taken:
                continue  # more may be waiting
            if s.idle and session.can_idle:
                # RFC 2177: re-issue IDLE at least every 29 minutes.
                await session.wait_for_news(min(s.poll_interval, 29 * 60), stop)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=s.poll_interval)
                except TimeoutError:
                    await session.noop()

    async def _ok(self, detail: str) -> None:
        self.last_error = None
        if self.records is not None:
            await asyncio.to_thread(self.records.ok, self.name, "imap", detail=detail)

    async def _failed(self, error: str) -> int:
        if self.records is None:
            return 0
        try:
            return await asyncio.to_thread(self.records.failed, self.name, "imap", error)
        except Exception:  # the store is down too: the log has it
            log.exception("channel_health_not_recorded", channel=self.name)
            return 0


def start(ctx: ChannelContext) -> ChannelRun:
    """A channel for each ``[[mailboxes]]``; with the gateway's mail (``[smtp]``), the
    replies to partners and their loop."""
    run = ChannelRun()
    replies = None
    if ctx.mailer is not None:
        replies = MailReplies(ctx.mailer, ctx.store)
        run.loops.append(("mail-replies", replies.run))
        run.everywhere.add("mail-replies")  # the replies to what this instance received
        run.after_processing.append(replies.processed)  # replies go out at once
    for box in ctx.settings.mailboxes:
        channel = MailboxChannel(box, partners=ctx.partners, receiver=ctx.receiver,
                                 verdicts=ctx.store, records=ctx.records,
                                 on_received=ctx.on_received, replies=replies)
        run.loops.append((channel.name, channel.run))
    return run
