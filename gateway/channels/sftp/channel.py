"""SFTP polling channel: takes complete files from a partner's SFTP server, exactly once.

Each poll (in a worker thread, paramiko blocks) lists the partner's inbound folders, keeps
the files that match a pattern, are not temporary and are complete (``selection``: size and
mtime unchanged for ``settle`` seconds, the partner's ``[sftp] settle`` or the gateway's, 5 s
by default), and takes at most ``max_files`` of them, oldest first. A file is downloaded,
looked at again (stat), and only when its size and mtime are still those listed, and as many
bytes were read, durably received (``Receiver.receive_many``: archived and committed), then
handed to processing. A copy of a file that changed during the download (a partner still
writing under the final name; a half CSV or an EDIFACT file cut at a segment boundary may
well parse) is discarded, never stored: the file is taken once it has settled again.
For ``after = "leave"`` a file is remembered by path, size and mtime at once.

Otherwise the remote file is *held* until its transmission's outcome is in the store
(``Outcomes``; processing runs elsewhere, so this is the same poll or a later one), and
only then, the file looked at again (stat), acted on:

- changed since it was read (size or mtime; a partner writing again after the look that
  followed the download): kept on the server, and read again once it settles. The copy already stored is a
  transmission of its own, acknowledged with "changed while read" (its orders, if any, come
  again in the whole file and are recognised by ``message_id``);
- processed: deleted, or moved to ``move_to``;
- FAILED or QUARANTINED: ``on_failure``: moved into ``failed_to`` (``<folder>/failed`` by
  default, created when missing), deleted, or kept in place and remembered (in the store:
  a restart does not take it again);
- a duplicate (the same bytes as an earlier transmission): as its original, so a failed
  file written again under ``on_failure = keep`` is recorded as DUPLICATE and stays.

So a half-written file that fails to parse is moved aside, never deleted: the partner's
later writes land in the moved file (a rename keeps the open file), nothing is lost.

A crash between receive and the remote action means the file comes again: the pipeline sees
the same bytes from the same place, never acknowledged, and answers ``resumed`` (acknowledge
only) — never a second order; the same bytes under another name are recorded as a
duplicate. A remote action the server refuses leaves the file in place: it comes again at
the next poll and is acted on then.

One session is reused across polls while it works; a failure closes it, is recorded in the
channel health (``sftp:<partner id>``) and the next attempt waits with exponential back-off
up to ``retry_max``. Files larger than ``stream_above`` are downloaded into a spool file
and handed over as ``Incoming.path``: at most one such file exists at a time, and the
files held in memory for one receive batch total at most ``stream_above`` bytes.
"""

from __future__ import annotations

import asyncio
import io
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import structlog

from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.channels.sftp.connection import RemoteFile, SftpConnection, server_name
from gateway.channels.sftp.errors import SftpError
from gateway.channels.sftp.selection import Settling, wanted
from gateway.channels.sftp.settings import SftpInbound, SftpSettings
from gateway.core.errors import PayloadError
from gateway.core.ports import Incoming, Receipt, Receiver
from gateway.core.supervise import Backoff

if TYPE_CHECKING:
    from gateway.config import Partner, PartnerDirectory

log = structlog.get_logger("edigw.channels.sftp")


class Connection(Protocol):
    """What the channel needs of a session (``SftpConnection``; a fake in unit tests)."""

    @property
    def alive(self) -> bool: ...

    def list(self, folder: str) -> list[RemoteFile]: ...

    def download(self, path: str, into: IO[bytes]) -> int: ...

    def remove(self, path: str) -> None: ...

    def rename(self, source: str, target: str) -> None: ...

    def exists(self, path: str) -> bool: ...

    def stat(self, path: str) -> RemoteFile: ...

    def mkdir(self, path: str) -> None: ...

    def close(self) -> None: ...


