"""A thin IMAP session over aioimaplib: the few commands the mailbox channel needs.

Every aioimaplib or socket error is translated here into ``MailError`` (the channel and the
core never see a library exception). Folder names are given with ``/`` and turned into the
server's own hierarchy delimiter; they must be ASCII (no modified UTF-7 here).
"""

from __future__ import annotations

import asyncio
import re
import ssl

import aioimaplib

from gateway.channels.email.settings import MailboxSettings
from gateway.core.errors import EdigwError

#: Set on a message once its attachments are durably received (when the server allows
#: keywords): a message flagged so but still in the folder only needs its move finished.
PROCESSED_KEYWORD = "$EdigwProcessed"


class MailError(EdigwError):
    """The mail server could not be reached or refused a command (channel health failure)."""


_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_LIST_DELIM = re.compile(rb'^\([^)]*\) (?:"(.)"|NIL) ')
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_LITERAL = re.compile(rb"\{(\d+)\}$")


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSession:
    """One logged-in connection with a selected folder."""

    def __init__(self, client: aioimaplib.IMAP4, settings: MailboxSettings) -> None:
        self.client = client
        self.settings = settings
        self.uidvalidity = 0
        self.delimiter = "/"
        self.keywords = True

    @classmethod
    async def open(cls, settings: MailboxSettings) -> ImapSession:
        """Connect, log in and select ``settings.folder``; raises ``MailError``."""
        if settings.tls == "starttls":
            raise MailError(f"mailbox {settings.name}: IMAP STARTTLS is not supported by the "
                            "client library; use tls = 'ssl' (port 993)")
        try:
            if settings.tls == "ssl":
                client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                    settings.host, settings.port, timeout=settings.timeout,
                    ssl_context=ssl.create_default_context())
            else:
                client = aioimaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
            await client.wait_hello_from_server()
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise MailError(f"cannot connect to {settings.host}:{settings.port}: "
                            f"{_describe(exc)}") from exc
        session = cls(client, settings)
        try:
            await session._login_and_select()
        except BaseException:
            await session.close()
            raise
        return session

    async def _login_and_select(self) -> None:
        s = self.settings
        response = await self._call("LOGIN", self.client.login(s.user, s.password_value() or ""))
        if response.result != "OK":
            raise MailError(f"login as {s.user} refused: {_text(response)}")
        listing = await self._call("LIST", self.client.list('""', '""'))
        for line in listing.lines:
            m = _LIST_DELIM.match(bytes(line))
            if m and m.group(1):
                self.delimiter = m.group(1).decode()
        response = await self._call("SELECT", self.client.select(quote(self.folder(s.folder))))
        if response.result != "OK":
            raise MailError(f"cannot select folder {s.folder}: {_text(response)}")
        for line in response.lines:
            m = _UIDVALIDITY.search(bytes(line))
            if m:
                self.uidvalidity = int(m.group(1))
            if b"PERMANENTFLAGS" in bytes(line):
                self.keywords = b"\\*" in bytes(line)

    def folder(self, name: str) -> str:
        return name.replace("/", self.delimiter) if self.delimiter != "/" else name

    @property
    def can_idle(self) -> bool:
        return bool(self.client.has_capability("IDLE"))

    async def search(self, *criteria: str) -> list[int]:
        response = await self._call("UID SEARCH", self.client.uid_search(*criteria, charset=None))
        self._ok(response, "UID SEARCH")
        uids: list[int] = []
        for line in response.lines[:-1]:  # the last is the tagged completion
            words = bytes(line).split()
            if words and words[0] == b"SEARCH":  # aioimaplib strips it; some versions not
                words = words[1:]
            if words and all(w.isdigit() for w in words):
                uids += [int(w) for w in words]
        return sorted(uids)

    async def size(self, uid: int) -> int | None:
        """The message's size in bytes (None when it is gone)."""
        response = await self._call("UID FETCH", self.client.uid("fetch", str(uid),
                                                                  "(UID RFC822.SIZE)"))
        self._ok(response, "UID FETCH")
        for line in response.lines:
            m = _FETCH_SIZE.search(bytes(line))
            if m and _FETCH_UID.search(bytes(line)):
                return int(m.group(1))
        return None

    async def fetch(self, uid: int, *, header_only: bool = False) -> bytes | None:
        """The raw message (or its header), without setting ``\\Seen``; None when it is gone."""
        part = "BODY.PEEK[HEADER]" if header_only else "BODY.PEEK[]"
        response = await self._call("UID FETCH", self.client.uid("fetch", str(uid),
                                                                  f"(UID {part})"))
        self._ok(response, "UID FETCH")
        lines = response.lines
        for i, line in enumerate(lines[:-1]):
            if isinstance(line, bytes | bytearray) and _LITERAL.search(bytes(line)) \
                    and b"FETCH" in bytes(line):
                return bytes(lines[i + 1])
        return None

    async def flag(self, uid: int) -> None:
        flags = "\\Seen " + PROCESSED_KEYWORD if self.keywords else "\\Seen"
        response = await self._call("UID STORE", self.client.uid("store", str(uid), "+FLAGS",
                                                                  f"({flags})"))
        self._ok(response, "UID STORE")

    async def ensure_folder(self, name: str) -> None:
        response = await self._call("CREATE", self.client.create(quote(self.folder(name))))
        if response.result != "OK" and b"exists" not in _text(response).lower().encode():
            raise MailError(f"cannot create folder {name}: {_text(response)}")

    async def move(self, uid: int, folder: str) -> None:
        """Move one message: MOVE when offered, else COPY, ``\\Deleted`` and EXPUNGE."""
        target = quote(self.folder(folder))
        if self.client.has_capability("MOVE"):
            response = await self._call("UID MOVE", self.client.uid("move", str(uid), target))
            if response.result == "OK":
                return
            if b"TRYCREATE" not in bytes(response.lines[-1] if response.lines else b""):
                raise MailError(f"UID MOVE to {folder} refused: {_text(response)}")
            await self.ensure_folder(folder)
            response = await self._call("UID MOVE", self.client.uid("move", str(uid), target))
            self._ok(response, f"UID MOVE to {folder}")
            return
        response = await self._call("UID COPY", self.client.uid("copy", str(uid), target))
        if response.result != "OK":
            await self.ensure_folder(folder)
            response = await self._call("UID COPY", self.client.uid("copy", str(uid), target))
            self._ok(response, f"UID COPY to {folder}")
        response = await self._call("UID STORE", self.client.uid("store", str(uid), "+FLAGS",
                                                                  "(\\Deleted)"))
        self._ok(response, "UID STORE \\Deleted")
        if self.client.has_capability("UIDPLUS"):
            response = await self._call("UID EXPUNGE", self.client.uid("expunge", str(uid)))
        else:
            response = await self._call("EXPUNGE", self.client.expunge())
        self._ok(response, "EXPUNGE")

    async def noop(self) -> None:
        self._ok(await self._call("NOOP", self.client.noop()), "NOOP")

    async def wait_for_news(self, timeout: float, stop: asyncio.Event) -> bool:
        """IDLE up to ``timeout`` seconds; True when the server announced new mail."""
        try:
            idle = await self.client.idle_start(timeout=timeout)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise MailError(f"IDLE failed: {_describe(exc)}") from exc
        news = False
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not news:
                push = asyncio.ensure_future(self.client.wait_server_push(timeout=timeout + 5))
                done, _ = await asyncio.wait({push, stopper}, timeout=timeout + 5,
                                             return_when=asyncio.FIRST_COMPLETED)
                if push not in done:
                    push.cancel()
                    break
                try:
                    lines = push.result()
                except TimeoutError:
                    break
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                news = any(b"EXISTS" in bytes(x) or b"RECENT" in bytes(x)
                           for x in (lines if isinstance(lines, list) else [lines]))
        finally:
            stopper.cancel()
            try:
                self.client.idle_done()
                await asyncio.wait_for(idle, timeout=self.settings.timeout)
            except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
                raise MailError(f"IDLE did not end: {_describe(exc)}") from exc
        return news

    async def close(self) -> None:
        try:
            if self.client.protocol is not None and self.client.get_state() != "LOGOUT":
                await asyncio.wait_for(self.client.logout(), timeout=2)
        except Exception:  # closing a dead connection: nothing to do
            pass
        transport = getattr(self.client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    async def _call(self, what: str, coro: object) -> aioimaplib.Response:
        try:
            return await asyncio.wait_for(coro, timeout=self.settings.timeout + 1)  # type: ignore[arg-type]
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise MailError(f"{what} failed: {_describe(exc)}") from exc

    @staticmethod
    def _ok(response: aioimaplib.Response, what: str) -> None:
        if response.result != "OK":
            raise MailError(f"{what} refused: {_text(response)}")


def _text(response: aioimaplib.Response) -> str:
    last = response.lines[-1] if response.lines else b""
    return bytes(last).decode("utf-8", "replace")[:300]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
