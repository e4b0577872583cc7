"""The store's engine: connections, SQLite pragmas, outages and write transactions.

Every repository of ``gateway.store`` shares one ``StoreEngine``: the engine, and the
write lock SQLite's single writer needs. A method that returns has committed.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.core import clock, errors
from gateway.core.errors import StoreError

_S = TypeVar("_S", bound="StoreEngine")
_P = ParamSpec("_P")
_R = TypeVar("_R")
#: The connection ``StoreEngine.reading`` holds for this thread or task, with its store.
_PINNED: contextvars.ContextVar[tuple[StoreEngine, sa.Connection] | None] = (
    contextvars.ContextVar("edigw_store_reading", default=None))


def one_connection(read: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """``read(store, ...)`` made inside ``store.reading()``: its reads through
    ``StoreEngine.connect`` share one connection."""

    @functools.wraps(read)
    def reading(store: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with store.reading():
            return read(store, *args, **kwargs)

    return reading


def utcnow() -> dt.datetime:
    return clock.now()


class StoreEngine:
    """The engine a repository writes through, and its transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_lock = threading.Lock()
        #: The ``serve`` instance this store works for (``instances.id``): what it receives
        #: and publishes is claimed in its name. None for the command line.
        self.instance_id: str | None = None

    def close(self) -> None:
        self.engine.dispose()

    def is_outage(self, exc: BaseException) -> bool:
        """``is_outage``: whether ``exc`` says this store cannot be reached."""
        return is_outage(exc)

    def ping(self) -> str | None:
        """None when the store answers a query, else why not (for ``/readyz``)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return f"store unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return None

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """One connection for every read made through ``connect`` inside this block (in
        this thread or task): an answer made of many small reads (``explain``) checks out,
        pings and resets one connection instead of one per read — on PostgreSQL each
        checkout is three round trips besides the query. Nested blocks share the outer
        one. Reads only: writes go through their own transactions."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            yield pinned[1]
            return
        with self.engine.connect() as conn:
            token = _PINNED.set((self, conn))
            try:
                yield conn
            finally:
                _PINNED.reset(token)

    def connect(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection to read through: the one ``reading`` holds when inside such a
        block (left open at the end of this one), else a new one."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            return contextlib.nullcontext(pinned[1])
        return self.engine.connect()

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite the gateway's threads take turns through a lock:
        SQLite allows one writer, and its busy handler would otherwise make them sleep."""
        lock = self._write_lock if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        with lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.DBAPIError as exc:
                if is_outage(exc):
                    raise StoreError(f"store unavailable: {exc.orig}") from exc
                raise


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached (an outage to wait out), rather
    than that one transmission's data was refused (which fails that transmission alone)."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return True
        if not isinstance(exc, sa.exc.OperationalError):
            return False
        # PostgreSQL says which: a statement cancelled or over a limit is the data's doing
        # (class 54, 57014), a lost connection or a server going down is an outage.
        state = getattr(exc.orig, "sqlstate", None) or ""
        return not (state.startswith("54") or state == "57014")
    return errors.is_outage(exc) or isinstance(exc, sa.exc.TimeoutError)


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def create_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and durable commits."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss, which is what "durably received" means.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def default_sqlite_url(var_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(var_dir).resolve() / 'edigw.sqlite3'}"