class Outcome(Protocol):
    """A received transmission as far as the channel cares (``TransmissionRow``)."""

    @property
    def status(self) -> str: ...

    @property
    def duplicate_of(self) -> str | None: ...


class Outcomes(Protocol):
    """Where received transmissions stand (``gateway.store.db.Store``)."""

    def get_transmissions(self, tids: Sequence[str]) -> Mapping[str, Outcome]: ...


#: Transmission statuses (``gateway.store.schema``): not yet processed, and not processed.
_WAITING = "RECEIVED"
_NOT_PROCESSED = ("FAILED", "QUARANTINED")
_DUPLICATE = "DUPLICATE"


class HealthRecords(Protocol):
    """The part of ``gateway.store.channels.ChannelRecords`` the channel uses."""

    def ok(self, channel: str, kind: str, *, partner_id: str | None = None,
           detail: str | None = None) -> None: ...

    def failed(self, channel: str, kind: str, error: str, *,
               partner_id: str | None = None) -> int: ...

    def remembered(self, channel: str, files: list[tuple[str, int, int]]
                   ) -> set[tuple[str, int, int]]: ...

    def remember(self, channel: str,
                 files: list[tuple[str, int, int, str | None]]) -> None: ...


@dataclass(slots=True)
class PollResult:
    """What one poll did; ``problems`` are files received but not acknowledged remotely,
    ``kept`` files left on the server for a reason worth showing."""

    taken: int = 0
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    full: bool = False  # max_files reached: more may be waiting


@dataclass(slots=True)
class _Held:
    """A received file left on the server until its transmission's outcome is known."""

    file: RemoteFile  # as listed and read
    inbound: SftpInbound
    receipt: Receipt


