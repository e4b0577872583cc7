"""A second core for large in-memory EDIFACT payloads (``gateway.core.ports.Offload``).

One worker process (spawned once, kept warm) reads the same payload and judges the last
part of its messages (validate, map, canonical JSON) while the processing thread judges
the first part. Only plainly mapped messages come back, as their canonical JSON bytes and
what the store needs; anything else (a rejected interchange, a failed or unsupported
message, a document over the message size) comes back as None and is judged again by the
caller, so that errors, CONTRL verdicts and warnings are made by the same code as always.
Why: processing a 5,000-order file was CPU-bound on one interpreter; the machine has two.

The pipeline holds a ``Workers`` through the core's ``Offload`` hook: it offers each large
payload (``share``), asks for its documents once the partner is known (``documents``) and
gives the worker back (``end``); it knows nothing of EDIFACT.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import pickle
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel

from gateway.core.ports import (
    FailedMessage,
    MappedDocument,
    ParsedPayload,
    Shared,
)
from gateway.formats.edifact.model import Interchange
from gateway.formats.edifact.reader import EdifactPayload, EdifactReader, validator

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.workers")
_READER: EdifactReader | None = None
#: The payload read by ``prepare``, by key, until ``judge_tail`` takes it.
_PARSED: dict[str, EdifactPayload] = {}
#: A payload judged, freed once its answer is on its way.
_DONE: list[EdifactPayload] = []

#: One message judged by the worker: its document (JSON already dumped) and the
#: validation warnings it gave; None to judge it in the caller.
Judged = tuple[MappedDocument, list[str]] | None


class Prebuilt(BaseModel):
    """A canonical document already dumped to its JSON bytes by the worker."""

    payload: bytes

    def to_json_bytes(self) -> bytes:
        return self.payload


def _init(mappings_root: str) -> None:
    global _READER
    from gateway.formats.mapping import MappingSet

    _READER = EdifactReader(MappingSet.load(Path(mappings_root)))


def _rejected(interchange: Interchange, known: dict[str, str], policy: str) -> bool:
    """Whether the caller will reject ``interchange`` whole (its envelope, or a repeated
    control reference under the partner's ``reject``): none of its messages is judged
    here. The caller decides for itself; this only spares the work."""
    ref = interchange.control_ref
    return interchange.error is not None or (
        policy == "reject" and bool(ref) and ref in known)


def prepare(key: str, path: str, sha256: str, filename: str | None) -> bool:
    """Read the archived payload while the caller reads it too (then identifies the
    partner). The worker reads the file itself: bytes sent through the pool's pipe were
    written 64 KiB at a time by a thread that waits for the caller's GIL at each step."""
    _PARSED.clear()
    _DONE.clear()
    if _READER is None:
        return False
    try:
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            return False
        _PARSED[key] = _READER.parse(data, filename=filename)
    except Exception:  # the caller reads it and says what is wrong
        return False
    return True


def judge_tail(key: str, filename: str | None, partner: Partner, tid: str,
               known_refs: dict[str, str], start: int, max_bytes: int) -> str | None:
    """Messages ``start``.. of the payload ``prepare`` read (counted across interchanges),
    each as (MappedDocument with a Prebuilt document, validation warnings) or None, pickled
    into a temporary file whose name is returned (``take`` reads and removes it: one read
    instead of a pipe fed in small steps); None when nothing was prepared."""
    parsed = _PARSED.pop(key, None)
    if parsed is None:
        return None
    _DONE.append(parsed)  # freed after the answer is sent
    policy = partner.edifact
    known = dict(known_refs or {})
    validate = validator()
    out: list[Judged] = []
    index = 0
    for interchange in parsed.interchanges:
        rejected = _rejected(interchange, known, policy.duplicate_interchange)
        if interchange.control_ref and interchange.control_ref not in known:
            known[interchange.control_ref] = f"earlier in this file ({filename or 'payload'})"
        for message in interchange.messages:
            if index < start:
                index += 1
                continue
            index += 1
            if rejected:
                out.append(None)
                continue
            before = len(parsed.warnings)
            result, error = parsed.judge(partner, interchange, message, rejected=None,
                                         validate=validate, transmission_id=tid,
                                         filename=filename)
            if error is not None or not isinstance(result, MappedDocument):
                out.append(None)
                continue
            payload = result.document.to_json_bytes()  # type: ignore[attr-defined]
            if len(payload) > max_bytes:
                out.append(None)
                continue
            result.document = Prebuilt(payload=payload)
            out.append((result, parsed.warnings[before:]))
    handle, name = tempfile.mkstemp(prefix="edigw-tail-", suffix=".pickle")
    with os.fdopen(handle, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    return name


def take(name: str | None) -> list[Judged]:
    """The results ``judge_tail`` left in ``name`` (the file is removed)."""
    if name is None:
        return []
    try:
        with open(name, "rb") as f:
            blob = f.read()
    finally:
        os.unlink(name)
    judged: list[Judged] = pickle.loads(blob)
    return judged


def _serve(conn: Connection, mappings_root: str) -> None:
    """The worker's loop: one request at a time, answered in order; ends with its pipe."""
    # The collector runs between requests only: it would otherwise walk the two million
    # young objects of a large payload while it is read (as the processing thread pauses it).
    gc.disable()
    try:
        _init(mappings_root)
        conn.send(("ready", None))
    except Exception as exc:  # pragma: no cover - the caller judges everything itself
        conn.send(("failed", repr(exc)))
        return
    calls: dict[str, Callable[..., Any]] = {"prepare": prepare, "judge_tail": judge_tail}
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", calls[op](*args)))
        except Exception as exc:
            conn.send(("error", repr(exc)))
        if op == "judge_tail":
            _DONE.clear()
            gc.collect()


class Workers:  # gateway.core.ports.Offload[Partner]
    """One spawned worker process, started once and kept warm, spoken to through a pipe
    by the processing thread itself (no pool threads: each of those waited for the busy
    processing thread's GIL before a request went out). The pipeline's ``Offload``."""

    def __init__(self, mappings_root: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, str(mappings_root)),
                                   name="edigw-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = threading.Event()
        self.failed: str | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._pending = 0
        #: The payload ``share`` gave the worker, until ``documents`` asks for its tail.
        self._key: str | None = None
        self._waiter = threading.Thread(target=self._wait_ready, name="edigw-worker-start",
                                        daemon=True)
        self._waiter.start()

    def _wait_ready(self) -> None:
        try:
            kind, detail = self.conn.recv()
        except (EOFError, OSError) as exc:
            kind, detail = "failed", repr(exc)
        if kind != "ready":
            self.failed = detail or "worker failed"
            log.warning("workers_failed", reason=self.failed)
        else:
            log.info("workers_ready")
        self.ready.set()

    def usable(self) -> bool:
        return self.ready.is_set() and self.failed is None

    def begin(self) -> bool:
        """Take the worker for one payload; False when not ready or another thread has it."""
        if not self.usable():
            return False
        with self._lock:
            if self._owner is not None:
                return False
            self._owner = threading.get_ident()
            return True

    def call(self, op: str, *args: Any) -> None:
        """Send a request; its answer is read by ``result`` (answers come in order)."""
        self.conn.send((op, args))
        self._pending += 1

    def result(self) -> Any:
        """The answer to the oldest request not yet read; raises when the worker failed."""
        self._pending -= 1
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.failed = repr(exc)
            raise
        if kind != "ok":
            raise RuntimeError(f"worker: {value}")
        return value

    def end(self) -> None:
        """Read any answers left (a payload that failed before its tail was asked for) and
        give the worker back; nothing when this thread does not have it."""
        if self._owner != threading.get_ident():
            return
        try:
            while self._pending > 0 and self.failed is None:
                try:
                    take(self.result())
                except Exception:
                    continue
        finally:
            self._pending = 0
            self._owner = None
            self._key = None

    # -- gateway.core.ports.Offload ------------------------------------------------------

    def share(self, payload: Shared, *, min_messages: int) -> bool:
        """Have the worker read an EDIFACT payload of at least ``min_messages`` messages
        (from the archive) while the caller reads it; False when not done."""
        if (payload.format != "edifact" or not self.usable()
                or payload.data.count(b"UNH") < min_messages or not self.begin()):
            return False
        try:
            self.call("prepare", payload.transmission_id, str(payload.archived),
                      payload.sha256, payload.filename)
        except Exception as exc:  # the worker is gone: judge everything in the caller
            log.warning("worker_unavailable", reason=repr(exc))
            return False
        self._key = payload.transmission_id
        return True

    def documents(self, parsed: ParsedPayload[Partner], *, partner: Partner,
                  transmission_id: str, filename: str | None, known_refs: dict[str, str],
                  share: float, min_messages: int, max_bytes: int
                  ) -> list[MappedDocument | FailedMessage] | None:
        """``parsed.documents`` with the last ``share`` of its messages judged by the worker
        meanwhile (those it could map plainly); None when nothing was shared."""
        key, self._key = self._key, None
        if key is None or not isinstance(parsed, EdifactPayload):
            return None
        n = sum(len(i.messages) for i in parsed.interchanges)
        start = n - int(n * share) if n >= min_messages else n
        try:  # (fewer messages than it looked: the worker only drops what it read)
            self.call("judge_tail", key, filename, partner, transmission_id, known_refs,
                      start, max_bytes)
        except Exception as exc:  # the worker is gone: judge everything in the caller
            log.warning("worker_unavailable", reason=repr(exc))
            return None
        if start == n:
            return None
        return parsed.documents(partner=partner, transmission_id=transmission_id,
                                filename=filename, known_refs=known_refs,
                                outsourced=self._tail(start))

    def _tail(self, start: int) -> Callable[[int], Judged]:
        """Message ``i``'s result as the worker judged it (asked for at the first message
        of its share), or None to judge it in the caller."""
        results: list[Judged] | None = None

        def outsourced(i: int) -> Judged:
            nonlocal results
            if i < start:
                return None
            if results is None:
                try:
                    prepared = self.result()
                    results = take(self.result()) if prepared else []
                except Exception as exc:  # judged in the caller instead, same outcome
                    log.warning("worker_failed", reason=repr(exc))
                    results = []
            j = i - start
            return results[j] if j < len(results) else None
        return outsourced

    def close(self) -> None:
        self.conn.close()
        self.process.join(2)
        if self.process.is_alive():
            self.process.terminate()
