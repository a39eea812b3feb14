"""Engines, sessions and the raw connection pool, all pointed at one database URL.

``database_url()`` is DATABASE_URL when set, else the embedded private PostGIS (started on
demand). The ORM-free hot paths (tiles, batch locate) use ``pool()``, a small psycopg pool.

Faults. Every connection is made with a ``connect_timeout`` (setting, default 3 s), so a database
that is down or unreachable fails fast instead of hanging a request; ``errors.py`` turns the
resulting driver errors into 503 + ``Retry-After``. Both pools drop connections a restart has
broken before handing them out (SQLAlchemy: ``pool_pre_ping``; ``pool()``: a zero-round-trip
socket check), so the first request after the database is back succeeds. Processes that serve the
API call ``enable_api_limits()`` so request sessions and ``pool()`` connections also carry a
``statement_timeout``: one request cannot hold the database.
"""

from __future__ import annotations

import select
import threading
from collections import deque
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridserver.db import embedded
from gridserver.settings import get_settings

_url_cache: dict[str, str] = {}
#: Set by ``enable_api_limits()``: statement_timeout (ms) for new connections; None = no limit.
_api_limits: dict[str, int | None] = {"statement_timeout_ms": None}


def database_url() -> str:
    """The SQLAlchemy URL in use; starts the embedded PostGIS when DATABASE_URL is unset."""
    s = get_settings()
    if s.database_url:
        u = s.database_url
        if u.startswith("postgresql://") or u.startswith("postgres://"):
            u = "postgresql+psycopg://" + u.split("://", 1)[1]
        return u
    if "embedded" not in _url_cache:
        _url_cache["embedded"] = embedded.start(s)
    return _url_cache["embedded"]


def conninfo() -> str:
    """The same URL as a libpq conninfo for psycopg."""
    return database_url().replace("postgresql+psycopg://", "postgresql://")


def enable_api_limits() -> None:
    """From now on, request sessions (``get_session``/``session_scope``) and ``pool()`` connections of
    this process get ``statement_timeout`` (setting ``statement_timeout_ms``). Called by the app
    factory. ``get_engine()`` never has the limit: imports and the demo build run long statements on
    purpose (also when they share a process with a server, as in the tests)."""
    ms = get_settings().statement_timeout_ms
    _api_limits["statement_timeout_ms"] = ms if ms > 0 else None
    _sessionmaker.cache_clear()
    if pool.cache_info().currsize:
        pool().clear_idle()


def connect_kwargs(limited: bool = False) -> dict:
    """libpq parameters of gridserver connections: a connect timeout always, the API's statement
    timeout when ``limited`` and ``enable_api_limits()`` was called (see the module docstring)."""
    kw: dict = {"connect_timeout": get_settings().connect_timeout, "application_name": "gridserver"}
    ms = _api_limits["statement_timeout_ms"]
    if limited and ms:
        kw["options"] = f"-c statement_timeout={int(ms)}"
    return kw


def _make_engine(limited: bool) -> Engine:
    s = get_settings()
    eng = create_engine(database_url(), pool_size=s.pool_size, pool_pre_ping=True, pool_timeout=10, future=True)

    @event.listens_for(eng, "do_connect")
    def _connect_params(dialect, conn_rec, cargs, cparams):
        cparams.update(connect_kwargs(limited))

    return eng


@lru_cache
def get_engine() -> Engine:
    """The engine for services, CLI and bulk work: connect timeout, no statement timeout."""
    return _make_engine(limited=False)


@lru_cache
def _api_engine() -> Engine:
    return _make_engine(limited=True)


@lru_cache
def _sessionmaker() -> sessionmaker:
    bind = _api_engine() if _api_limits["statement_timeout_ms"] else get_engine()
    return sessionmaker(bind, expire_on_commit=False)


@contextmanager
def session_scope():
    """A session that commits on success and rolls back on any error (one transaction)."""
    session: Session = _sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        try:
            session.rollback()
        except Exception:  # the connection is gone (database restart): keep the original error
            pass
        raise
    finally:
        session.close()


def get_session():
    """FastAPI dependency: one session per request.

    Routes declare it with ``Depends(get_session, scope="function")`` so the commit happens before
    the response is sent: a client told 201 can rely on the write being durable.
    """
    with session_scope() as s:
        yield s


class PoolTimeout(Exception):
    """No connection became free within the pool's timeout (mapped to 503 in ``errors.py``)."""


class ConnectionPool:
    """A small thread-safe psycopg pool: at most ``max_size`` connections, autocommit.

    No background threads: a connection is made in the calling thread (``connect_timeout`` bounds
    it, and a refused connection fails at once), and an idle connection is handed out only if its
    socket has nothing to read. An idle PostgreSQL connection never receives data unless the
    server closed it (restart, ``pg_terminate_backend``: EOF or a FATAL message), so that check
    costs one ``select()`` and no round trip. Connections returned broken or inside a transaction
    are closed or rolled back.
    """

    def __init__(self, conninfo: str, max_size: int, timeout: float, kwargs: dict | None = None):
        self.conninfo = conninfo
        self.max_size = max_size
        self.timeout = timeout
        self.kwargs = kwargs or {}
        self._idle: deque = deque()
        self._slots = threading.BoundedSemaphore(max_size)
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _healthy(conn) -> bool:
        if conn.closed or conn.broken:
            return False
        try:
            readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _take(self):
        import psycopg

        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return psycopg.connect(self.conninfo, autocommit=True, **self.kwargs, **connect_kwargs(limited=True))
            if self._healthy(conn):
                return conn
            conn.close()

    def _give_back(self, conn) -> None:
        from psycopg.pq import TransactionStatus

        if self._closed or conn.closed or conn.broken:
            conn.close()
            return
        status = conn.info.transaction_status
        if status != TransactionStatus.IDLE:
            try:
                conn.rollback()
            except Exception:
                conn.close()
                return
        with self._lock:
            self._idle.append(conn)

    @contextmanager
    def connection(self, timeout: float | None = None):
        """A connection for the duration of the block (autocommit; open ``conn.transaction()`` for
        a snapshot). Raises ``PoolTimeout`` when all ``max_size`` are busy for ``timeout`` s, and the
        driver's ``OperationalError`` when the database cannot be reached."""
        if self._closed:
            raise PoolTimeout("the connection pool is closed")
        if not self._slots.acquire(timeout=self.timeout if timeout is None else timeout):
            raise PoolTimeout(f"all {self.max_size} database connections stayed busy for "
                              f"{self.timeout if timeout is None else timeout:g} s")
        try:
            conn = self._take()
            try:
                yield conn
            finally:
                self._give_back(conn)
        finally:
            self._slots.release()

    def clear_idle(self) -> None:
        """Close the idle connections (new ones will be made on demand)."""
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.clear_idle()


@lru_cache
def pool() -> ConnectionPool:
    """psycopg connection pool for thin read paths (tiles, bulk locate).

    Connections are in autocommit mode: a tile is one SELECT, and skipping BEGIN/COMMIT saves two
    round trips per request. Code that needs a snapshot opens ``conn.transaction()`` explicitly.
    """
    s = get_settings()
    return ConnectionPool(conninfo(), max_size=s.pool_size, timeout=max(10.0, s.connect_timeout + 2.0))


def reset() -> None:
    """Forget engines and pools (tests switch databases)."""
    if pool.cache_info().currsize:
        pool().close()
    pool.cache_clear()
    for cached in (get_engine, _api_engine):
        if cached.cache_info().currsize:
            cached().dispose()
        cached.cache_clear()
    _sessionmaker.cache_clear()
    _url_cache.clear()