class SftpChannel:
    """Polls one partner's SFTP server and hands complete files to a ``Receiver``."""

    kind = "sftp"
    #: ``Incoming.channel`` of what this channel receives (the partner is the hint).
    channel = "sftp"

    def __init__(self, partner: Partner, *, receiver: Receiver, records: HealthRecords,
                 outcomes: Outcomes, on_received: Callable[[list[Receipt]], None],
                 stream_above: int = 16 * 1024 * 1024, spool: Path | None = None,
                 retry_initial: float = 1.0, retry_max: float = 300.0, settle: float = 5.0,
                 connect: Callable[[SftpSettings], Connection] = SftpConnection.open,
                 clock: Callable[[], float] = time.monotonic,
                 partners: PartnerDirectory | None = None) -> None:
        """``settle`` is the gateway's default; the partner's ``[sftp] settle`` wins. Given
        the live ``partners`` directory, the channel follows its partner's profile there."""
        if partner.sftp is None:
            raise ValueError(f"partner {partner.id} has no [sftp] settings")
        self.partner = partner
        self.settings: SftpSettings = partner.sftp
        self.receiver = receiver
        self.records = records
        self.outcomes = outcomes
        self.on_received = on_received
        self.stream_above = stream_above
        self.spool = spool
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.connect = connect
        self.clock = clock
        self.name = f"sftp:{partner.id}"
        self.server = server_name(self.settings)
        self.default_settle = settle
        self.settling = Settling(settle=self.settings.settle or settle)
        self.failures = 0
        self.taken = 0
        self._conn: Connection | None = None
        self._held: dict[str, _Held] = {}
        self._refused: set[tuple[str, int, int]] = set()
        #: False while the partner is disabled (or its [sftp] removed): nothing is polled.
        self.active = partner.enabled
        self._stale = False
        self.partners = partners
        self._version = partners.version if partners is not None else 0

    def follow(self) -> None:
        """Take the partner's profile as the directory has it now, when it changed."""
        if self.partners is not None and self.partners.version != self._version:
            self._version = self.partners.version
            self.update(self.partners.get(self.partner.id))

    def update(self, partner: Partner | None) -> None:
        """The partner's profile changed (console): new credentials and folders from the next
        poll on; a partner disabled, removed or without [sftp] is no longer polled."""
        if partner is None or partner.sftp is None:
            self.active = False
        else:
            self.partner = partner
            self.settings = partner.sftp
            self.server = server_name(self.settings)
            self.settling.settle = self.settings.settle or self.default_settle
            self.active = partner.enabled
        self._stale = True  # the next poll reconnects with what the profile says now
        log.info("sftp_channel_updated", channel=self.name, active=self.active)

    # -- one poll (blocking: run in a worker thread) ----------------------------------------

    def poll_once(self) -> PollResult:
        """List, take and acknowledge what is complete; raises ``SftpError`` (the session is
        then closed) or ``StoreError`` (nothing acknowledged: the files stay)."""
        try:
            return self._poll(self._connection())
        except Exception:
            self.close()
            raise

    def _connection(self) -> Connection:
        if self._stale:  # the profile changed: not the session opened with the old one
            self._stale = False
            self.close()
        if self._conn is not None and self._conn.alive:
            return self._conn
        self.close()
        self._conn = self.connect(self.settings)
        log.info("sftp_connected", channel=self.name, server=self.server)
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _poll(self, conn: Connection) -> PollResult:
        s = self.settings
        result = PollResult()
        self._release(conn, result)  # what earlier polls received and processing has done
        budget = s.max_files
        for inbound in s.inbound:
            if budget <= 0:
                result.full = True
                break
            files = [f for f in conn.list(inbound.folder)
                     if f.path not in self._held
                     and wanted(f.name, patterns=inbound.patterns,
                                temp_prefixes=s.temp_prefixes, temp_suffixes=s.temp_suffixes)]
            if (inbound.after == "leave" or inbound.on_failure == "keep") and files:
                known = self.records.remembered(self.name, [(f.path, f.size, f.mtime)
                                                            for f in files])
                files = [f for f in files if (f.path, f.size, f.mtime) not in known]
            ready = sorted(self.settling.look(inbound.folder, files, self.clock()),
                           key=lambda f: (f.mtime, f.name))
            ready = [f for f in ready if not self._too_large(f, result)]
            if len(ready) > budget:
                ready, result.full = ready[:budget], True
            budget -= len(ready)
            self._take(conn, inbound, ready, result)
        self._release(conn, result)  # processed meanwhile (or in ``on_received``)
        self.taken += result.taken
        return result

    def _too_large(self, f: RemoteFile, result: PollResult) -> bool:
        if f.size <= self.settings.max_size:
            return False
        sig = (f.path, f.size, f.mtime)
        result.refused.append(f"{f.name} ({f.size} bytes)")
        if sig not in self._refused:  # said once, not at every poll
            self._refused.add(sig)
            log.error("sftp_file_refused", channel=self.name, file=f.path, size=f.size,
                      reason=f"over the {self.settings.max_size}-byte limit; left on the "
                             "server")
        return True

    def _take(self, conn: Connection, inbound: SftpInbound, files: list[RemoteFile],
              result: PollResult) -> None:
        """Download and receive ``files`` in batches bounded in memory by ``stream_above``."""
        batch: list[tuple[RemoteFile, Incoming]] = []
        held = 0
        for f in files:
            item = self._download(conn, f, result)
            if item is None:
                continue
            if item.path is None and batch and held + len(item.data) > self.stream_above:
                self._receive(conn, inbound, batch, result)
                batch, held = [], 0
            batch.append((f, item))
            held += len(item.data)
            if item.path is not None:  # a spooled file goes at once: one on disk at a time
                self._receive(conn, inbound, batch, result)
                batch, held = [], 0
        if batch:
            self._receive(conn, inbound, batch, result)

    def _download(self, conn: Connection, f: RemoteFile, result: PollResult
                  ) -> Incoming | None:
        """Read ``f``, then look at it again: a copy of a file that changed meanwhile (or
        whose length is not the listed size) is discarded, never stored."""
        spooled: Path | None = None
        try:
            if f.size > self.stream_above:
                handle = tempfile.NamedTemporaryFile(dir=self.spool, prefix="edigw-sftp-",
                                                     suffix=".part", delete=False)
                spooled = Path(handle.name)
                with handle:
                    got = conn.download(f.path, handle)
                data = b""
            else:
                buffer = io.BytesIO()
                got = conn.download(f.path, buffer)
                data = buffer.getvalue()
            now: RemoteFile | None = conn.stat(f.path)
        except FileNotFoundError:
            got, now = -1, None  # taken away by someone else since the listing
        except BaseException:
            _unlink(spooled)
            raise
        if now is None or not read_whole(f, got, now):
            # Still being written (or gone): look again from the start, take it once settled.
            self.settling.forget(f.path)
            _unlink(spooled)
            if now is not None:
                result.kept.append(f"{f.name} (changed while read)")
                log.warning("sftp_file_changed_while_read", channel=self.name, file=f.path,
                            read=(f.size, f.mtime), downloaded=got,
                            now=(now.size, now.mtime), stored=False)
            return None
        return Incoming(data=data, channel=self.channel, channel_ref=self.ref(f),
                        filename=f.name, partner_hint=self.partner.id, path=spooled)

    def ref(self, f: RemoteFile) -> str:
        """Where a file came from: the same file seen again has the same reference."""
        return f"sftp://{self.server}{f.path}"

    def _receive(self, conn: Connection, inbound: SftpInbound,
                 batch: list[tuple[RemoteFile, Incoming]], result: PollResult) -> None:
        items = [item for _, item in batch]
        try:
            try:
                receive_then_acknowledge(
                    self.receiver, items,
                    lambda receipts: self._received(inbound, batch, receipts, result),
                    self.on_received)
            except PayloadError:
                if len(batch) == 1:
                    raise
                # One payload the receiver refuses (over its size limit) must not hold
                # back the others: receive them one by one.
                for one in batch:
                    self._receive(conn, inbound, [one], result)
                return
        except PayloadError as exc:
            f = batch[0][0]
            self._refused.add((f.path, f.size, f.mtime))
            result.refused.append(f"{f.name}: {exc}")
            log.error("sftp_file_refused", channel=self.name, file=f.path, reason=str(exc))
            return
        except BaseException:
            for f, _ in batch:
                self.settling.forget(f.path)  # not received: taken again once stable
            raise
        finally:
            for _, item in batch:
                _unlink(item.path)

    def _received(self, inbound: SftpInbound, batch: list[tuple[RemoteFile, Incoming]],
                  receipts: list[Receipt], result: PollResult) -> Acknowledgement[None]:
        """The acknowledgement: files ``left`` on the server are remembered and acknowledged
        at once; the others are held until their transmission's outcome decides what
        becomes of them (``_release``). Processing depends on the durable receive only: all
        are handed to it now, and a remote file whose action then fails comes again as
        ``resumed``."""
        result.taken += len(receipts)
        for (f, _), r in zip(batch, receipts, strict=True):
            self.settling.forget(f.path)
            log.info("sftp_file_received", channel=self.name, file=f.path, size=f.size,
                     transmission_id=r.transmission_id, duplicate_of=r.duplicate_of,
                     resumed=r.resumed)
        if inbound.after == "leave":
            self.records.remember(self.name, [(f.path, f.size, f.mtime, r.transmission_id)
                                              for (f, _), r in zip(batch, receipts,
                                                                   strict=True)])
            return Acknowledgement(
                acknowledged=list(receipts), process=list(receipts),
                detail=f"left on {self.server}, remembered by name, size and mtime")
        for (f, _), r in zip(batch, receipts, strict=True):
            self._held[f.path] = _Held(file=f, inbound=inbound, receipt=r)
        return Acknowledgement(process=list(receipts))

    def _release(self, conn: Connection, result: PollResult) -> None:
        """Act on each held file whose transmission has an outcome: look at it again, then
        delete or move it (processed), apply ``on_failure`` (failed), or keep it (changed
        since it was read)."""
        if not self._held:
            return
        rows = dict(self.outcomes.get_transmissions(
            [h.receipt.transmission_id for h in self._held.values()]))
        originals = {row.duplicate_of for row in rows.values()
                     if row.status == _DUPLICATE and row.duplicate_of} - rows.keys()
        if originals:
            rows.update(self.outcomes.get_transmissions(sorted(originals)))
        acks: dict[str, list[Receipt]] = {}
        for path, held in list(self._held.items()):
            row = _outcome(rows, held.receipt.transmission_id)
            if row is None or row.status == _WAITING:
                continue  # not processed yet: asked again at the next poll
            f, inbound, r = held.file, held.inbound, held.receipt
            failed = row.status in _NOT_PROCESSED
            try:
                now = conn.stat(path)
            except FileNotFoundError:
                del self._held[path]
                acks.setdefault(f"gone from {self.server} (taken away by someone else)",
                                []).append(r)
                continue
            except SftpError as exc:
                self._not_acknowledged(conn, held, exc, result)
                if not conn.alive:
                    break
                continue
            if (now.size, now.mtime) != (f.size, f.mtime):
                del self._held[path]  # listed again, taken again once it settles
                result.kept.append(f"{f.name} (changed while read)")
                log.warning("sftp_file_changed_while_read", channel=self.name, file=path,
                            transmission_id=r.transmission_id, read=(f.size, f.mtime),
                            now=(now.size, now.mtime))
                acks.setdefault(
                    f"changed on {self.server} while read ({f.size} bytes read, "
                    f"{now.size} now): kept there and read again", []).append(r)
                continue
            action = inbound.on_failure if failed else inbound.after
            try:
                detail = self._act(conn, f, inbound, r.transmission_id, action, failed)
            except SftpError as exc:
                self._not_acknowledged(conn, held, exc, result)
                if not conn.alive:
                    break
                continue
            del self._held[path]
            if failed and action == "keep":
                result.kept.append(f"{f.name} ({row.status.lower()})")
            acks.setdefault(detail, []).append(r)
        for detail, receipts in acks.items():
            self.receiver.acknowledged(receipts, detail)

    def _act(self, conn: Connection, f: RemoteFile, inbound: SftpInbound, tid: str,
             action: str, failed: bool) -> str:
        """Delete, move or keep one file; returns what was done, for its timeline."""
        why = "not processed: " if failed else ""
        if action == "keep":
            self.records.remember(self.name, [(f.path, f.size, f.mtime, tid)])
            return f"{why}kept on {self.server}, remembered by name, size and mtime"
        try:
            if action == "delete":
                conn.remove(f.path)
                return f"{why}removed from {self.server}"
            folder = (inbound.failed_to or posixpath.join(inbound.folder, "failed")) \
                if failed else inbound.move_to or ""
            if failed and not conn.exists(folder):
                conn.mkdir(folder)
            target = self._move(conn, f, folder, tid)
            return f"{why}moved to {target} on {self.server}"
        except FileNotFoundError:
            return f"gone from {self.server} (taken away by someone else)"

    def _not_acknowledged(self, conn: Connection, held: _Held, exc: SftpError,
                          result: PollResult) -> None:
        """The remote action failed: the file stays, comes again and is acted on then."""
        del self._held[held.file.path]
        result.problems.append(str(exc))
        log.error("sftp_acknowledge_failed", channel=self.name, file=held.file.path,
                  transmission_id=held.receipt.transmission_id, error=str(exc))

    def _move(self, conn: Connection, f: RemoteFile, folder: str, tid: str) -> str:
        target = posixpath.join(folder, f.name)
        if conn.exists(target):  # never overwrite an earlier file of the same name
            stem, ext = posixpath.splitext(f.name)
            target = posixpath.join(folder, f"{stem}.{tid}{ext}")
        conn.rename(f.path, target)
        return target

    # -- health --------------------------------------------------------------------------------

    def record_ok(self, result: PollResult) -> None:
        detail = f"{result.taken} file(s) taken"
        if result.refused:
            detail += f"; refused and left on the server: {', '.join(result.refused[:5])}"
        if result.kept:
            detail += f"; kept on the server: {', '.join(result.kept[:5])}"
        if result.problems:
            self._record_failed("received but not acknowledged: " + "; ".join(
                result.problems[:3]))
            return
        try:
            self.records.ok(self.name, self.kind, partner_id=self.partner.id, detail=detail)
        except Exception as exc:  # the store is down: the next round records again
            log.warning("channel_health_not_recorded", channel=self.name, error=str(exc))

    def _record_failed(self, error: str) -> int:
        try:
            return self.records.failed(self.name, self.kind, error, partner_id=self.partner.id)
        except Exception as exc:
            log.warning("channel_health_not_recorded", channel=self.name, error=str(exc))
            return -1

    def backoff(self) -> float:
        """Seconds to wait after ``failures`` consecutive failed polls."""
        return Backoff(min(self.retry_initial, self.retry_max), self.retry_max).delay(
            max(1, self.failures))

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; paramiko's blocking calls run in a worker thread."""
        log.info("sftp_channel_started", channel=self.name, server=self.server,
                 folders=[i.folder for i in self.settings.inbound])
        try:
            while not stop.is_set():
                self.follow()
                if not self.active:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_interval)
                    except TimeoutError:
                        pass
                    continue
                try:
                    result = await asyncio.to_thread(self.poll_once)
                except Exception as exc:  # never let one failed poll stop the channel
                    self.failures += 1
                    error = str(exc) if isinstance(exc, SftpError) else _said(exc)
                    delay = self.backoff()
                    log.error("sftp_poll_failed", channel=self.name, server=self.server,
                              error=error, failures=self.failures, retry_in=delay)
                    await asyncio.to_thread(self._record_failed, error)
                else:
                    if self.failures:
                        log.info("sftp_recovered", channel=self.name, server=self.server,
                                 after_failures=self.failures)
                    self.failures = 0
                    await asyncio.to_thread(self.record_ok, result)
                    delay = 0.0 if result.full else self.settings.poll_interval
                if delay:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    except TimeoutError:
                        pass
        finally:
            await asyncio.to_thread(self.close)


