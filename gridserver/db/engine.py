"""Engines, sessions and the raw connection pool, all pointed at one database URL.

``database_url()`` is DATABASE_URL when set, else the embedded private PostGIS (started on
demand). The ORM-free hot paths (tiles, batch locate) use ``pool()``, a psycopg pool.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from gridserver.db import embedded
from gridserver.settings import get_settings

_url_cache: dict[str, str] = {}


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


@lru_cache
def get_engine() -> Engine:
    return create_engine(database_url(), pool_size=get_settings().pool_size, pool_pre_ping=True, future=True)


@lru_cache
def _sessionmaker() -> sessionmaker:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope():
    """A session that commits on success and rolls back on any error (one transaction)."""
    session: Session = _sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
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


@lru_cache
def pool():
    """psycopg connection pool for thin read paths (tiles, bulk locate).

    Connections are in autocommit mode: a tile is one SELECT, and skipping BEGIN/COMMIT saves two
    round trips per request. Code that needs a snapshot opens ``conn.transaction()`` explicitly.
    """
    from psycopg_pool import ConnectionPool

    p = ConnectionPool(conninfo(), min_size=1, max_size=get_settings().pool_size, open=True,
                       kwargs={"autocommit": True})
    return p


def reset() -> None:
    """Forget engines and pools (tests switch databases)."""
    if pool.cache_info().currsize:
        pool().close()
    pool.cache_clear()
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _sessionmaker.cache_clear()
    _url_cache.clear()
