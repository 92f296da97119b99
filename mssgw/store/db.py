"""Database engines: SQLite (WAL, embedded default) and PostgreSQL (asyncpg).

Why two engines on SQLite: SQLite has one writer at a time.  A transaction
that reads first and writes later can fail with SQLITE_BUSY when it tries to
upgrade its lock, so write transactions start with ``BEGIN IMMEDIATE`` (they
queue on the busy timeout instead), while read transactions use a plain
deferred ``BEGIN`` and never block writers under WAL.  On PostgreSQL both
engines are the same object.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import SingletonThreadPool

from mssgw.errors import ConfigError


def async_url(url: str) -> str:
    """Map the URL an operator writes to the async driver we use."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(f"store.url: unsupported database {backend!r}; use sqlite or postgresql")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engines(
    url: str, *, busy_timeout_ms: int, pool_size: int
) -> tuple[AsyncEngine, AsyncEngine]:
    """Return ``(reader, writer)`` engines for ``url``."""
    target = async_url(url)
    if not is_sqlite(url):
        engine = create_async_engine(
            target, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
        return engine, engine
    reader = create_async_engine(target, pool_size=pool_size, max_overflow=0)
    writer = create_async_engine(target, pool_size=1, max_overflow=0)
    _sqlite_setup(reader, busy_timeout_ms, begin="BEGIN")
    _sqlite_setup(writer, busy_timeout_ms, begin="BEGIN IMMEDIATE")
    return reader, writer


def create_sync_sqlite_writer(url: str, *, busy_timeout_ms: int) -> Engine:
    """A synchronous SQLite engine for the group committer's own thread.

    With aiosqlite every statement is a hop to its worker thread and back to
    the event loop; the committer instead runs a whole batch in one hop, on
    the plain ``sqlite3`` driver.
    """
    engine = create_engine(
        str(make_url(url).set(drivername="sqlite+pysqlite")), poolclass=SingletonThreadPool
    )
    _sqlite_setup(engine, busy_timeout_ms, begin="BEGIN IMMEDIATE")
    return engine


def create_sync_sqlite_reader(url: str, *, busy_timeout_ms: int, threads: int) -> Engine:
    """A synchronous SQLite engine for read work run in one thread hop.

    Each reader thread keeps its own connection (``SingletonThreadPool``);
    a read runs a whole function over it, so an IMAP command pays one hop to
    a thread and back instead of several per statement through aiosqlite.
    Reads use a deferred ``BEGIN``: under WAL they never block the writer.
    """
    engine = create_engine(
        str(make_url(url).set(drivername="sqlite+pysqlite")),
        poolclass=SingletonThreadPool,
        pool_size=threads,
    )
    _sqlite_setup(engine, busy_timeout_ms, begin="BEGIN")
    return engine


def _sqlite_setup(engine: AsyncEngine | Engine, busy_timeout_ms: int, *, begin: str) -> None:
    """Pragmas for durability and concurrency (SPEC STORE-2)."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are broken).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced at every commit, so a 250 survives a power cut.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the DBAPI cursor: through exec_driver_sql the BEGIN cost
        # ~25 us of SQLAlchemy's execution machinery, on every transaction.
        conn.connection.dbapi_connection.cursor().execute(begin)
