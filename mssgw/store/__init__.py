"""The store: mailboxes, folders, messages, blobs, queue and traces.

``Store`` is the one object the rest of the program holds.  It owns the
database engines, the blob folder and the group committer, and exposes one
repository per concern (``store.mailboxes``, ``store.credentials``,
``store.messages``, ``store.queue``, ``store.traces``).  Nothing here knows a
socket or a protocol.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mssgw.errors import StoreUnavailable, brief
from mssgw.store import schema
from mssgw.store.blobs import BlobStore
from mssgw.store.committer import GroupCommitter, WriteLock
from mssgw.store.db import (
    create_engines,
    create_sync_sqlite_reader,
    create_sync_sqlite_writer,
    is_sqlite,
)

if TYPE_CHECKING:
    from mssgw.config import Settings
    from mssgw.store.credentials import Credentials
    from mssgw.store.delivery import Messages
    from mssgw.store.mailboxes import Mailboxes
    from mssgw.store.queue import Queue
    from mssgw.store.traces import Traces

T = TypeVar("T")

#: Threads (each with its own SQLite connection) running ``Store.reading`` work.
#: SQLite releases the GIL while it reads, so a few run at once; more would only
#: hold more connections and page caches.
READ_THREADS = 4
#: Threads that may run small reads themselves (the event loop's, and one to
#: spare for a second loop such as a CLI command's in the same process).
LOOP_THREADS = 2


class Store:
    """Facade over the database and blob folder.  Open with ``await Store.open(settings)``."""

    def __init__(
        self,
        reader: AsyncEngine,
        writer: AsyncEngine,
        blobs: BlobStore,
        *,
        url: str,
        group_commit_max: int = 64,
        busy_timeout_ms: int = 5000,
        inline_max: int = 131072,
    ) -> None:
        from mssgw.store.content import Contents
        from mssgw.store.credentials import Credentials
        from mssgw.store.delivery import Messages
        from mssgw.store.mailboxes import Mailboxes
        from mssgw.store.queue import Queue
        from mssgw.store.traces import Traces

        self.engine = reader
        self.write_engine = writer
        self.url = url
        self.blobs = blobs
        #: Messages up to this many octets, given as bytes, are kept in their blob
        #: row instead of a file (``mssgw.store.content``).
        self.inline_max = inline_max
        self.contents: Contents = Contents(self)
        self.sessionmaker = async_sessionmaker(reader, expire_on_commit=False)
        self.write_sessionmaker = async_sessionmaker(writer, expire_on_commit=False)
        #: SQLite has one writer at a time, and a writer that finds the database
        #: locked waits in SQLite's busy handler, which *sleeps* (up to 100 ms a
        #: step).  Every write of this process (``write()`` and the group
        #: committer) takes this lock first, so they queue here instead; the
        #: busy timeout remains for other processes (CLI, cron).  Rule: never
        #: await the committer inside ``write()`` (it would wait for itself).
        self.write_lock: WriteLock | None = None
        self.sync_reader: Engine | None = None
        #: Threads that run their small reads themselves (see ``reading``).
        self._inline_threads: set[int] = set()
        self._inline_lock = threading.Lock()
        #: Their connection, kept open between reads (checking one out of the
        #: pool and back cost more than a small read itself).
        self._inline_conns: dict[int, Connection] = {}
        self._read_pool: ThreadPoolExecutor | None = None
        if is_sqlite(url):
            self.write_lock = WriteLock()
            self.committer = GroupCommitter(
                max_batch=group_commit_max,
                sync_engine=create_sync_sqlite_writer(url, busy_timeout_ms=busy_timeout_ms),
                lock=self.write_lock,
            )
            # One connection per reader thread, plus the event loop's own for
            # small reads (``reading(small=True)``).  SingletonThreadPool closes
            # the connection of another thread when more threads than this use it.
            self.sync_reader = create_sync_sqlite_reader(
                url, busy_timeout_ms=busy_timeout_ms, threads=READ_THREADS + LOOP_THREADS
            )
            self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mssgw-read")
        else:
            self.committer = GroupCommitter(max_batch=group_commit_max, async_engine=writer)
        self.mailboxes: Mailboxes = Mailboxes(self)
        self.credentials: Credentials = Credentials(self)
        self.messages: Messages = Messages(self)
        self.queue: Queue = Queue(self)
        self.traces: Traces = Traces(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @classmethod
    async def open(cls, settings: Settings, *, check_schema: bool = True) -> Store:
        """Connect, check the schema is current, and prepare the blob folder."""
        url = settings.store_url
        if is_sqlite(url):
            _ensure_sqlite_parent(url)
        reader, writer = create_engines(
            url, busy_timeout_ms=settings.store.busy_timeout_ms, pool_size=settings.store.pool_size
        )
        store = cls(
            reader,
            writer,
            BlobStore(settings.blob_dir),
            url=url,
            group_commit_max=settings.store.group_commit_max,
            busy_timeout_ms=settings.store.busy_timeout_ms,
            inline_max=settings.store.inline_max,
        )
        try:
            await store.ping()
            if check_schema:
                await schema.check(reader, store.display_url)
            store.blobs.ensure_root()
        except BaseException:
            await store.close()
            raise
        return store

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(
                f"database {self.display_url} unreachable: {brief(exc)}"
            ) from None

    async def upgrade(self) -> tuple[set[str], set[str]]:
        return await schema.upgrade(self.write_engine)

    async def close(self) -> None:
        await self.committer.stop()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
            self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mssgw-read")
        for conn in self._inline_conns.values():
            _close_quietly(conn)
        self._inline_conns.clear()
        if self.sync_reader is not None:
            self.sync_reader.dispose()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session (never blocks writers)."""
        async with self.sessionmaker() as session:
            yield session

    async def reading(self, work: Callable[[Connection], T], *, small: bool = False) -> T:
        """Run ``work`` (synchronous Core reads over one connection, in one
        transaction) and return its result.

        The hot read path of the IMAP server: on SQLite the whole function
        runs in one hop to a reader thread on the plain ``sqlite3`` driver
        (through aiosqlite every statement is several hops between threads,
        which under load costs more CPU than the queries); on PostgreSQL it
        runs through asyncpg (``run_sync``).  ``work`` must only read.

        ``small``: the caller bounds the work to a few rows (one folder, the
        flags of a few messages).  On SQLite it then runs at once in the event
        loop's thread: ~40 us, where the hop to a reader thread and back costs
        ~200 us of latency and CPU on our 2-core VMs.  Under WAL a reader never
        waits for the writer, so this does not stall the loop.
        """
        if small and self.sync_reader is not None and self._may_read_here():
            return self._read_here(self.sync_reader, work)
        if self.sync_reader is not None and self._read_pool is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._read_pool, _read_sync, self.sync_reader, work)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    def _read_here(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        """``work`` in this thread, over its own connection (kept between reads)."""
        me = threading.get_ident()
        conn = self._inline_conns.get(me)
        if conn is None or conn.closed:
            conn = self._inline_conns[me] = engine.connect()
        try:
            with conn.begin():
                return work(conn)
        except BaseException:
            # Whatever went wrong, the next read starts from a fresh connection.
            self._inline_conns.pop(me, None)
            _close_quietly(conn)
            raise

    def _may_read_here(self) -> bool:
        """Whether this thread may read itself: the engine keeps a connection for
        at most ``LOOP_THREADS`` such threads (the first ones to ask)."""
        me = threading.get_ident()
        if me in self._inline_threads:
            return True
        with self._inline_lock:
            if len(self._inline_threads) < LOOP_THREADS:
                self._inline_threads.add(me)
                return True
        return False

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on success and rolled back on error."""
        if self.write_lock is None:
            async with self.write_sessionmaker() as session, session.begin():
                yield session
            return
        async with (
            self.write_lock.get(),
            self.write_sessionmaker() as session,
            session.begin(),
        ):
            yield session


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # closing a broken connection: nothing more to do
        pass


def _read_sync(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return work(conn)


def _ensure_sqlite_parent(url: str) -> None:
    from pathlib import Path

    database = make_url(url).database
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"{database}: cannot create its folder: {exc.strerror}"
            ) from None
