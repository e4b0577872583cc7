"""Replies to a partner's mail once its attachments are processed.

The channel registers a ``PendingReply`` only after the attachments are durably received (so
nothing is ever acknowledged that is not stored). ``MailReplies.run`` then watches the
transmissions of each pending mail in the store: when none is RECEIVED any more (processed,
failed, quarantined, or a duplicate), or after ``wait`` seconds, it composes the reply from
what the store says and sends it. ``processed`` is the hook the integrator calls after
``Pipeline.process_many`` so that replies go at once instead of at the next look.

What is sent follows the partner's ``[email]`` profile: ``acknowledgements`` gives one mail
listing what was received (names, sizes) and the documents found (type and number), with any
failure in it; ``failure_notices`` alone gives a mail only when something failed, naming the
stage and the reason. Mail from unknown senders is never answered (no backscatter).

Pending replies live in memory: after a crash between the move of a mail and its reply, the
reply is not sent (the transmissions and their outcome are in the store and ``edigw log``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gateway.channels.email.imap import MailError
from gateway.channels.email.mailer import Mailer

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.channels.email")

_RECEIVED = "RECEIVED"
_BAD = ("FAILED", "QUARANTINED")


class OutcomeSource(Protocol):
    """Where the outcome of transmissions is read (``gateway.store.db.Store``)."""

    def get_transmission(self, tid: str) -> Any: ...

    def documents_of(self, tid: str) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class ReceivedItem:
    transmission_id: str
    filename: str
    size: int


@dataclass(slots=True)
class PendingReply:
    """A partner's mail whose attachments are received and whose reply waits for them."""

    key: str  # mailbox:uidvalidity:uid
    partner: Partner
    to: list[str]
    subject: str
    message_id: str | None
    items: list[ReceivedItem]
    since: float = field(default_factory=time.monotonic)
    attempts: int = 0
    next_try: float = 0.0


def reply_to(partner: Partner, sender: str | None) -> list[str]:
    """``[email] reply_to`` of the profile, else the mail's sender."""
    if partner.email.reply_to:
        return list(partner.email.reply_to)
    return [sender] if sender else []


def compose(pending: PendingReply, rows: Sequence[Any], documents: Sequence[Sequence[Any]],
            mailer: Mailer) -> EmailMessage | None:
    """The reply for ``pending`` given each item's transmission row and documents, or None
    when the profile asks for nothing in this case (sans-IO)."""
    wants = pending.partner.email
    failures: list[str] = []
    lines: list[str] = []
    found: list[str] = []
    for item, row, docs in zip(pending.items, rows, documents, strict=True):
        status = getattr(row, "status", None) or "UNKNOWN"
        lines.append(f"- {item.filename} ({item.size} bytes): {_describe(row)}")
        if status in _BAD or getattr(row, "reason", None):
            failures.append(f"- {item.filename}: {status.lower()} at stage "
                            f"{getattr(row, 'stage', None) or '?'}: "
                            f"{getattr(row, 'reason', None) or 'no reason recorded'}")
        for d in docs:
            number = d.business_number or "without number"
            state = "accepted" if d.status in ("PENDING", "PUBLISHED") else d.status.lower()
            extra = f" ({d.reason})" if getattr(d, "reason", None) else ""
            found.append(f"- {d.doc_type} {number}: {state}{extra}")
    if not pending.to:
        return None
    subject = pending.subject or "(no subject)"
    if wants.acknowledgements:
        body = [f"Your mail \"{subject}\" was received by the EDI gateway.", "",
                "Files received:", *lines, ""]
        body += ["Documents found:", *(found or ["- none"]), ""]
        if failures:
            body += ["Problems:", *failures, ""]
        title = ("Received with problems: " if failures else "Received: ") + subject
        return mailer.message(pending.to, title, "\n".join(body),
                              in_reply_to=pending.message_id)
    if wants.failure_notices and failures:
        body = [f"Your mail \"{subject}\" could not be processed in full.", "",
                "What was wrong:", *failures, "", "Files received:", *lines, ""]
        return mailer.message(pending.to, "Not processed: " + subject, "\n".join(body),
                              in_reply_to=pending.message_id)
    return None


def _describe(row: Any) -> str:
    if row is None:
        return "not found"
    status = row.status
    if status == "DUPLICATE":
        return f"already received (transmission {row.duplicate_of})"
    if status in ("PROCESSED", "PUBLISHED", "PARTIAL", "HELD"):
        return f"processed, {row.document_count} document(s)"
    if status == _RECEIVED:
        return "received, still being processed"
    return str(status).lower()


class MailReplies:
    """Sends the replies of received mails once their transmissions are settled."""

    def __init__(self, mailer: Mailer, outcomes: OutcomeSource, *, wait: float = 600.0,
                 look_every: float = 1.0) -> None:
        self.mailer = mailer
        self.outcomes = outcomes
        self.wait = wait
        self.look_every = look_every
        self.pending: dict[str, PendingReply] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0

    def expect(self, pending: PendingReply) -> None:
        """Register a mail whose attachments are durably received (event-loop thread)."""
        wants = pending.partner.email
        if not (wants.acknowledgements or wants.failure_notices) or not pending.items:
            return
        if pending.partner.state in ("draft", "suspended"):
            return  # its files are kept back: no reply (docs/onboarding.md)
        self.pending.setdefault(pending.key, pending)
        self._poke()

    def processed(self, outcomes: Sequence[Any] = ()) -> None:
        """Hook for the integrator, after ``Pipeline.process_many``: look now (any thread)."""
        self._poke()

    def _poke(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _rows(self, pending: PendingReply) -> list[Any]:
        """The transmissions of a reply's items, as they stand."""
        return [self.outcomes.get_transmission(i.transmission_id) for i in pending.items]

    def _documents(self, pending: PendingReply) -> list[Any]:
        """The documents found in each of a reply's items."""
        return [self.outcomes.documents_of(i.transmission_id) for i in pending.items]

    async def run(self, stop: asyncio.Event) -> None:
        """Send replies as their mails settle, until ``stop``."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while not stop.is_set():
            if self.pending:
                try:
                    await self.send_settled()
                except Exception:  # a store outage: look again later
                    log.exception("mail_replies_failed")
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self.look_every,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def send_settled(self) -> int:
        """Send every pending reply whose transmissions are settled (or waited too long)."""
        now = time.monotonic()
        done = 0
        for key, pending in list(self.pending.items()):
            if pending.next_try > now:
                continue
            rows = await asyncio.to_thread(self._rows, pending)
            settled = all(r is not None and r.status != _RECEIVED for r in rows)
            if not settled and now - pending.since < self.wait:
                continue
            docs = await asyncio.to_thread(self._documents, pending)
            message = compose(pending, rows, docs, self.mailer)
            if message is not None:
                try:
                    await self.mailer.send(message)
                except MailError:
                    pending.attempts += 1
                    if pending.attempts >= 10:
                        log.error("mail_reply_given_up", mail=key, partner=pending.partner.id)
                        del self.pending[key]
                    else:
                        pending.next_try = now + min(300.0, 2.0 ** pending.attempts)
                    continue
                self.sent += 1
                done += 1
            del self.pending[key]
        return done