def _outcome(rows: Mapping[str, Outcome], tid: str) -> Outcome | None:
    """The outcome that decides what becomes of the remote file of ``tid``: a duplicate's
    is its original's (the same bytes not processed are not processed either: under
    ``on_failure = keep`` a failed file written again stays on the server)."""
    row = rows.get(tid)
    if row is not None and row.status == _DUPLICATE and row.duplicate_of:
        return rows.get(row.duplicate_of, row)
    return row


def read_whole(listed: RemoteFile, got: int, now: RemoteFile) -> bool:
    """Whether a download of ``listed`` that copied ``got`` bytes, after which the file
    looked like ``now``, is the whole file: the same size and mtime before and after, and
    that many bytes read."""
    return got == listed.size and (now.size, now.mtime) == (listed.size, listed.mtime)


def _said(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def start(ctx: ChannelContext) -> ChannelRun:
    """A poller for each enabled partner whose profile has ``[sftp]`` inbound folders."""
    run = ChannelRun()
    for p in ctx.partners:
        if p.enabled and p.sftp is not None and p.sftp.inbound:
            channel = SftpChannel(p, receiver=ctx.receiver, records=ctx.records,
                                  on_received=ctx.on_received, outcomes=ctx.store,
                                  settle=ctx.settings.sftp.settle,
                                  stream_above=ctx.settings.processing.stream_above,
                                  partners=ctx.partners)
            run.loops.append((channel.name, channel.run))
    return run
