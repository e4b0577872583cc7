"""A second core for large in-memory EDIFACT payloads.

One worker process (spawned once, kept warm) reads the same payload and judges the last
part of its messages (validate, map, canonical JSON) while the processing thread judges
the first part. Only plainly mapped messages come back, as their canonical JSON bytes and
what the store needs; anything else (a rejected interchange, a failed or unsupported
message, a document over the message size) comes back as None and is judged again by the
caller, so that errors, CONTRL verdicts and warnings are made by the same code as always.
Why: processing a 5,000-order file was CPU-bound on one interpreter; the machine has two.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import pickle
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("edigw.workers")
_READER: Any = None
#: The payload read by ``prepare``, by key, until ``judge_tail`` takes it.
_PARSED: dict[str, Any] = {}
#: A payload judged, freed once its answer is on its way.
_DONE: list[Any] = []


@dataclass(slots=True)
class Prebuilt:
    """A canonical document already dumped to its JSON bytes by the worker."""

    payload: bytes

    def to_json_bytes(self) -> bytes:
        return self.payload


def _init(mappings_root: str) -> None:
    global _READER
    from gateway.formats.edifact.reader import EdifactReader
    from gateway.formats.mapping import MappingSet

    _READER = EdifactReader(MappingSet.load(Path(mappings_root)))


def _ready() -> bool:
    return _READER is not None


def prepare(key: str, path: str, sha256: str, filename: str | None) -> bool:
    """Read the archived payload while the caller reads it too (then identifies the
    partner). The worker reads the file itself: bytes sent through the pool's pipe were
    written 64 KiB at a time by a thread that waits for the caller's GIL at each step."""
    _PARSED.clear()
    _DONE.clear()
    try:
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            return False
        _PARSED[key] = _READER.parse(data, filename=filename)
    except Exception:  # the caller reads it and says what is wrong
        return False
    return True


def judge_tail(key: str, filename: str | None, partner: Any, tid: str,
               known_refs: dict[str, str], start: int, max_bytes: int) -> str | None:
    """Messages ``start``.. of the payload ``prepare`` read (counted across interchanges),
    each as (MappedDocument with a Prebuilt document, validation warnings) or None, pickled
    into a temporary file whose name is returned (``take`` reads and removes it: one read
    instead of a pipe fed in small steps); None when nothing was prepared."""
    from gateway.formats.edifact.reader import _validator

    parsed = _PARSED.pop(key, None)
    if parsed is None:
        return None
    _DONE.append(parsed)  # freed after the answer is sent
    policy = partner.edifact
    known = dict(known_refs or {})
    validate = _validator()
    out: list[Any] = []
    index = 0
    for interchange in parsed.interchanges:
        rejected = interchange.error or parsed._duplicate(
            interchange, known, policy.duplicate_interchange)
        if interchange.control_ref and interchange.control_ref not in known:
            known[interchange.control_ref] = f"earlier in this file ({filename or 'payload'})"
        for message in interchange.messages:
            if index < start:
                index += 1
                continue
            index += 1
            if rejected is not None:
                out.append(None)
                continue
            before = len(parsed.warnings)
            result, error = parsed.judge(partner, interchange, message, rejected=None,
                                         validate=validate, transmission_id=tid,
                                         filename=filename)
            if error is not None or not hasattr(result, "document"):
                out.append(None)
                continue
            payload = result.document.to_json_bytes()
            if len(payload) > max_bytes:
                out.append(None)
                continue
            result.document = Prebuilt(payload)
            out.append((result, parsed.warnings[before:]))
    handle, name = tempfile.mkstemp(prefix="edigw-tail-", suffix=".pickle")
    with os.fdopen(handle, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    return name


def take(name: str | None) -> list[Any]:
    """The results ``judge_tail`` left in ``name`` (the file is removed)."""
    if name is None:
        return []
    try:
        with open(name, "rb") as f:
            blob = f.read()
    finally:
        os.unlink(name)
    return pickle.loads(blob)


def _serve(conn: Any, mappings_root: str) -> None:
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
    calls = {"prepare": prepare, "judge_tail": judge_tail}
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


class Workers:
    """One spawned worker process, started once and kept warm, spoken to through a pipe
    by the processing thread itself (no pool threads: each of those waited for the busy
    processing thread's GIL before a request went out)."""

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

    def close(self) -> None:
        self.conn.close()
        self.process.join(2)
        if self.process.is_alive():
            self.process.terminate()
